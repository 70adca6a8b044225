package e2e

// Tests for the API review findings of issue 8 (classes 3 and 5): what
// errors and fingerprints reveal, master-key permission on create, store
// open failures, secret names and URL escaping, paginated and
// policy-filtered lists, and --value warnings.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerStoreOpenFailure: a store that cannot be opened makes
// "rotary server" exit 1 with one line naming the problem, never a
// SIGSEGV, and never the DSN's password.
func TestServerStoreOpenFailure(t *testing.T) {
	t.Parallel()
	const canary = "CanaryPw-e2e-51d7"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "root.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(dir, "data.db")
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, store string
		want        []string
	}{
		{"sqlite path is a directory", "sqlite: " + dbDir, []string{"store", "is a directory"}},
		{"postgres refuses connections", `postgres: "postgres://rotary:` + canary + `@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"`, []string{"store", "postgres", "connection refused"}},
		{"postgres DSN does not parse", `postgres: "postgres://rotary:` + canary + `@127.0.0.1:notaport/test"`, []string{"store", "postgres", "invalid port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "rotary.yaml")
			body := "listen: 127.0.0.1:0\nstore:\n  " + tc.store + "\nroot_key:\n  file: " + keyFile + "\nregions: [default]\n"
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, rotaryBin, "server", "--config", cfg)
			cmd.Env = cleanEnv()
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			_ = cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("rotary server did not exit within %v", cliTimeout)
			}
			if code := cmd.ProcessState.ExitCode(); code != exitFailure {
				t.Fatalf("rotary server exit %d, want %d; stderr:\n%s", code, exitFailure, errb.String())
			}
			all := out.String() + errb.String()
			for _, bad := range []string{"panic", "SIGSEGV", "goroutine ", canary} {
				if strings.Contains(all, bad) {
					t.Fatalf("rotary server output holds %q:\n%s", bad, all)
				}
			}
			checkErrorLine(t, []string{"server", "--config", cfg}, errb.String(), tc.want...)
		})
	}
}
