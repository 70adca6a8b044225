package e2e

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestOpenAPIDocumentServed: the built daemon answers GET /v1/openapi.json
// without a token with an OpenAPI 3 document, and every operation it
// documents is a route of that daemon (without a token the route answers
// 401 or its public answer, never the unknown-route 404).
func TestOpenAPIDocumentServed(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	code, body := s.httpDo(t, http.MethodGet, "/v1/openapi.json", "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json without a token = %d %s, want 200", code, body)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("GET /v1/openapi.json is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	for _, p := range []string{"/v1/secrets/{name}/value", "/v1/secrets/{name}/rotate", "/v1/events", "/v1/openapi.json"} {
		if doc.Paths[p] == nil {
			t.Errorf("the document has no path %s", p)
		}
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	public := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/v1/openapi.json": true}
	n := 0
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			n++
			url := param.ReplaceAllString(path, "x")
			code, body := s.httpDo(t, strings.ToUpper(method), url, "", "", nil)
			want := http.StatusUnauthorized
			if public[path] {
				want = http.StatusOK
			}
			if code != want || strings.Contains(string(body), "no such endpoint") {
				t.Errorf("%s %s without a token = %d %s, want %d (a documented route of this daemon)", strings.ToUpper(method), url, code, body, want)
			}
		}
	}
	// Negative control: a path the document does not have is the
	// unknown-route 404, so the loop above would have seen a missing route.
	if code, body := s.httpDo(t, http.MethodGet, "/v1/frobnicate", "", "", nil); code != http.StatusNotFound || !strings.Contains(string(body), "no such endpoint") {
		t.Errorf("GET /v1/frobnicate = %d %s, want the unknown-route 404", code, body)
	}
	if n < 40 {
		t.Errorf("the document has %d operations, want every route (40 or more)", n)
	}
}
