package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

func TestSecretLifecycle(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		prefix := uniq("app") + "/"
		name := prefix + "db"

		// create with a value from a file, tags and a description
		v1 := "first\nvalue with a trailing newline\n"
		f := filepath.Join(t.TempDir(), "v1")
		if err := os.WriteFile(f, []byte(v1), 0o600); err != nil {
			t.Fatal(err)
		}
		out := c.ok("secret", "create", name, "--value-file", f, "--description", "the db", "--tag", "team=pay", "--tag", "env=prod")
		if !strings.Contains(out, name) || strings.Contains(out, "first") {
			t.Errorf("secret create printed %q, want the name and never the value", out)
		}

		// get prints the value exactly, without an added newline
		if got := c.ok("secret", "get", name); got != v1 {
			t.Errorf("secret get = %q, want %q", got, v1)
		}

		// put from stdin: a JSON value; version 2 becomes current
		v2 := `{"username":"app","password":"p@ss word","port":5432}`
		c.withStdin([]byte(v2)).ok("secret", "put", name, "--value-stdin")
		if got := c.ok("secret", "get", name); got != v2 {
			t.Errorf("secret get after put = %q, want %q", got, v2)
		}
		if got := c.ok("secret", "get", name, "--stage", "previous"); got != v1 {
			t.Errorf("secret get --stage previous = %q, want %q", got, v1)
		}
		if got := c.ok("secret", "get", name, "--version", "1"); got != v1 {
			t.Errorf("secret get --version 1 = %q, want %q", got, v1)
		}
		if got := c.ok("secret", "get", name, "--field", "password"); got != "p@ss word" {
			t.Errorf("secret get --field password = %q, want %q", got, "p@ss word")
		}
		if got := c.ok("secret", "get", name, "--field", "port"); got != "5432" {
			t.Errorf("secret get --field port = %q, want 5432", got)
		}
		c.fail(exitUsage, []string{"--field", "nosuch"}, "secret", "get", name, "--field", "nosuch")
		c.fail(exitUsage, []string{"not a JSON object"}, "secret", "get", name, "--version", "1", "--field", "x")

		// put with --value: version 3
		c.ok("secret", "put", name, "--value", "third")
		sv := okJSON[client.SecretValue](c, "secret", "get", name)
		if sv.Name != name || sv.Version != 3 || sv.Value != "third" || !slices.Contains(sv.Stages, "current") {
			t.Errorf("secret get -o json = %+v, want name %s, version 3, value third, stage current", sv, name)
		}
		sv = okJSON[client.SecretValue](c, "secret", "get", name, "--stage", "previous")
		if sv.Version != 2 || !slices.Contains(sv.Stages, "previous") {
			t.Errorf("secret get --stage previous -o json = %+v, want version 2 in stage previous", sv)
		}

		// describe: metadata and versions, never a value
		out = c.ok("secret", "describe", name)
		for _, w := range []string{name, "generic", "team=pay", "VERSION", "current", "previous"} {
			if !strings.Contains(out, w) {
				t.Errorf("secret describe does not show %q:\n%s", w, out)
			}
		}
		for _, v := range []string{"third", "p@ss word", "first"} {
			if strings.Contains(out, v) {
				t.Errorf("secret describe shows the value %q:\n%s", v, out)
			}
		}
		d := okJSON[client.Secret](c, "secret", "describe", name)
		if d.Name != name || d.Type != "generic" || d.Region == "" || d.KeyID == "" || d.CreatedAt.IsZero() ||
			d.UpdatedAt.IsZero() || len(d.Versions) != 3 || d.Tags["env"] != "prod" || d.Description != "the db" {
			t.Errorf("secret describe -o json = %+v", d)
		}
		raw := c.ok("secret", "describe", name, "-o", "json")
		for _, key := range []string{`"name"`, `"type"`, `"region"`, `"key_id"`, `"created_at"`, `"updated_at"`, `"versions"`, `"fingerprint"`, `"rotation"`} {
			if !strings.Contains(raw, key) {
				t.Errorf("secret describe -o json lacks %s:\n%s", key, raw)
			}
		}
		if strings.Contains(raw, "third") {
			t.Errorf("secret describe -o json shows the value")
		}

		// create without a value, with a type
		typed := prefix + "api"
		c.ok("secret", "create", typed, "--type", "api-key", "--value", "k-"+randHex(16))
		empty := prefix + "empty"
		c.ok("secret", "create", empty)
		c.fail(exitFailure, []string{empty}, "secret", "create", empty)

		// list: text and json, by prefix
		out = c.ok("secret", "list", "--prefix", prefix)
		for _, n := range []string{name, typed, empty} {
			if !strings.Contains(out, n) {
				t.Errorf("secret list --prefix does not show %s:\n%s", n, out)
			}
		}
		if !strings.HasPrefix(out, "NAME") {
			t.Errorf("secret list text output has no header:\n%s", out)
		}
		list := okJSON[client.SecretList](c, "secret", "list", "--prefix", prefix)
		if len(list.Secrets) != 3 {
			t.Errorf("secret list --prefix -o json: %d secrets, want 3: %+v", len(list.Secrets), list)
		}
		other := okJSON[client.SecretList](c, "secret", "list", "--prefix", prefix+"zzz")
		if len(other.Secrets) != 0 {
			t.Errorf("secret list --prefix %szzz = %+v, want none", prefix, other)
		}

		// delete with a recovery window: unreadable, restorable
		del := okJSON[client.Secret](c, "secret", "delete", name, "--recovery-window", "2d")
		if del.DeletedAt == nil || del.PurgeAt == nil || del.PurgeAt.Sub(*del.DeletedAt) < 47*time.Hour {
			t.Errorf("secret delete --recovery-window 2d = deleted %v, purge %v", del.DeletedAt, del.PurgeAt)
		}
		_, errOut, code := c.run("secret", "get", name)
		if code == 0 {
			t.Errorf("secret get of a deleted secret succeeded")
		} else {
			checkErrorLine(t, []string{"secret", "get", name}, errOut, name)
		}
		d = okJSON[client.Secret](c, "secret", "describe", name)
		if d.DeletedAt == nil || d.PurgeAt == nil {
			t.Errorf("describe of a deleted secret: deleted_at %v, purge_at %v; want both", d.DeletedAt, d.PurgeAt)
		}
		c.ok("secret", "restore", name)
		if got := c.ok("secret", "get", name); got != "third" {
			t.Errorf("secret get after restore = %q, want third", got)
		}

		// delete --force: gone at once
		c.ok("secret", "delete", empty, "--force")
		c.fail(exitNotFound, []string{"not found", empty}, "secret", "describe", empty)
		c.fail(exitNotFound, []string{"not found"}, "secret", "get", prefix+"never-existed")
		c.fail(exitUsage, []string{"--recovery-window"}, "secret", "delete", typed, "--recovery-window", "12h")
	})
}

// TestSecretBinaryValue checks that bytes that are not UTF-8 survive a
// round trip through --value-file and get.
func TestSecretBinaryValue(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("bin") + "/blob"
	val := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80}
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, val, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("secret", "create", name, "--value-file", f)
	if got := c.ok("secret", "get", name); got != string(val) {
		t.Errorf("secret get = %x, want %x", got, val)
	}
}
