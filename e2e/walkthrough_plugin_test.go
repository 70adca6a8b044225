package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
)

// readmeShellBlocks returns the fenced ```sh blocks of the README section
// whose heading is title.
func readmeShellBlocks(t testing.TB, title string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks  []string
		in      bool
		inBlock bool
		cur     strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !inBlock && strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == title
			continue
		}
		if !in {
			continue
		}
		switch {
		case !inBlock && strings.TrimSpace(line) == "```sh":
			inBlock = true
			cur.Reset()
		case inBlock && strings.TrimSpace(line) == "```":
			inBlock = false
			blocks = append(blocks, cur.String())
		case inBlock:
			cur.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("README.md has no ```sh block under \"## %s\"", title)
	}
	return blocks
}

// TestWalkthroughPlugin runs the shell blocks of the README's "Write a
// rotator plugin" section as they stand, with bash -eu -o pipefail, in an
// empty folder, against a development daemon, with ROTARY set to this
// checkout and the rotary under test first on PATH; then checks that the
// plugin really rotated the account.
func TestWalkthroughPlugin(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	blocks := readmeShellBlocks(t, "Write a rotator plugin")
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "set -euo pipefail\n" + strings.Join(blocks, "\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = cleanEnv("ROTARY="+repo, "ROTARY_ADDR="+s.addr, "ROTARY_TOKEN="+s.rootToken,
		"PATH="+filepath.Dir(rotaryBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's plugin walkthrough failed: %v\n%s", err, out)
	}
	for _, w := range []string{"registered plugin myrotator", "basic-auth", "rotated demo/app", "succeeded"} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("the walkthrough's output lacks %q:\n%s", w, out)
		}
	}
	c := s.root(t)
	if v := currentVersion(t, c, "demo/app"); v != 2 {
		t.Fatalf("demo/app: current version %d, want 2", v)
	}
	show := okJSON[map[string]any](c, "rotation", "show", "demo/app")
	if show["rotator"] != "plugin:myrotator" || show["schedule"] == "" {
		t.Fatalf("rotation show demo/app = %v; want plugin:myrotator on a schedule", show)
	}
	accounts := rotator.Store{Dir: filepath.Join(dir, "myrotator", "accounts")}
	if err := accounts.Check("app", currentPassword(t, c, "demo/app")); err != nil {
		t.Fatalf("the rotated password does not log in to the account store: %v", err)
	}
	if err := accounts.Check("app", "first-password-1"); err == nil {
		t.Fatal("the first password still logs in after the rotation")
	}
	if p := pluginInfo(t, c, "myrotator"); p.Path != filepath.Join(dir, "myrotator", "myrotator") || p.Status != "ok" {
		t.Fatalf("plugin show myrotator = %+v", p)
	}
}
