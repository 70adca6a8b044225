package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstallAndRun: make install puts rotary, mode 0755, in
// PREFIX/bin, in GOBIN when that is set and no PREFIX is given, else in
// /usr/local/bin; make run listens where PORT or LISTEN say (LISTEN wins).
// The install runs for real (of the binary under test, with build marked
// done); the other cases are make's dry runs.
func TestMakeInstallAndRun(t *testing.T) {
	t.Parallel()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dryRun := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("make", append([]string{"-s", "-n", "-C", repo}, args...)...)
		cmd.Env = append(cleanEnv(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	noGOBIN := []string{"GOBIN="}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{noGOBIN, []string{"install"}, "install -m 0755 bin/rotary /usr/local/bin/rotary"},
		{[]string{"GOBIN=/opt/gobin"}, []string{"install"}, "install -m 0755 bin/rotary /opt/gobin/rotary"},
		{[]string{"GOBIN=/opt/gobin"}, []string{"install", "PREFIX=/opt/p"}, "install -m 0755 bin/rotary /opt/p/bin/rotary"},
		{noGOBIN, []string{"run"}, "server --dev --data-dir .rotary-dev --listen 127.0.0.1:8420"},
		{noGOBIN, []string{"run", "PORT=9123"}, "--listen 127.0.0.1:9123"},
		{noGOBIN, []string{"run", "PORT=9123", "LISTEN=127.0.0.2:9000"}, "--listen 127.0.0.2:9000"},
	} {
		if out := dryRun(tc.env, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("%v make %s: want %q in\n%s", tc.env, strings.Join(tc.args, " "), tc.want, out)
		}
	}

	prefix := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", repo, "-o", "build", "install", "BIN="+rotaryBin, "PREFIX="+prefix)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	installed := filepath.Join(prefix, "bin", "rotary")
	fi, err := os.Stat(installed)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed rotary: %v, %v; want mode 0755", fi, err)
	}
	if out, err := exec.Command(installed, "server", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "rotary server") {
		t.Fatalf("the installed rotary does not run: %v\n%s", err, out)
	}
}
