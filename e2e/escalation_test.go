package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// Issue 8, class 2: no escalation through tokens and policies. A token
// hands on only what it holds; each refusal is a 403 naming what was
// refused, leaves a denied audit record and changes nothing.

// putPolicy writes a policy document with c.
func putPolicy(c cli, name, doc string) {
	c.t.Helper()
	f := filepath.Join(c.t.TempDir(), name+".json")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.ok("policy", "put", name, "--file", f)
}

// tryPutPolicy writes a policy document with c and returns the result.
func tryPutPolicy(c cli, name, doc string) (string, string, int) {
	c.t.Helper()
	f := filepath.Join(c.t.TempDir(), name+".json")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return c.run("policy", "put", name, "--file", f)
}

// auditRecords returns the audit log, raw and decoded, read with the root
// token.
func auditRecords(t *testing.T, s *server) (string, []client.AuditRecord) {
	t.Helper()
	code, body := s.httpDo(t, http.MethodGet, "/v1/audit?limit=100000", s.rootToken, "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/audit: %d %s", code, body)
	}
	var l client.AuditList
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("GET /v1/audit: %v", err)
	}
	return string(body), l.Records
}

// wantDenied checks that the audit log holds at least n records of token
// id doing action with result denied, each detail containing one of the
// wanted strings in order.
func wantDenied(t *testing.T, s *server, tokenID, action string, details ...string) {
	t.Helper()
	_, recs := auditRecords(t, s)
	var got []string
	for _, r := range recs {
		if r.TokenID == tokenID && r.Action == action && r.Result == "denied" {
			got = append(got, r.Detail)
		}
	}
	for _, d := range details {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, d) }) {
			t.Errorf("no denied %s audit record of %s mentions %q; denied records: %q", action, tokenID, d, got)
		}
	}
}

func tokenList(t *testing.T, c cli) []client.Token {
	t.Helper()
	return okJSON[client.TokenList](c, "token", "list").Tokens
}

