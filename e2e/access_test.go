package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

func TestPoliciesAndTokens(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		pol := uniq("readers")
		doc := `{"rules":[{"secrets":"app/*","actions":["list","describe","read"]},{"keys":"*","actions":["encrypt","decrypt"]}]}`
		f := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		out := c.ok("policy", "put", pol, "--file", f)
		if !strings.Contains(out, pol) {
			t.Errorf("policy put printed %q", out)
		}
		if out := c.ok("policy", "list"); !strings.Contains(out, pol) {
			t.Errorf("policy list lacks %s:\n%s", pol, out)
		}
		pl := okJSON[client.PolicyList](c, "policy", "list")
		if !slices.ContainsFunc(pl.Policies, func(p client.Policy) bool { return p.Name == pol }) {
			t.Errorf("policy list -o json lacks %s", pol)
		}
		out = c.ok("policy", "show", pol)
		for _, w := range []string{"app/*", "list,describe,read", "encrypt,decrypt"} {
			if !strings.Contains(out, w) {
				t.Errorf("policy show lacks %q:\n%s", w, out)
			}
		}
		p := okJSON[client.Policy](c, "policy", "show", pol)
		if p.Name != pol || len(p.Document.Rules) != 2 || p.Document.Rules[0].Secrets != "app/*" {
			t.Errorf("policy show -o json = %+v", p)
		}
		// replace from stdin
		c.withStdin([]byte(`{"rules":[{"secrets":"app/*","actions":["read"]}]}`)).ok("policy", "put", pol, "--file", "-")
		if p := okJSON[client.Policy](c, "policy", "show", pol); len(p.Document.Rules) != 1 {
			t.Errorf("policy put --file - did not replace the policy: %+v", p)
		}
		// bad documents: invalid JSON caught locally, unknown action by the server
		bad := filepath.Join(t.TempDir(), "bad.json")
		_ = os.WriteFile(bad, []byte(`{"rules":[`), 0o600)
		c.fail(exitUsage, []string{"--file", "JSON"}, "policy", "put", pol, "--file", bad)
		_ = os.WriteFile(bad, []byte(`{"rules":[{"secrets":"*","actions":["reed"]}]}`), 0o600)
		c.fail(exitUsage, []string{"reed"}, "policy", "put", pol, "--file", bad)

		// tokens: the token alone on stdout line 1, details on stderr
		stdout, stderr, code := c.run("token", "create", "--policy", pol, "--ttl", "1d", "--name", "ci-"+pol)
		if code != 0 {
			t.Fatalf("token create: exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		if len(lines) != 1 || lines[0] == "" || strings.Contains(lines[0], " ") {
			t.Fatalf("token create stdout = %q, want the token alone", stdout)
		}
		tok := lines[0]
		if !strings.Contains(stderr, "tok_") || !strings.Contains(stderr, "ci-"+pol) {
			t.Errorf("token create stderr = %q, want the id and name", stderr)
		}
		tj := okJSON[client.Token](c, "token", "create", "--policy", pol)
		if tj.Token == "" || tj.ID == "" || !slices.Equal(tj.Policies, []string{pol}) {
			t.Errorf("token create -o json = %+v", tj)
		}
		tl := okJSON[client.TokenList](c, "token", "list")
		var id string
		for _, tk := range tl.Tokens {
			if tk.Token != "" {
				t.Errorf("token list shows a token secret for %s", tk.ID)
			}
			if tk.Name == "ci-"+pol {
				id = tk.ID
				if tk.ExpiresAt == nil || time.Until(*tk.ExpiresAt) < 23*time.Hour {
					t.Errorf("token --ttl 1d expires at %v", tk.ExpiresAt)
				}
			}
		}
		if id == "" {
			t.Fatalf("token list -o json lacks the token named ci-%s: %+v", pol, tl)
		}
		out = c.ok("token", "list")
		if !strings.Contains(out, id) || strings.Contains(out, tok) {
			t.Errorf("token list text: want the id and never the token:\n%s", out)
		}
		// the new token works (its policy now grants read on app/*), then
		// is revoked
		readable := "app/" + uniq("r")
		c.ok("secret", "create", readable, "--value", "r")
		if got := s.as(t, tok).ok("secret", "get", readable); got != "r" {
			t.Errorf("secret get with the new token = %q, want r", got)
		}
		c.ok("token", "revoke", id)
		waitFor(t, 15*time.Second, "the revoked token to be refused", func() bool {
			_, _, code := s.as(t, tok).run("secret", "get", readable)
			return code == exitDenied
		})
		c.fail(exitNotFound, []string{"not found"}, "token", "revoke", "tok_000000000000")

		c.ok("policy", "delete", pol)
		c.fail(exitNotFound, []string{"not found"}, "policy", "show", pol)
	})
}

