package api

import (
	"testing"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
)

// TestErrorCategory classifies the messages real drivers return; the
// category never carries any of the message's text.
func TestErrorCategory(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ msg, want string }{
		{"", ""},
		{`set: pq: password authentication failed for user "app_7f3a"`, ErrCategoryAuth},
		{`test: Error 1045 (28000): Access denied for user 'app'@'10.1.2.3' (using password: YES)`, ErrCategoryAuth},
		{`set: WRONGPASS invalid username-password pair or user is disabled.`, ErrCategoryAuth},
		{`NOAUTH Authentication required.`, ErrCategoryAuth},
		{`pq: no pg_hba.conf entry for host "10.0.0.5", user "app", database "db", no encryption`, ErrCategoryAuth},
		{`set: dial tcp 127.0.0.1:5432: connect: connection refused`, ErrCategoryRefused},
		{`dial tcp 10.9.9.9:3306: i/o timeout`, ErrCategoryTimeout},
		{`test: context deadline exceeded`, ErrCategoryTimeout},
		{`dial tcp: lookup db.internal on 127.0.0.53:53: no such host`, ErrCategoryUnreach},
		{`dial tcp 10.0.0.1:6379: connect: no route to host`, ErrCategoryUnreach},
		{`dial tcp 10.0.0.1:6379: connect: network is unreachable`, ErrCategoryUnreach},
		{`read tcp 127.0.0.1:5555->127.0.0.1:5432: read: connection reset by peer`, ErrCategoryUnreach},
		{`target mismatch: field "username" is "postgres" in the current version, the rotation is bound to "app"`, ErrCategoryMismatch},
		{`pq: permission denied to alter role`, ErrCategoryFailed},
		{`ERR unknown command 'ACL'`, ErrCategoryFailed},
		{ErrCategoryAuth, ErrCategoryAuth},
		{ErrCategoryRefused, ErrCategoryRefused},
		{ErrCategoryTimeout, ErrCategoryTimeout},
	} {
		if got := ErrorCategory(tt.msg); got != tt.want {
			t.Errorf("ErrorCategory(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func principalWith(t *testing.T, doc string) *principal {
	t.Helper()
	pol, err := auth.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatalf("ParsePolicy(%s): %v", doc, err)
	}
	return &principal{tokenID: "t", policies: []auth.Policy{pol}}
}

// TestRedactSecret: fingerprints and error text go only to readers.
func TestRedactSecret(t *testing.T) {
	t.Parallel()
	const text = `set: pq: password authentication failed for user "app_7f3a"`
	sec := client.Secret{
		Name:     "app/db",
		Versions: []client.Version{{Version: 1, Fingerprint: "hmac-sha256:abcd"}},
		Rotation: &client.RotationInfo{LastError: text},
	}
	describer := principalWith(t, `{"rules":[{"secrets":"app/*","actions":["describe","list"]}]}`)
	reader := principalWith(t, `{"rules":[{"secrets":"app/*","actions":["describe","read"]}]}`)
	got := redactSecret(describer, sec)
	if got.Versions[0].Fingerprint != "" || got.Rotation.LastError != ErrCategoryAuth {
		t.Errorf("redactSecret(describer) = fingerprint %q, last_error %q; want none and %q", got.Versions[0].Fingerprint, got.Rotation.LastError, ErrCategoryAuth)
	}
	if sec.Versions[0].Fingerprint == "" || sec.Rotation.LastError != text {
		t.Errorf("redactSecret changed its argument")
	}
	got = redactSecret(reader, sec)
	if got.Versions[0].Fingerprint != "hmac-sha256:abcd" || got.Rotation.LastError != text {
		t.Errorf("redactSecret(reader) = %+v, want it unchanged", got)
	}
	run := client.Run{Secret: "app/db", Error: text, Steps: []client.RunStep{{Step: "set", Error: text}}}
	if r := redactRun(describer, run); r.Error != ErrCategoryAuth || r.Steps[0].Error != ErrCategoryAuth {
		t.Errorf("redactRun(describer) = %+v, want categories", r)
	}
	if r := redactRun(reader, run); r.Error != text || r.Steps[0].Error != text {
		t.Errorf("redactRun(reader) = %+v, want the text", r)
	}
}

// TestSecretGlobs: the globs of the rules that allow an action, nil for
// everything.
func TestSecretGlobs(t *testing.T) {
	t.Parallel()
	p := principalWith(t, `{"rules":[{"secrets":"app/*","actions":["list"]},{"secrets":"ops/?b","actions":["admin"]},{"secrets":"x/*","actions":["read"]},{"keys":"*","actions":["encrypt"]}]}`)
	got := secretGlobs(p, auth.ActionList)
	if len(got) != 2 || got[0] != "app/*" || got[1] != "ops/?b" {
		t.Errorf("secretGlobs(list) = %q, want [app/* ops/?b]", got)
	}
	if got := secretGlobs(principalWith(t, `{"rules":[{"secrets":"app/*","actions":["list"]},{"secrets":"**","actions":["list"]}]}`), auth.ActionList); got != nil {
		t.Errorf("secretGlobs with a \"**\" rule = %q, want nil (everything)", got)
	}
}
