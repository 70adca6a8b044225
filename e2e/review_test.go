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
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rotary-secrets/rotary/client"
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

// valueWarning is what the CLI prints on stderr when a value is given with
// --value (cmd/rotary/secret.go).
const valueWarning = "warning: --value puts the secret in the process list (ps) and your shell history; use --value-file or --value-stdin"

// reviewAuditRecords returns the audit records of the last hour (root).
func reviewAuditRecords(c cli) []client.AuditRecord {
	c.t.Helper()
	return okJSON[client.AuditList](c, "audit", "list", "--since", "1h", "--limit", "10000").Records
}

// TestReviewTargetErrorsAndFingerprints: a token that may describe a
// secret but not read it sees a category instead of the target's error
// text (describe, rotation show, history, status) and no fingerprints
// (describe, list, put); a token that may read sees both. The failure is
// a real one: a Redis account that does not exist (WRONGPASS).
func TestReviewTargetErrorsAndFingerprints(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	prefix := uniq("rev-err")
	name := prefix + "/redis"
	user := "rotary_nouser_" + randHex(4)
	cred := fmt.Sprintf(`{"engine":"redis","host":"127.0.0.1","port":6379,"username":%q,"password":"Wrong-%s"}`, user, randHex(8))
	root.withStdin([]byte(cred)).ok("secret", "create", name, "--type", "db-credentials", "--value-stdin")
	root.ok("rotation", "set", name, "--rotator", "redis", "--schedule", "none", "--config-json", `{"strategy":"single-user"}`)
	root.fail(exitFailure, []string{"rotation failed"}, "rotate", name, "--wait")

	describer := s.as(t, createToken(root, `{"rules":[{"secrets":"`+prefix+`/*","actions":["list","describe","write","rotate"]}]}`))
	reader := s.as(t, createToken(root, `{"rules":[{"secrets":"`+prefix+`/*","actions":["list","describe","read"]}]}`))

	// What the reader sees is the driver's text.
	rd := okJSON[client.Secret](reader, "secret", "describe", name)
	if rd.Rotation == nil || !strings.Contains(rd.Rotation.LastError, "WRONGPASS") {
		t.Fatalf("reader: describe last_error = %+v, want the WRONGPASS text", rd.Rotation)
	}
	if len(rd.Versions) == 0 || rd.Versions[0].Fingerprint == "" {
		t.Errorf("reader: describe versions %+v, want fingerprints", rd.Versions)
	}
	if show := okJSON[client.RotationShow](reader, "rotation", "show", name); !strings.Contains(show.LastError, "WRONGPASS") {
		t.Errorf("reader: rotation show last_error = %q, want the text", show.LastError)
	}
	h := okJSON[client.RunList](reader, "rotation", "history", name)
	if len(h.Runs) == 0 || !strings.Contains(h.Runs[0].Error, "WRONGPASS") {
		t.Errorf("reader: history = %+v, want the run's error text", h.Runs)
	}
	if st := okJSON[client.Status](reader, "status"); len(st.Secrets) != 1 || !strings.Contains(st.Secrets[0].LastError, "WRONGPASS") {
		t.Errorf("reader: status = %+v, want one row with the text", st.Secrets)
	}
	if l := okJSON[client.SecretList](reader, "secret", "list", "--prefix", prefix+"/"); len(l.Secrets) != 1 {
		t.Errorf("reader: list = %+v, want the secret", l.Secrets)
	}

	// The describer sees only the category, nowhere the text (the user
	// name may appear: it is the rotation's bound identity, not an error).
	leaks := func(what, got string) {
		t.Helper()
		if strings.Contains(got, "WRONGPASS") || strings.Contains(got, "invalid username-password") || strings.Contains(got, "hmac") {
			t.Errorf("describer: %s shows %q", what, got)
		}
	}
	dd := okJSON[client.Secret](describer, "secret", "describe", name)
	if dd.Rotation == nil || dd.Rotation.LastError != "auth failed" {
		t.Errorf("describer: describe last_error = %+v, want \"auth failed\"", dd.Rotation)
	}
	for _, v := range dd.Versions {
		if v.Fingerprint != "" {
			t.Errorf("describer: describe version %d has fingerprint %q", v.Version, v.Fingerprint)
		}
	}
	show := okJSON[client.RotationShow](describer, "rotation", "show", name)
	if show.LastError != "auth failed" {
		t.Errorf("describer: rotation show last_error = %q, want \"auth failed\"", show.LastError)
	}
	dh := okJSON[client.RunList](describer, "rotation", "history", name)
	if len(dh.Runs) == 0 || dh.Runs[0].Error != "auth failed" {
		t.Errorf("describer: history = %+v, want the run's error as \"auth failed\"", dh.Runs)
	}
	for _, run := range dh.Runs {
		for _, st := range run.Steps {
			if st.Error != "" && st.Error != "auth failed" {
				t.Errorf("describer: history step %s error = %q, want a category", st.Step, st.Error)
			}
		}
	}
	st := okJSON[client.Status](describer, "status")
	if len(st.Secrets) != 1 || st.Secrets[0].LastError != "auth failed" {
		t.Errorf("describer: status = %+v, want one row with \"auth failed\"", st.Secrets)
	}
	l := okJSON[client.SecretList](describer, "secret", "list", "--prefix", prefix+"/")
	if len(l.Secrets) != 1 {
		t.Errorf("describer: list = %+v, want the secret", l.Secrets)
	}
	for _, sec := range l.Secrets {
		for _, v := range sec.Versions {
			if v.Fingerprint != "" {
				t.Errorf("describer: list shows fingerprint %q", v.Fingerprint)
			}
		}
	}
	for _, out := range []string{
		describer.ok("secret", "describe", name, "-o", "json"), describer.ok("secret", "describe", name),
		describer.ok("rotation", "show", name, "-o", "json"), describer.ok("rotation", "history", name, "-o", "json"),
		describer.ok("status", "-o", "json"), describer.ok("secret", "list", "-o", "json"),
	} {
		leaks("output", out)
	}
	// A rotate that fails tells a caller who may not read the category.
	errOut := describer.fail(exitFailure, []string{"rotation failed: auth failed"}, "rotate", name, "--wait")
	leaks("rotate --wait", errOut)
	errOut = reader.fail(exitDenied, []string{"permission denied"}, "rotate", name, "--wait")
	leaks("rotate without permission", errOut)
	// A writer that may not read gets no fingerprint back from put.
	other := prefix + "/plain"
	root.withStdin([]byte("first")).ok("secret", "create", other, "--value-stdin")
	v := okJSON[client.Version](describer.withStdin([]byte("second")), "secret", "put", other, "--value-stdin")
	if v.Version != 2 || v.Fingerprint != "" {
		t.Errorf("describer: put answered %+v, want version 2 without a fingerprint", v)
	}
	if v := okJSON[client.Secret](root, "secret", "describe", other); len(v.Versions) != 2 || v.Versions[1].Fingerprint == "" {
		t.Errorf("root: describe %+v, want 2 versions with fingerprints (negative control)", v.Versions)
	}
}