// TestAuthorizationMatrix gives, for each action, one token whose policy
// grants only that action and one whose policy grants every other action,
// and checks the first succeeds and the second is denied.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	prefix := uniq("authz")
	secretGlob := prefix + "/*"
	target := prefix + "/db"
	root.ok("secret", "create", target, "--value", "v1")
	// a ciphertext for the decrypt checks
	ct := strings.TrimSpace(root.withStdin([]byte("plain")).ok("kms", "encrypt", "--key", "alias/default", "--plaintext-stdin"))

	secretActions := []string{"list", "describe", "read", "write", "rotate", "delete", "admin"}
	keyActions := []string{"encrypt", "decrypt", "admin"}
	policyFor := func(secretActs, keyActs []string, system bool) string {
		var rules []string
		q := func(xs []string) string { return `["` + strings.Join(xs, `","`) + `"]` }
		if len(secretActs) > 0 {
			rules = append(rules, fmt.Sprintf(`{"secrets":%q,"actions":%s}`, secretGlob, q(secretActs)))
		}
		if len(keyActs) > 0 {
			rules = append(rules, fmt.Sprintf(`{"keys":"*","actions":%s}`, q(keyActs)))
		}
		if system {
			rules = append(rules, `{"system":"policies","actions":["admin"]}`)
		}
		if len(rules) == 0 {
			// a policy must say something: grant something unrelated
			rules = append(rules, `{"secrets":"unrelated-`+prefix+`/*","actions":["read"]}`)
		}
		return `{"rules":[` + strings.Join(rules, ",") + `]}`
	}
	without := func(xs []string, x string) []string {
		return slices.DeleteFunc(slices.Clone(xs), func(y string) bool { return y == x })
	}

	type check struct {
		action string
		// only: the policy granting just the action; others: every other action
		only, others string
		// do runs the action with a token; it returns the CLI result.
		do func(c cli, i int) (string, string, int)
	}
	checks := []check{
		{"list", policyFor([]string{"list"}, nil, false), policyFor(without(secretActions[:6], "list"), keyActions, true),
			func(c cli, _ int) (string, string, int) {
				return c.run("secret", "list", "--prefix", prefix, "-o", "json")
			}},
		{"describe", policyFor([]string{"describe"}, nil, false), policyFor(without(secretActions[:6], "describe"), keyActions, true),
			func(c cli, _ int) (string, string, int) { return c.run("secret", "describe", target) }},
		{"read", policyFor([]string{"read"}, nil, false), policyFor(without(secretActions[:6], "read"), keyActions, true),
			func(c cli, _ int) (string, string, int) { return c.run("secret", "get", target) }},
		{"write", policyFor([]string{"write"}, nil, false), policyFor(without(secretActions[:6], "write"), keyActions, true),
			func(c cli, _ int) (string, string, int) { return c.run("secret", "put", target, "--value", "written") }},
		{"delete", policyFor([]string{"delete"}, nil, false), policyFor(without(secretActions[:6], "delete"), keyActions, true),
			func(c cli, i int) (string, string, int) {
				name := fmt.Sprintf("%s/del-%d-%s", prefix, i, randHex(3))
				root.ok("secret", "create", name, "--value", "x")
				return c.run("secret", "delete", name, "--force")
			}},
		{"admin (secrets)", policyFor([]string{"admin"}, nil, false), policyFor(nil, keyActions, true),
			func(c cli, _ int) (string, string, int) { return c.run("secret", "get", target) }},
		{"admin (system)", policyFor(nil, nil, true), policyFor(secretActions, keyActions, false),
			func(c cli, _ int) (string, string, int) { return c.run("policy", "list") }},
		{"encrypt", policyFor(nil, []string{"encrypt"}, false), policyFor(secretActions, []string{"decrypt"}, true),
			func(c cli, _ int) (string, string, int) {
				return c.withStdin([]byte("m")).run("kms", "encrypt", "--key", "alias/default", "--plaintext-stdin")
			}},
		{"decrypt", policyFor(nil, []string{"decrypt"}, false), policyFor(secretActions, []string{"encrypt"}, true),
			func(c cli, _ int) (string, string, int) {
				return c.withStdin([]byte(ct)).run("kms", "decrypt", "--ciphertext-stdin")
			}},
	}
	for i, ck := range checks {
		t.Run(ck.action, func(t *testing.T) {
			rootT := s.root(t)
			only := createToken(rootT, ck.only)
			others := createToken(rootT, ck.others)
			stdout, stderr, code := ck.do(s.as(t, only), i)
			if code != 0 {
				t.Errorf("%s with a token granting it: exit %d, stderr %q", ck.action, code, stderr)
			}
			if ck.action == "list" && !strings.Contains(stdout, target) {
				t.Errorf("list with a token granting it does not show %s: %s", target, stdout)
			}
			stdout, stderr, code = ck.do(s.as(t, others), i)
			if ck.action == "list" {
				// The listing is filtered: lacking list either hides the
				// secret or is refused outright.
				if code == 0 && strings.Contains(stdout, target) {
					t.Errorf("list without the list action shows %s: %s", target, stdout)
				}
				if code != 0 && code != exitDenied {
					t.Errorf("list without the list action: exit %d, stderr %q", code, stderr)
				}
				return
			}
			if code != exitDenied {
				t.Fatalf("%s with a token lacking it: exit %d, want %d (stdout %q, stderr %q)", ck.action, code, exitDenied, stdout, stderr)
			}
			checkErrorLine(t, []string{ck.action}, stderr, "permission denied")
		})
	}

	t.Run("describe-only cannot read", func(t *testing.T) {
		tok := createToken(s.root(t), policyFor([]string{"describe", "list"}, nil, false))
		c := s.as(t, tok)
		c.ok("secret", "describe", target)
		c.fail(exitDenied, []string{"permission denied", target}, "secret", "get", target)
		c.fail(exitDenied, []string{"permission denied"}, "secret", "get", target, "--stage", "previous")
	})
	t.Run("read scope is the glob", func(t *testing.T) {
		other := uniq("other") + "/s"
		root.ok("secret", "create", other, "--value", "x")
		tok := createToken(s.root(t), policyFor(secretActions, keyActions, false))
		s.as(t, tok).fail(exitDenied, []string{"permission denied"}, "secret", "get", other)
		s.as(t, tok).fail(exitDenied, []string{"permission denied"}, "policy", "list")
		s.as(t, tok).fail(exitDenied, []string{"permission denied"}, "token", "create", "--policy", "x")
		s.as(t, tok).fail(exitDenied, []string{"permission denied"}, "audit", "list")
		s.as(t, tok).fail(exitDenied, []string{"permission denied"}, "key", "create", "--region", "default")
	})
}

