package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/rotary-secrets/rotary/client"
)

// TestTokenAndPolicyListsArePaged: the token and policy listings answer a
// page at a time from the store (?limit=&after=, next), and the CLI
// follows the pages to the end.
func TestTokenAndPolicyListsArePaged(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	const n = 25
	var policies []string
	for i := range n {
		name := fmt.Sprintf("pg%s-%02d", randHex(3), i)
		body := []byte(`{"rules":[{"secrets":"app/*","actions":["describe"]}]}`)
		if code, b := s.httpDo(t, "PUT", "/v1/policies/"+name, s.rootToken, "application/json", body); code != 200 {
			t.Fatalf("PUT policy %s: %d %s", name, code, b)
		}
		policies = append(policies, name)
		req, _ := json.Marshal(client.CreateTokenRequest{Policies: []string{name}, Name: name})
		if code, b := s.httpDo(t, "POST", "/v1/tokens", s.rootToken, "application/json", req); code != 201 {
			t.Fatalf("POST token: %d %s", code, b)
		}
	}

	// pages walks a listing with pages of 10 and returns every item's key.
	pages := func(path string, keys func([]byte) ([]string, string)) (all []string, count int) {
		after := ""
		for {
			p := path + "?limit=10"
			if after != "" {
				p += "&after=" + url.QueryEscape(after)
			}
			code, body := s.httpDo(t, "GET", p, s.rootToken, "", nil)
			if code != 200 {
				t.Fatalf("GET %s = %d %s", p, code, body)
			}
			got, next := keys(body)
			count++
			if next != "" && len(got) != 10 {
				t.Errorf("GET %s: %d items and a next cursor, want a full page of 10", p, len(got))
			}
			all = append(all, got...)
			if next == "" || count > 20 {
				return all, count
			}
			after = next
		}
	}
	gotPolicies, np := pages("/v1/policies", func(b []byte) ([]string, string) {
		var l client.PolicyList
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range l.Policies {
			names = append(names, p.Name)
		}
		return names, l.Next
	})
	if np != 3 || !slices.IsSorted(gotPolicies) || len(gotPolicies) != n {
		t.Errorf("policies in %d pages: %q, want %d sorted names in 3 pages", np, gotPolicies, n)
	}
	gotTokens, nt := pages("/v1/tokens", func(b []byte) ([]string, string) {
		var l client.TokenList
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tk := range l.Tokens {
			ids = append(ids, tk.ID)
		}
		return ids, l.Next
	})
	// 25 tokens and the root token.
	if nt != 3 || len(gotTokens) != n+1 || !slices.IsSorted(gotTokens) || len(slices.Compact(slices.Clone(gotTokens))) != n+1 {
		t.Errorf("tokens in %d pages: %d ids (sorted %v), want %d distinct sorted ids in 3 pages", nt, len(gotTokens), slices.IsSorted(gotTokens), n+1)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x"} {
		for _, path := range []string{"/v1/tokens?", "/v1/policies?"} {
			if code, body := s.httpDo(t, "GET", path+q, s.rootToken, "", nil); code != 400 {
				t.Errorf("GET %s%s = %d %s, want 400", path, q, code, body)
			}
		}
	}
	// The CLI follows the pages (100 per page by default: use more than that).
	for i := range 80 {
		req, _ := json.Marshal(client.CreateTokenRequest{Policies: []string{policies[i%n]}})
		if code, b := s.httpDo(t, "POST", "/v1/tokens", s.rootToken, "application/json", req); code != 201 {
			t.Fatalf("POST token: %d %s", code, b)
		}
	}
	if l := okJSON[client.TokenList](root, "token", "list"); len(l.Tokens) != n+1+80 {
		t.Errorf("token list: %d tokens, want %d", len(l.Tokens), n+1+80)
	}
	if l := okJSON[client.PolicyList](root, "policy", "list"); len(l.Policies) != n {
		t.Errorf("policy list: %d policies, want %d", len(l.Policies), n)
	}
}

// TestStatusIsPagedAndFilteredInTheQuery: status pages hold only rows the
// token may describe, even when many rows it may not see sort first.
func TestStatusIsPagedAndFilteredInTheQuery(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	run := randHex(3)
	var mine []string
	create := func(name string) {
		body, _ := json.Marshal(client.CreateSecretRequest{Name: name, Type: "password", Value: client.NewValue([]byte("first-password-123"))})
		if code, b := s.httpDo(t, "POST", "/v1/secrets", s.rootToken, "application/json", body); code != 201 {
			t.Fatalf("create %s: %d %s", name, code, b)
		}
		set, _ := json.Marshal(client.RotationSettings{Rotator: "random"})
		if code, b := s.httpDo(t, "PUT", "/v1/secrets/"+client.PathEscape(name)+"/rotation", s.rootToken, "application/json", set); code != 200 {
			t.Fatalf("rotation set %s: %d %s", name, code, b)
		}
	}
	for i := range 60 {
		create(fmt.Sprintf("aaa%s/%02d", run, i)) // sorts before the token's own
	}
	for i := range 12 {
		name := fmt.Sprintf("app%s/%02d", run, i)
		create(name)
		mine = append(mine, name)
	}
	tok := createToken(root, `{"rules":[{"secrets":"app`+run+`/*","actions":["describe"]}]}`)
	var got []string
	after, pages := "", 0
	for pages < 20 {
		path := "/v1/status?limit=5"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		code, body := s.httpDo(t, "GET", path, tok, "", nil)
		if code != 200 {
			t.Fatalf("GET %s = %d %s", path, code, body)
		}
		var page client.Status
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range page.Secrets {
			got = append(got, r.Name)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if !slices.Equal(got, mine) || pages != 3 {
		t.Errorf("status pages: %d pages %q, want 3 pages of %q", pages, got, mine)
	}
	// The CLI follows the pages: root sees every row.
	if rows := okJSON[client.Status](root, "status"); len(rows.Secrets) != 72 {
		t.Errorf("status: %d rows, want 72", len(rows.Secrets))
	}
}