// TestReviewCreateUnderKeyNeedsEncrypt: creating a secret under a named
// master key, or putting a version of one, needs encrypt on the key: 403
// naming the key, an audit record, nothing created or added. The default
// key needs nothing.
func TestReviewCreateUnderKeyNeedsEncrypt(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	alias := uniq("rev-key")
	k := okJSON[client.Key](root, "key", "create", "--region", "default", "--alias", alias)
	prefix := uniq("rev-kms")
	tok := createToken(root, `{"rules":[{"secrets":"`+prefix+`/*","actions":["list","describe","read","write"]}]}`)
	c := s.as(t, tok)

	// Refused: create under the key.
	name := prefix + "/under-key"
	c.withStdin([]byte("v1")).fail(exitDenied, []string{"permission denied", "encrypt", k.ID},
		"secret", "create", name, "--key", "alias/"+alias, "--value-stdin")
	c.withStdin([]byte("v1")).fail(exitDenied, []string{"permission denied", "encrypt", k.ID},
		"secret", "create", name, "--key", k.ID, "--value-stdin")
	root.fail(exitNotFound, []string{"not found"}, "secret", "describe", name)
	denied := 0
	for _, rec := range reviewAuditRecords(root) {
		if rec.Action == "key.encrypt" && rec.Result == "denied" && rec.Target == k.ID {
			denied++
		}
	}
	if denied != 2 {
		t.Errorf("audit: %d denied key.encrypt records on %s, want 2", denied, k.ID)
	}
	// Refused: a new version of a secret under the key.
	held := prefix + "/held"
	root.withStdin([]byte("root-v1")).ok("secret", "create", held, "--key", "alias/"+alias, "--value-stdin")
	c.withStdin([]byte("v2")).fail(exitDenied, []string{"permission denied", "encrypt", k.ID}, "secret", "put", held, "--value-stdin")
	if sv := okJSON[client.SecretValue](root, "secret", "get", held); sv.Version != 1 || sv.Value != "root-v1" {
		t.Errorf("after a refused put: current %+v, want version 1 root-v1", sv)
	}
	// Allowed: the default key, explicitly or not (negative control).
	c.withStdin([]byte("d")).ok("secret", "create", prefix+"/default", "--value-stdin")
	c.withStdin([]byte("d")).ok("secret", "create", prefix+"/default2", "--key", "alias/default", "--value-stdin")
	c.withStdin([]byte("d2")).ok("secret", "put", prefix+"/default", "--value-stdin")
	// Allowed: with encrypt on the key.
	enc := s.as(t, createToken(root, `{"rules":[{"secrets":"`+prefix+`/*","actions":["describe","write"]},{"keys":"alias/`+alias+`","actions":["encrypt"]}]}`))
	sec := okJSON[client.Secret](enc.withStdin([]byte("v1")), "secret", "create", name, "--key", "alias/"+alias, "--value-stdin")
	if sec.KeyID != k.ID {
		t.Errorf("create with encrypt: key_id %q, want %s", sec.KeyID, k.ID)
	}
	enc.withStdin([]byte("v2")).ok("secret", "put", held, "--value-stdin")

	// Keys are listed page by page too, in the same order as all at once.
	for range 4 {
		root.ok("key", "create", "--region", "default", "--alias", uniq("rev-page"))
	}
	whole := okJSON[client.KeyList](root, "key", "list")
	var paged []string
	after, pages := "", 0
	for {
		path := "/v1/keys?limit=2"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		code, body := s.httpDo(t, "GET", path, s.rootToken, "", nil)
		if code != 200 {
			t.Fatalf("GET %s = %d %s", path, code, body)
		}
		var page client.KeyList
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		pages++
		for _, k := range page.Keys {
			paged = append(paged, k.ID)
		}
		if page.Next == "" || pages > 10 {
			break
		}
		after = page.Next
	}
	var want []string
	for _, k := range whole.Keys {
		want = append(want, k.ID)
	}
	if len(want) < 6 || strings.Join(paged, ",") != strings.Join(want, ",") || pages != (len(want)+1)/2 {
		t.Errorf("keys by pages of 2: %d pages %q, want %q", pages, paged, want)
	}
	if code, body := s.httpDo(t, "GET", "/v1/keys?after=not-a-cursor", s.rootToken, "", nil); code != 400 {
		t.Errorf("GET /v1/keys?after=not-a-cursor = %d %s, want 400", code, body)
	}
}