func TestEscalationTokens(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		root := s.root(t)
		app := uniq("app")
		secret := app + "/db"
		root.ok("secret", "create", secret, "--value", "v1")
		p, q := uniq("p"), uniq("q")
		putPolicy(root, p, fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["read","list"]},{"system":"tokens","actions":["admin"]}]}`, app+"/*"))
		putPolicy(root, q, `{"rules":[{"secrets":"*","actions":["admin"]}]}`)

		// A: admin on tokens, only policy P, one hour to live.
		a := okJSON[client.Token](root, "token", "create", "--policy", p, "--ttl", "1h", "--name", "a-"+p)
		ac := s.as(t, a.Token)
		qTok := okJSON[client.Token](root, "token", "create", "--policy", q, "--name", "q-"+q)
		before := len(tokenList(t, root))

		ac.fail(exitDenied, []string{"permission denied", `"root"`, "only by a root token"}, "token", "create", "--policy", "root")
		ac.fail(exitDenied, []string{"permission denied", q}, "token", "create", "--policy", q)
		ac.fail(exitDenied, []string{"permission denied", q}, "token", "create", "--policy", p, "--policy", q)
		ac.fail(exitDenied, []string{"permission denied", `"root"`}, "token", "create", "--policy", p, "--policy", "root")
		ac.fail(exitDenied, []string{"permission denied", "ttl", "outlive"}, "token", "create", "--policy", p, "--ttl", "2h")
		ac.fail(exitDenied, []string{"permission denied", "ttl"}, "token", "create", "--policy", p, "--ttl", "30d")
		if n := len(tokenList(t, root)); n != before {
			t.Fatalf("refused token creations changed the token list: %d tokens, want %d", n, before)
		}
		wantDenied(t, s, a.ID, "tokens.create", `policy "root"`, fmt.Sprintf("policy %q", q), "would outlive this token")

		// Negative controls: a subset of A's policies and a shorter TTL are
		// created and work; with no TTL the child expires with A.
		child := okJSON[client.Token](ac, "token", "create", "--policy", p, "--ttl", "30m")
		if got := s.as(t, child.Token).ok("secret", "get", secret); got != "v1" {
			t.Errorf("child token reads %q, want v1", got)
		}
		inherit := okJSON[client.Token](ac, "token", "create", "--policy", p)
		if inherit.ExpiresAt == nil || a.ExpiresAt == nil || inherit.ExpiresAt.Sub(*a.ExpiresAt).Abs() > time.Second {
			t.Errorf("child without --ttl expires at %v, want the creator's expiry %v", inherit.ExpiresAt, a.ExpiresAt)
		}
		// A creator that never expires may give any lifetime (still only its
		// own policies); the root token may hand out anything.
		forever := okJSON[client.Token](root, "token", "create", "--policy", p, "--name", "forever-"+p)
		okJSON[client.Token](s.as(t, forever.Token), "token", "create", "--policy", p, "--ttl", "30d")
		s.as(t, forever.Token).fail(exitDenied, []string{"permission denied", q}, "token", "create", "--policy", q)
		okJSON[client.Token](root, "token", "create", "--policy", q, "--ttl", "30d")

		// Revocation: never a root token, never a token holding a policy A
		// lacks; its own children, and itself, it may.
		var rootID string
		for _, tk := range tokenList(t, root) {
			if slices.Contains(tk.Policies, "root") && tk.RevokedAt == nil {
				rootID = tk.ID
			}
		}
		if rootID == "" {
			t.Fatal("token list shows no root token")
		}
		ac.fail(exitDenied, []string{"permission denied", rootID, "root"}, "token", "revoke", rootID)
		ac.fail(exitDenied, []string{"permission denied", qTok.ID, q}, "token", "revoke", qTok.ID)
		root.ok("secret", "list") // the root token still works
		s.as(t, qTok.Token).ok("secret", "get", secret)
		wantDenied(t, s, a.ID, "tokens.revoke", rootID, qTok.ID)
		ac.ok("token", "revoke", child.ID)
		waitFor(t, 15*time.Second, "the revoked child to be refused", func() bool {
			_, _, code := s.as(t, child.Token).run("secret", "get", secret)
			return code == exitDenied
		})
	})
}

// TestRevokeWithTokenAsID: a real token given where a token id belongs is
// refused with 400 before any lookup, and its text reaches no audit
// record, no log line and no error; nor does a token refused with 401.
func TestRevokeWithTokenAsID(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	pol := uniq("p")
	putPolicy(root, pol, `{"rules":[{"system":"tokens","actions":["admin"]}]}`)
	victim := okJSON[client.Token](root, "token", "create", "--policy", pol, "--name", "victim")
	admin := okJSON[client.Token](root, "token", "create", "--policy", pol, "--name", "admin")

	for _, c := range []cli{root, s.as(t, admin.Token)} {
		stderr := c.fail(exitUsage, []string{"invalid token id", "this is a token"}, "token", "revoke", victim.Token)
		if strings.Contains(stderr, victim.Token) {
			t.Errorf("revoke error holds the token: %q", stderr)
		}
	}
	// A token where a policy name belongs is not echoed either.
	stderr := root.fail(exitUsage, []string{"policies[0]", "this is a token"}, "token", "create", "--policy", victim.Token)
	if strings.Contains(stderr, victim.Token) {
		t.Errorf("token create error holds the token: %q", stderr)
	}
	// Other garbage is refused the same way, without being echoed.
	for _, bad := range []string{"tok_XYZ", "tok_0123456789AB", "x" + victim.Token[1:], "../audit"} {
		code, body := s.httpDo(t, http.MethodDelete, "/v1/tokens/"+client.PathEscape(bad), s.rootToken, "", nil)
		if code != http.StatusBadRequest || !strings.Contains(string(body), "invalid token id") || strings.Contains(string(body), bad) {
			t.Errorf("DELETE /v1/tokens/%s = %d %s, want 400 invalid token id without the input", bad, code, body)
		}
	}
	// The victim still works: nothing was revoked.
	s.as(t, victim.Token).ok("token", "list")

	// 401 paths: a revoked token and a malformed one.
	gone := okJSON[client.Token](root, "token", "create", "--policy", pol, "--name", "gone")
	root.ok("token", "revoke", gone.ID)
	waitFor(t, 15*time.Second, "the revoked token to be refused", func() bool {
		_, _, code := s.as(t, gone.Token).run("token", "list")
		return code == exitDenied
	})
	malformed := "rot_" + strings.Repeat("Z", 40) + "!!!" // wrong length and alphabet
	s.as(t, malformed).fail(exitDenied, []string{"authentication failed"}, "token", "list")

	raw, recs := auditRecords(t, s)
	for _, tok := range []string{victim.Token, admin.Token, gone.Token, malformed} {
		if strings.Contains(raw, tok) {
			t.Errorf("the audit log holds a token's text")
		}
		if strings.Contains(s.logs.String(), tok) {
			t.Errorf("the daemon's log holds a token's text")
		}
	}
	invalid := 0
	for _, r := range recs {
		if r.Action == "tokens.revoke" && r.Result == "invalid" {
			invalid++
			if r.Target != "tokens" {
				t.Errorf("refused revoke audited with target %q, want \"tokens\"", r.Target)
			}
		}
	}
	if invalid != 6 {
		t.Errorf("%d refused revocations audited, want 6", invalid)
	}
}

func TestEscalationPolicies(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		root := s.root(t)
		app := uniq("app")
		secret := app + "/db"
		root.ok("secret", "create", secret, "--value", "v1")
		w := uniq("w")
		putPolicy(root, w, fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["admin"]},{"system":"policies","actions":["admin"]}]}`, app+"/*"))
		// A policy another, stronger token relies on.
		strong := uniq("strong")
		strongDoc := `{"rules":[{"secrets":"*","actions":["read"]}]}`
		putPolicy(root, strong, strongDoc)
		b := okJSON[client.Token](root, "token", "create", "--policy", w, "--name", "b-"+w)
		bc := s.as(t, b.Token)

		attacks := []struct {
			what, doc string
			want      []string
		}{
			{"admin on every secret", `{"rules":[{"secrets":"*","actions":["admin"]}]}`, []string{`"admin"`, `secrets "*"`}},
			{"a sibling prefix", fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["read"]}]}`, app+"*"), []string{`"read"`, app + "*"}},
			{"admin on tokens", `{"rules":[{"system":"tokens","actions":["admin"]}]}`, []string{`system "tokens"`}},
			{"every system resource", `{"rules":[{"system":"*","actions":["admin"]}]}`, []string{`system "*"`}},
			{"keys", `{"rules":[{"keys":"*","actions":["decrypt"]}]}`, []string{`"decrypt"`, `keys "*"`}},
			{"one bad rule among good", fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["read"]},{"secrets":"*","actions":["list"]}]}`, secret), []string{"rule 1"}},
		}
		for _, at := range attacks {
			name := uniq("evil")
			_, stderr, code := tryPutPolicy(bc, name, at.doc)
			if code != exitDenied {
				t.Fatalf("%s: policy put exit %d, want %d (stderr %q)", at.what, code, exitDenied, stderr)
			}
			checkErrorLine(t, []string{at.what}, stderr, append([]string{"permission denied", name}, at.want...)...)
			root.fail(exitNotFound, []string{"not found"}, "policy", "show", name)
		}
		wantDenied(t, s, b.ID, "policies.put", `secrets "*"`, `system "tokens"`, `keys "*"`)

		// Rewriting or deleting a policy that grants more than B holds, even
		// to narrow it, is refused, and it stays as it was.
		_, stderr, code := tryPutPolicy(bc, strong, fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["read"]}]}`, secret))
		if code != exitDenied {
			t.Fatalf("rewrite of a stronger policy: exit %d, want %d (stderr %q)", code, exitDenied, stderr)
		}
		checkErrorLine(t, []string{"policy put", strong}, stderr, "permission denied", strong, "grants more than this token holds")
		bc.fail(exitDenied, []string{"permission denied", strong}, "policy", "delete", strong)
		if got := okJSON[client.Policy](root, "policy", "show", strong); len(got.Document.Rules) != 1 || got.Document.Rules[0].Secrets != "*" {
			t.Fatalf("the stronger policy changed: %+v", got.Document)
		}
		wantDenied(t, s, b.ID, "policies.delete", strong)
		// Nor may B widen its own policy.
		_, _, code = tryPutPolicy(bc, w, `{"rules":[{"secrets":"*","actions":["admin"]},{"system":"policies","actions":["admin"]}]}`)
		if code != exitDenied {
			t.Fatalf("widening its own policy: exit %d, want %d", code, exitDenied)
		}

		// Negative controls: a policy within B's rights is written, works,
		// can be narrowed and deleted by B.
		n := uniq("n")
		putPolicy(bc, n, fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["read","describe"]}]}`, secret))
		nt := okJSON[client.Token](root, "token", "create", "--policy", n)
		if got := s.as(t, nt.Token).ok("secret", "get", secret); got != "v1" {
			t.Errorf("token with the subset policy reads %q, want v1", got)
		}
		putPolicy(bc, n, fmt.Sprintf(`{"rules":[{"secrets":%q,"actions":["describe"]}]}`, secret))
		bc.ok("policy", "delete", n)
		// The root token may write anything.
		putPolicy(root, uniq("wide"), `{"rules":[{"system":"*","actions":["admin"]}]}`)
	})
}

