package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A hook plugin (plugins/examples/filehook) registered in the catalog
// receives the rotation's event through the supervisor, once, and only
// for the secrets and outcomes it names.
func TestHookPluginReceivesRotations(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	c.ok("plugin", "register", "filehook", "--path", pluginBinary(t, "filehook"), "--env", "FILEHOOK_PATH="+out)
	c.ok("hook", "add", "tofile", "--on", "finished", "--secrets", "hp/*", "--plugin", "filehook")
	c.fail(exitUsage, []string{`plugin "nosuch" is not registered`}, "hook", "add", "h2", "--on", "all", "--plugin", "nosuch")
	c.ok("plugin", "register", "tmpl", "--path", pluginBinary(t, "template"))
	c.fail(exitUsage, []string{`plugin "tmpl" serves rotator, not a hook`}, "hook", "add", "h3", "--on", "all", "--plugin", "tmpl")

	name := uniq("hp/pw")
	other := uniq("nothp/pw")
	for _, n := range []string{name, other} {
		c.ok("secret", "create", n, "--value", "v1")
		c.ok("rotation", "set", n, "--rotator", "random", "--schedule", "@every 24h")
	}
	c.ok("rotate", other, "--wait") // not matched by --secrets
	c.ok("rotate", name, "--wait")

	var lines []string
	waitFor(t, 30*time.Second, "the hook plugin to write the rotated event", func() bool {
		b, _ := os.ReadFile(out)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) >= 1 && lines[0] != ""
	})
	var ev struct {
		Event, Secret string
		Version       int64
	}
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatalf("line %q: %v", lines[0], err)
	}
	if ev.Event != "rotated" || ev.Secret != name || ev.Version != 2 {
		t.Fatalf("the plugin got %+v", ev)
	}
	if len(lines) != 1 {
		t.Fatalf("the plugin got %d events, want 1 (only %s, only finished): %v", len(lines), name, lines)
	}
	if strings.Contains(string(mustRead(t, out)), "v1") {
		t.Fatal("a value reached the hook")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
