package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/client"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		alias := uniq("k")
		k := okJSON[client.Key](c, "key", "create", "--region", "default", "--alias", alias, "--description", "e2e", "--rotation-period", "365d")
		if k.ID == "" || k.Alias != "alias/"+alias || k.Region != "default" || k.State == "" || k.PrimaryVersion < 1 {
			t.Fatalf("key create -o json = %+v", k)
		}
		ref := "alias/" + alias

		out := c.ok("key", "list")
		if !strings.Contains(out, k.ID) || !strings.Contains(out, ref) || !strings.HasPrefix(out, "ID") {
			t.Errorf("key list does not show %s (%s):\n%s", k.ID, ref, out)
		}
		keys := okJSON[client.KeyList](c, "key", "list", "--region", "default")
		found := false
		for _, kk := range keys.Keys {
			found = found || kk.ID == k.ID
		}
		if !found {
			t.Errorf("key list --region default -o json lacks %s: %+v", k.ID, keys)
		}

		d := okJSON[client.Key](c, "key", "describe", ref)
		if d.ID != k.ID {
			t.Errorf("key describe %s = %+v, want id %s", ref, d, k.ID)
		}
		if out := c.ok("key", "describe", k.ID); !strings.Contains(out, ref) {
			t.Errorf("key describe by id does not show the alias:\n%s", out)
		}

		// rotate: a new primary version
		r := okJSON[client.Key](c, "key", "rotate", ref)
		if r.PrimaryVersion != k.PrimaryVersion+1 {
			t.Errorf("key rotate: primary version %d, want %d", r.PrimaryVersion, k.PrimaryVersion+1)
		}

		// a secret under the key, then rewrap re-wraps its data key
		name := uniq("kapp") + "/s"
		c.ok("secret", "create", name, "--key", ref, "--value", "under-"+alias)
		c.ok("key", "rotate", ref)
		out = c.ok("key", "rewrap")
		if !regexp.MustCompile(`^rewrapped \d+ of \d+ data keys \(\d+ keys, \d+ skipped\)\n$`).MatchString(out) {
			t.Errorf("key rewrap printed %q, want the summary line", out)
		}
		// the one secret under the key was written before its last rotation
		if !strings.HasPrefix(out, "rewrapped 1 of 1 data keys") {
			t.Errorf("key rewrap after a rotation printed %q, want 1 of 1 data keys rewrapped", out)
		}
		rw := okJSON[client.RewrapProgress](c, "key", "rewrap", "--region", "default")
		if !rw.Done || rw.Rewrapped != 0 {
			t.Errorf("second key rewrap -o json = %+v, want done with nothing left to rewrap", rw)
		}
		if got := c.ok("secret", "get", name); got != "under-"+alias {
			t.Errorf("secret get after rotate+rewrap = %q", got)
		}

		// disable: encrypt refused; enable: works again
		c.ok("key", "disable", ref)
		if d := okJSON[client.Key](c, "key", "describe", ref); !strings.EqualFold(d.State, "disabled") {
			t.Errorf("state after disable = %q, want disabled", d.State)
		}
		in := c.withStdin([]byte("hello"))
		if _, errOut, code := in.run("kms", "encrypt", "--key", ref, "--plaintext-stdin"); code == 0 {
			t.Errorf("kms encrypt under a disabled key succeeded")
		} else {
			checkErrorLine(t, []string{"kms", "encrypt"}, errOut, "disabled")
		}
		c.ok("key", "enable", ref)
		in.ok("kms", "encrypt", "--key", ref, "--plaintext-stdin")

		// schedule and cancel deletion
		sd := okJSON[client.Key](c, "key", "schedule-deletion", ref, "--pending-window", "7d")
		if sd.DeletionDate == nil {
			t.Errorf("key schedule-deletion: no deletion_date: %+v", sd)
		}
		if out := c.ok("key", "describe", ref); !strings.Contains(out, "Deletion") {
			t.Errorf("describe of a key pending deletion does not show it:\n%s", out)
		}
		cd := okJSON[client.Key](c, "key", "cancel-deletion", ref)
		if cd.DeletionDate != nil {
			t.Errorf("key cancel-deletion: deletion_date still %v", cd.DeletionDate)
		}

		c.fail(exitNotFound, []string{"not found"}, "key", "describe", "alias/"+uniq("nokey"))
		c.fail(exitUsage, []string{"--pending-window"}, "key", "schedule-deletion", ref, "--pending-window", "soon")
	})
}