// TestReviewSecretNames: names with ".", ".." or empty segments or a
// leading "/" are refused with a 400 naming the problem, and the CLI
// escapes every name so that none reaches another route.
func TestReviewSecretNames(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	for _, name := range []string{"..", ".", "a/../../v1/tokens", "a/./b", "/lead", "a//b", "trail/", "app/.."} {
		root.withStdin([]byte("v")).fail(exitUsage, []string{"invalid input", "invalid secret name"}, "secret", "create", name, "--value-stdin")
		for _, args := range [][]string{
			{"secret", "describe", name}, {"secret", "get", name}, {"secret", "delete", name, "--force"},
			{"rotation", "show", name}, {"rotation", "history", name},
		} {
			root.fail(exitUsage, []string{"invalid secret name"}, args...)
		}
		root.withStdin([]byte("v")).fail(exitUsage, []string{"invalid secret name"}, "secret", "put", name, "--value-stdin")
	}
	root.withStdin([]byte("v")).fail(exitUsage, []string{"invalid secret name", "'?'"}, "secret", "create", "x?y", "--value-stdin")
	root.fail(exitUsage, []string{"invalid secret name", "'?'"}, "secret", "get", "x?y")
	// Raw HTTP: an escaped dot segment is a name, not a path step.
	for _, p := range []string{"/v1/secrets/%2E%2E", "/v1/secrets/a%2F..%2F..%2Fv1%2Ftokens", "/v1/secrets/%2E%2E/value"} {
		code, body := s.httpDo(t, "GET", p, s.rootToken, "", nil)
		if code != 400 || !strings.Contains(string(body), "invalid secret name") {
			t.Errorf("GET %s = %d %s, want 400 invalid secret name", p, code, body)
		}
	}
	// Nothing was created and no token was listed or made along the way.
	if l := okJSON[client.SecretList](root, "secret", "list", "--deleted"); len(l.Secrets) != 0 {
		t.Errorf("secret list = %+v, want none", l.Secrets)
	}
	for _, args := range [][]string{{"rotate", ".."}, {"rotation", "enable", ".."}} {
		root.fail(exitUsage, []string{"invalid secret name"}, args...)
	}
	for _, rec := range reviewAuditRecords(root) {
		if strings.HasPrefix(rec.Action, "token.") {
			t.Errorf("audit: %s %s %s: a name reached the tokens route", rec.Action, rec.Target, rec.Result)
		}
	}
	// A secret stored before the segment rules keeps its name: it can
	// still be described, deleted and restored, but no new one is made.
	legacy := "/legacy//" + randHex(3)
	root.ok("secret", "create", "legacy-tmp")
	if _, err := s.sqliteDB(t).Exec(`UPDATE secrets SET name = ? WHERE name = 'legacy-tmp'`, legacy); err != nil {
		t.Fatalf("rename to a legacy name: %v", err)
	}
	if d := okJSON[client.Secret](root, "secret", "describe", legacy); d.Name != legacy {
		t.Errorf("describe %q = %q", legacy, d.Name)
	}
	root.ok("secret", "delete", legacy)
	root.ok("secret", "restore", legacy)
	root.withStdin([]byte("v")).fail(exitUsage, []string{"invalid secret name"}, "secret", "create", legacy+"2", "--value-stdin")
	root.ok("secret", "delete", legacy, "--force")
	root.fail(exitUsage, []string{"invalid secret name"}, "secret", "describe", legacy)
	// Names that only look like paths are fine (negative control).
	root.withStdin([]byte("v")).ok("secret", "create", "a.b/..c/d..", "--value-stdin")
	if got := root.ok("secret", "get", "a.b/..c/d.."); got != "v" {
		t.Errorf("secret get a.b/..c/d.. = %q, want v", got)
	}
}