// TestRootSecretsAtStart: the server refuses to start with a weak
// ROTARY_ROOT_TOKEN or a root key or root token file that group or others
// may read, naming the problem; the token appears in no output.
func TestRootSecretsAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "root.key")
	if err := os.WriteFile(key, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "root-token")
	cfg := filepath.Join(dir, "rotary.yaml")
	doc := fmt.Sprintf("listen: 127.0.0.1:%d\nstore: {sqlite: %s}\nroot_key: {file: %s}\nroot_token_file: %s\n",
		freePort(t), filepath.Join(dir, "rotary.db"), key, tokFile)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := func(env ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(rotaryBin, "server", "--config", cfg)
		cmd.Env = cleanEnv(env...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(readyTimeout):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("rotary server did not exit: %s", out)
		}
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}

	weak := "canary-weak-" + randHex(4)
	out, code := serve("ROTARY_ROOT_TOKEN=" + weak)
	if code == 0 || !strings.Contains(out, "ROTARY_ROOT_TOKEN") || !strings.Contains(out, "minimum is 32") || strings.Contains(out, weak) {
		t.Errorf("weak ROTARY_ROOT_TOKEN: exit %d, output %q; want a refusal naming the variable and the minimum, without the token", code, out)
	}

	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = serve()
	if code == 0 || !strings.Contains(out, key) || !strings.Contains(out, "mode 0644") || !strings.Contains(out, "chmod 600") {
		t.Errorf("root key file 0644: exit %d, output %q; want a refusal naming the file and its mode", code, out)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(tokFile, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokFile, 0o640); err != nil {
		t.Fatal(err)
	}
	out, code = serve()
	if code == 0 || !strings.Contains(out, tokFile) || !strings.Contains(out, "mode 0640") {
		t.Errorf("root token file 0640: exit %d, output %q; want a refusal naming the file and its mode", code, out)
	}
}
