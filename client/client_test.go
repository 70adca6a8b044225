package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestPathEscape: a name is always one path segment that no server, proxy
// or HTTP library reads as a dot segment, a query or another route.
func TestPathEscape(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, want string }{
		{"app/db", "app%2Fdb"},
		{"..", "%2E%2E"},
		{".", "%2E"},
		{"a/../../v1/tokens", "a%2F%2E%2E%2F%2E%2E%2Fv1%2Ftokens"},
		{"x?y", "x%3Fy"},
		{"a#b", "a%23b"},
		{"a b", "a%20b"},
		{"alias/x.y", "alias%2Fx%2Ey"},
	} {
		got := PathEscape(tt.name)
		if got != tt.want {
			t.Errorf("PathEscape(%q) = %q, want %q", tt.name, got, tt.want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != tt.name {
			t.Errorf("PathUnescape(PathEscape(%q)) = %q, %v; want the name back", tt.name, back, err)
		}
	}
}

// TestNoRedirects: the client never follows a redirect, so a request can
// never end up on a route it did not name; the token is not sent on.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	followed := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/tokens" {
			followed = true
			w.Write([]byte(`{"tokens":[]}`))
			return
		}
		http.Redirect(w, r, "/v1/tokens", http.StatusMovedPermanently)
	}))
	defer srv.Close()
	for _, opts := range [][]Option{nil, {WithHTTPClient(&http.Client{})}} {
		c, err := New(srv.URL, append([]Option{WithToken("tok")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.DescribeSecret(context.Background(), "app/db")
		if StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("DescribeSecret on a redirecting server err = %v (status %d), want a 400 naming the redirect", err, StatusOf(err))
		}
		if followed {
			t.Errorf("the client followed the redirect to /v1/tokens")
		}
	}
}