func TestKMS(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	// The first secret in a region creates its alias/default key.
	c.ok("secret", "create", uniq("kms")+"/seed", "--value", "seed")

	dk := okJSON[client.DataKey](c, "kms", "generate-data-key", "--key", "alias/default", "--context", "app=billing")
	pt, err := base64.StdEncoding.DecodeString(dk.Plaintext)
	if err != nil || len(pt) < 16 || dk.Ciphertext == "" || dk.KeyID == "" {
		t.Fatalf("generate-data-key -o json = %+v (plaintext decode err %v)", dk, err)
	}
	out := c.ok("kms", "generate-data-key", "--key", "alias/default")
	if !strings.Contains(out, "Plaintext:") || !strings.Contains(out, "Ciphertext:") {
		t.Errorf("generate-data-key text output:\n%s", out)
	}

	// the data key's ciphertext decrypts to its plaintext with the context
	dir := t.TempDir()
	ctFile := filepath.Join(dir, "dk.ct")
	if err := os.WriteFile(ctFile, []byte(dk.Ciphertext+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := c.ok("kms", "decrypt", "--ciphertext-file", ctFile, "--context", "app=billing"); got != string(pt) {
		t.Errorf("kms decrypt of the data key = %x, want %x", got, pt)
	}

	// encrypt from a file with a context; decrypt from stdin
	plain := []byte("attack at dawn\x00\xff")
	pf := filepath.Join(dir, "msg")
	if err := os.WriteFile(pf, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	ct := c.ok("kms", "encrypt", "--key", "alias/default", "--plaintext-file", pf, "--context", "app=billing", "--context", "env=prod")
	if _, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ct)); err != nil {
		t.Fatalf("kms encrypt printed %q, want base64", ct)
	}
	got := c.withStdin([]byte(ct)).ok("kms", "decrypt", "--ciphertext-stdin", "--context", "env=prod", "--context", "app=billing")
	if got != string(plain) {
		t.Errorf("kms decrypt = %q, want %q", got, plain)
	}
	enc := okJSON[client.EncryptResponse](c.withStdin([]byte("x")), "kms", "encrypt", "--key", "alias/default", "--plaintext-stdin")
	if enc.Ciphertext == "" || enc.KeyID == "" {
		t.Errorf("kms encrypt -o json = %+v", enc)
	}

	// a wrong, missing or extra context is refused and reveals nothing
	for _, ctxArgs := range [][]string{
		{"--context", "app=billing", "--context", "env=dev"},
		{"--context", "app=billing"},
		{},
		{"--context", "app=billing", "--context", "env=prod", "--context", "x=y"},
	} {
		args := append([]string{"kms", "decrypt", "--ciphertext-stdin"}, ctxArgs...)
		stdout, errOut, code := c.withStdin([]byte(ct)).run(args...)
		if code == 0 || stdout != "" {
			t.Errorf("rotary %s: exit %d, stdout %q; want a failure and no output", strings.Join(args, " "), code, stdout)
			continue
		}
		checkErrorLine(t, args, errOut)
		if strings.Contains(errOut, "attack") {
			t.Errorf("rotary %s: the error reveals the plaintext: %q", strings.Join(args, " "), errOut)
		}
	}

	// a tampered ciphertext is refused
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(ct))
	raw[len(raw)-1] ^= 1
	bad := base64.StdEncoding.EncodeToString(raw)
	if _, _, code := c.withStdin([]byte(bad)).run("kms", "decrypt", "--ciphertext-stdin", "--context", "app=billing", "--context", "env=prod"); code == 0 {
		t.Errorf("kms decrypt of a tampered ciphertext succeeded")
	}
	c.withStdin([]byte("not base64!!")).fail(exitUsage, []string{"base64"}, "kms", "decrypt", "--ciphertext-stdin")
	c.withStdin([]byte("x")).fail(exitNotFound, []string{"not found"}, "kms", "encrypt", "--key", "alias/"+uniq("none"), "--plaintext-stdin")
}