func TestTokensRefused(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	root.ok("secret", "create", uniq("tok")+"/s", "--value", "x")

	s.as(t, "").fail(exitDenied, []string{"authentication failed"}, "secret", "list")
	s.as(t, "rot_"+strings.Repeat("A", 43)).fail(exitDenied, []string{"authentication failed"}, "secret", "list")
	s.as(t, "e2e-wrong-"+randHex(16)).fail(exitDenied, []string{"authentication failed"}, "secret", "list")
	s.as(t, "bad token with spaces").fail(exitDenied, []string{"authentication failed"}, "secret", "list")

	doc := `{"rules":[{"secrets":"*","actions":["list"]}]}`
	// revoked
	pol := uniq("p")
	f := filepath.Join(t.TempDir(), "p.json")
	_ = os.WriteFile(f, []byte(doc), 0o600)
	root.ok("policy", "put", pol, "--file", f)
	tj := okJSON[client.Token](root, "token", "create", "--policy", pol)
	s.as(t, tj.Token).ok("secret", "list")
	root.ok("token", "revoke", tj.ID)
	waitFor(t, 15*time.Second, "the revoked token to be refused", func() bool {
		_, _, code := s.as(t, tj.Token).run("secret", "list")
		return code == exitDenied
	})
	s.as(t, tj.Token).fail(exitDenied, []string{"authentication failed"}, "secret", "list")

	// expired
	exp := okJSON[client.Token](root, "token", "create", "--policy", pol, "--ttl", "1s")
	if exp.ExpiresAt == nil {
		t.Fatalf("token --ttl 1s has no expiry: %+v", exp)
	}
	waitFor(t, 15*time.Second, "the 1s token to expire", func() bool {
		_, _, code := s.as(t, exp.Token).run("secret", "list")
		return code == exitDenied
	})
	s.as(t, exp.Token).fail(exitDenied, []string{"authentication failed"}, "secret", "list")
	if tl := root.ok("token", "list"); !strings.Contains(tl, "expired") || !strings.Contains(tl, "revoked") {
		t.Errorf("token list does not show the expired and revoked tokens:\n%s", tl)
	}
}