// TestReviewListPagination: a token allowed app/* lists its own secrets
// among 1,000 others, page by page, with full pages: the store query
// filters by the policy, so no page is wasted on secrets it may not see.
func TestReviewListPagination(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		root := s.root(t)
		run := randHex(3)
		// "aaa…" sorts before "app…": a listing filtered after the query
		// would fill its first pages with them.
		var others, mine []string
		for i := range 1000 {
			others = append(others, fmt.Sprintf("aaa%s/%04d", run, i))
		}
		for i := range 25 {
			mine = append(mine, fmt.Sprintf("app%s/%02d", run, i))
		}
		all := append(append([]string(nil), others...), mine...)
		work := make(chan string)
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range work {
					body, _ := json.Marshal(client.CreateSecretRequest{Name: n, Value: client.NewValue([]byte("v"))})
					if code, b := s.httpDo(t, "POST", "/v1/secrets", s.rootToken, "application/json", body); code != 201 {
						t.Errorf("create %s: %d %s", n, code, b)
					}
				}
			}()
		}
		for _, n := range all {
			work <- n
		}
		close(work)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		tok := createToken(root, `{"rules":[{"secrets":"app`+run+`/*","actions":["list","describe"]}]}`)
		var got []string
		after, pages := "", 0
		for {
			path := "/v1/secrets?limit=10"
			if after != "" {
				path += "&after=" + url.QueryEscape(after)
			}
			code, body := s.httpDo(t, "GET", path, tok, "", nil)
			if code != 200 {
				t.Fatalf("GET %s = %d %s", path, code, body)
			}
			var page client.SecretList
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			pages++
			if page.Next != "" && len(page.Secrets) != 10 {
				t.Errorf("page %d has %d secrets and a next cursor, want full pages of 10", pages, len(page.Secrets))
			}
			for _, sec := range page.Secrets {
				got = append(got, sec.Name)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
			if pages > 10 {
				t.Fatalf("more than 10 pages for 25 secrets")
			}
		}
		if strings.Join(got, ",") != strings.Join(mine, ",") || pages != 3 {
			t.Errorf("paged listing: %d pages %q, want 3 pages of %q", pages, got, mine)
		}
		// The CLI follows the cursor.
		l := okJSON[client.SecretList](s.as(t, tok), "secret", "list", "--page-size", "7")
		if len(l.Secrets) != 25 || l.Next != "" {
			t.Errorf("secret list --page-size 7: %d secrets (next %q), want 25", len(l.Secrets), l.Next)
		}
		if l := okJSON[client.SecretList](root, "secret", "list", "--prefix", "aaa"+run+"/"); len(l.Secrets) != 1000 {
			t.Errorf("root: secret list --prefix: %d secrets, want 1000", len(l.Secrets))
		}
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "deleted=maybe"} {
			if code, body := s.httpDo(t, "GET", "/v1/secrets?"+q, s.rootToken, "", nil); code != 400 {
				t.Errorf("GET /v1/secrets?%s = %d %s, want 400", q, code, body)
			}
		}
	})
}

// TestReviewValueFlagWarns: --value warns on stderr that the value is
// visible in ps and shell history; --value-stdin and --value-file do not.
func TestReviewValueFlagWarns(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	name := uniq("rev-warn")
	_, errOut, code := root.run("secret", "create", name, "--value", "on-the-command-line")
	if code != 0 || !strings.Contains(errOut, valueWarning) || !strings.Contains(errOut, "ps") {
		t.Errorf("create --value: exit %d, stderr %q, want 0 and the warning", code, errOut)
	}
	_, errOut, code = root.run("secret", "put", name, "--value", "again")
	if code != 0 || !strings.Contains(errOut, valueWarning) {
		t.Errorf("put --value: exit %d, stderr %q, want 0 and the warning", code, errOut)
	}
	_, errOut, code = root.withStdin([]byte("quiet")).run("secret", "put", name, "--value-stdin")
	if code != 0 || errOut != "" {
		t.Errorf("put --value-stdin: exit %d, stderr %q, want 0 and nothing", code, errOut)
	}
	f := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(f, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = root.run("secret", "put", name, "--value-file", f)
	if code != 0 || errOut != "" {
		t.Errorf("put --value-file: exit %d, stderr %q, want 0 and nothing", code, errOut)
	}
}
