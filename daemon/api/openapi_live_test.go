package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/hooks"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators/random"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// liveAPI is a real Server (SQLite store, KMS, secrets service, rotation
// engine with the random rotator) behind an HTTP listener, and a client
// that checks every request and answer against an OpenAPI document.
type liveAPI struct {
	t      *testing.T
	server *Server
	url    string
	root   string
	doc    *openapi3.T
	token  string // sent as the bearer token; "" sends none
	seen   map[string]bool
	// badRequest: the request is meant to break the document's rules.
	badRequest bool
}

func startLiveAPI(t *testing.T) *liveAPI {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rotary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rootKey := make([]byte, kms.RootKeySize)
	seed := make([]byte, 32)
	_, _ = rand.Read(rootKey)
	_, _ = rand.Read(seed)
	km, err := kms.New(ctx, kms.Config{Store: secrets.KeyStore(st), Root: sensitive.Bytes(rootKey)})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.EnsureRegion(ctx, secrets.DefaultRegion); err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := secrets.New(secrets.Config{Store: st, Keys: km, AuditKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rotation.New(rotation.Config{Store: st, Secrets: svc, Rotators: rotation.Registry{"random": random.Rotator{}}})
	if err != nil {
		t.Fatal(err)
	}
	hookKey := make([]byte, 32)
	_, _ = rand.Read(hookKey)
	hm, err := hooks.New(hooks.Config{Store: st, Key: hookKey})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Store: st, Secrets: svc, KMS: km, Engine: eng, AuditKey: testKey, AuditSigner: signer,
		Hooks: hm, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { eng.Stop(ctx) }) // first: a launched rotation ends before the rest stops
	plain, id, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(ctx, store.Token{ID: id, Hash: hash, Name: "root", Policies: []string{RootPolicyName}, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	return &liveAPI{t: t, server: s, url: srv.URL, root: plain, token: plain, doc: loadOpenAPI(t, OpenAPI()), seen: map[string]bool{}}
}

// answer is what a call returned.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// call sends METHOD template (its {params} filled in, path-escaped), with
// an optional raw query and JSON body, and checks the request and the
// answer against the document: the operation must be documented, the
// answer's status documented for it, and its body valid against the
// documented schema (additionalProperties false: no undocumented field).
func (l *liveAPI) call(method, template string, params map[string]string, query string, body any) answer {
	l.t.Helper()
	return l.callType(method, template, params, query, body, "application/json")
}

func (l *liveAPI) callType(method, template string, params map[string]string, query string, body any, contentType string) answer {
	l.t.Helper()
	a, err := l.do(method, template, params, query, body, contentType)
	if err != nil {
		l.t.Errorf("%v", err)
	}
	return a
}

// callBad is call for a request meant to be refused: only the answer is
// checked against the document.
func (l *liveAPI) callBad(method, template string, params map[string]string, query string, body any, contentType string) answer {
	l.t.Helper()
	l.badRequest = true
	defer func() { l.badRequest = false }()
	return l.callType(method, template, params, query, body, contentType)
}

// do sends the request and returns the answer, and an error when the
// request or the answer does not match the document.
func (l *liveAPI) do(method, template string, params map[string]string, query string, body any, contentType string) (answer, error) {
	l.t.Helper()
	path := template
	for k, v := range params {
		path = strings.ReplaceAll(path, "{"+k+"}", url.PathEscape(v))
	}
	target := path
	if query != "" {
		target += "?" + query
	}
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			l.t.Fatal(err)
		}
	}
	newReq := func(base string) *http.Request {
		r, err := http.NewRequest(method, base+target, bytes.NewReader(raw))
		if err != nil {
			l.t.Fatal(err)
		}
		if raw != nil {
			r.Header.Set("Content-Type", contentType)
		}
		if l.token != "" {
			r.Header.Set("Authorization", "Bearer "+l.token)
		}
		return r
	}
	item := l.doc.Paths.Value(template)
	if item == nil || item.GetOperation(method) == nil {
		l.t.Fatalf("%s %s is not in openapi.json", method, template)
	}
	l.seen[method+" "+template] = true
	input := &openapi3filter.RequestValidationInput{
		Request:    newReq("http://rotary.invalid"),
		PathParams: params,
		Route: &routers.Route{Spec: l.doc, Path: template, PathItem: item, Method: method,
			Operation: item.GetOperation(method)},
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	var problems []error
	// A request the test means to be invalid (callBad) is not checked
	// against the document; everything else must be a documented request.
	if !l.badRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
			problems = append(problems, fmt.Errorf("%s %s: request does not match openapi.json: %w", method, target, err))
		}
	}
	res, err := http.DefaultClient.Do(newReq(l.url))
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		l.t.Fatal(err)
	}
	a := answer{status: res.StatusCode, header: res.Header, body: got}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input, Status: a.status, Header: a.header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	// Streams (NDJSON, server-sent events) are checked line by line by
	// the test, a backup by its checksum; here only that their content
	// type is the documented one.
	if ct := a.header.Get("Content-Type"); ct == "application/x-ndjson" || ct == "text/event-stream" || ct == "application/vnd.sqlite3" {
		out.Options.ExcludeResponseBody = true
		if r := input.Route.Operation.Responses.Status(a.status); r == nil || r.Value.Content.Get(ct) == nil {
			problems = append(problems, fmt.Errorf("%s %s answered %d %s, which openapi.json does not document", method, target, a.status, ct))
		}
	}
	out.SetBodyBytes(a.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		problems = append(problems, fmt.Errorf("%s %s answered %d %s\nwhich does not match openapi.json: %w", method, target, a.status, truncate(string(a.body), 600), err))
	}
	return a, errors.Join(problems...)
}

// want fails unless the answer has the status.
func (l *liveAPI) want(a answer, status int) answer {
	l.t.Helper()
	if a.status != status {
		l.t.Fatalf("status %d (%s), want %d", a.status, truncate(string(a.body), 300), status)
	}
	return a
}

// validateJSON checks one document against a component schema.
func (l *liveAPI) validateJSON(schema string, data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	return l.doc.Components.Schemas[schema].Value.VisitJSON(v)
}

// TestOpenAPILiveAnswers drives a real server through most routes, and
// checks every request and answer against openapi.json.
func TestOpenAPILiveAnswers(t *testing.T) {
	t.Parallel()
	l := startLiveAPI(t)
	for _, p := range checkRoutes(l.doc, l.server.mux.Patterns()) {
		t.Errorf("router of New: %s", p)
	}
	const (
		http200, http201, http202 = http.StatusOK, http.StatusCreated, http.StatusAccepted
	)
	db := map[string]string{"name": "app/db"}
	bin := map[string]string{"name": "app/bin"}

	// Public routes: no token.
	l.token = ""
	a := l.want(l.call("GET", "/v1/openapi.json", nil, "", nil), http200)
	if !bytes.Equal(a.body, openapiDoc) || a.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /v1/openapi.json without a token = %q, %d bytes; want the embedded document as application/json", a.header.Get("Content-Type"), len(a.body))
	}
	l.want(l.call("GET", "/healthz", nil, "", nil), http200)
	l.want(l.call("GET", "/readyz", nil, "", nil), http200)
	l.want(l.call("GET", "/metrics", nil, "", nil), http200)
	l.want(l.call("GET", "/v1/secrets", nil, "", nil), http.StatusUnauthorized)
	l.token = l.root

	// Secrets.
	l.want(l.call("POST", "/v1/secrets", nil, "", map[string]any{"name": "app/db", "type": "password",
		"value": map[string]any{"data": "Initial-Value-1234"}, "tags": map[string]string{"team": "a"}, "description": "d"}), http201)
	l.want(l.call("POST", "/v1/secrets", nil, "", map[string]any{"name": "app/bin",
		"value": map[string]any{"data": base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0xfe}), "encoding": "base64"}}), http201)
	l.want(l.call("POST", "/v1/secrets", nil, "", map[string]any{"name": "app/db"}), http.StatusConflict)
	l.want(l.call("GET", "/v1/secrets", nil, "prefix=app/&limit=1", nil), http200)
	l.want(l.call("GET", "/v1/secrets", nil, "deleted=true", nil), http200)
	l.want(l.call("GET", "/v1/secrets/{name}", db, "", nil), http200)
	l.want(l.call("GET", "/v1/secrets/{name}", map[string]string{"name": "nope"}, "", nil), http.StatusNotFound)
	l.want(l.call("GET", "/v1/secrets/{name}/value", db, "stage=current", nil), http200)
	var sv struct{ Encoding string }
	l.want(l.call("GET", "/v1/secrets/{name}/value", bin, "version=1", nil), http200).decode(t, &sv)
	if sv.Encoding != "base64" {
		t.Errorf("a binary value answered encoding %q, want base64", sv.Encoding)
	}
	l.want(l.call("POST", "/v1/secrets/{name}/versions", db, "", map[string]any{"value": map[string]any{"data": "Second-Value-5678"}}), http201)
	l.want(l.callBad("POST", "/v1/secrets/{name}/versions", db, "", []byte(`{"value":{"data":"x"}}`), "text/plain"), http.StatusUnsupportedMediaType)
	l.want(l.callBad("POST", "/v1/secrets/{name}/versions", db, "", []byte(`{"bogus":1}`), "application/json"), http.StatusBadRequest)
	l.want(l.callBad("POST", "/v1/secrets/{name}/versions", db, "", []byte(`{"value":{"data":"`+strings.Repeat("x", MaxBodyBytes)+`"}}`), "application/json"), http.StatusRequestEntityTooLarge)

	// Rotation.
	l.want(l.call("PUT", "/v1/secrets/{name}/rotation", db, "", map[string]any{"rotator": "random", "schedule": "@daily", "window": "1h"}), http200)
	l.want(l.call("GET", "/v1/secrets/{name}/rotation", db, "", nil), http200)
	l.want(l.call("GET", "/v1/secrets/{name}", db, "", nil), http200) // now with its rotation
	l.want(l.call("POST", "/v1/secrets/{name}/rotation/{action}", map[string]string{"name": "app/db", "action": "disable"}, "", nil), http200)
	l.want(l.call("POST", "/v1/secrets/{name}/rotation/{action}", map[string]string{"name": "app/db", "action": "enable"}, "", nil), http200)
	l.want(l.call("POST", "/v1/secrets/{name}/rotate", db, "wait=true", nil), http200)
	l.want(l.call("POST", "/v1/secrets/{name}/rotate", bin, "wait=true", nil), http.StatusBadRequest) // no rotation settings
	l.want(l.call("GET", "/v1/secrets/{name}/rotation/history", db, "limit=10", nil), http200)
	l.want(l.call("GET", "/v1/status", nil, "", nil), http200)
	l.want(l.call("DELETE", "/v1/secrets/{name}", bin, "recovery_window=7d", nil), http200)
	l.want(l.call("GET", "/v1/secrets/{name}/value", bin, "", nil), http.StatusConflict)
	l.want(l.call("POST", "/v1/secrets/{name}/restore", bin, "", nil), http200)

	// Keys and KMS.
	l.want(l.call("POST", "/v1/keys", nil, "", map[string]any{"region": "default", "alias": "k1", "rotation_period": "365d"}), http201)
	l.want(l.call("GET", "/v1/keys", nil, "limit=1", nil), http200)
	k1 := map[string]string{"ref": "alias/k1"}
	l.want(l.call("GET", "/v1/keys/{ref}", k1, "", nil), http200)
	// A key whose deletion is cancelled is left disabled (as in AWS KMS).
	for _, action := range []string{"rotate", "disable", "enable", "cancel-deletion", "enable"} {
		if action == "cancel-deletion" {
			l.want(l.call("POST", "/v1/keys/{ref}/{action}", map[string]string{"ref": "alias/k1", "action": "schedule-deletion"}, "", map[string]any{"pending_window": "7d"}), http200)
		}
		l.want(l.call("POST", "/v1/keys/{ref}/{action}", map[string]string{"ref": "alias/k1", "action": action}, "", nil), http200)
	}
	var dk struct{ Ciphertext string }
	l.want(l.call("POST", "/v1/kms/generate-data-key", nil, "", map[string]any{"key": "alias/k1", "context": map[string]string{"app": "x"}}), http200)
	l.want(l.call("POST", "/v1/kms/encrypt", nil, "", map[string]any{"key": "alias/k1", "plaintext": base64.StdEncoding.EncodeToString([]byte("hello"))}), http200).decode(t, &dk)
	l.want(l.call("POST", "/v1/kms/decrypt", nil, "", map[string]any{"ciphertext": dk.Ciphertext}), http200)
	l.want(l.call("POST", "/v1/kms/decrypt", nil, "", map[string]any{"ciphertext": dk.Ciphertext, "context": map[string]string{"app": "other"}}), http.StatusUnprocessableEntity)

	// Policies and tokens.
	pol := map[string]string{"name": "readers"}
	l.want(l.call("PUT", "/v1/policies/{name}", pol, "", map[string]any{"rules": []any{map[string]any{"secrets": "app/*", "actions": []string{"list", "describe"}}}}), http200)
	l.want(l.call("GET", "/v1/policies", nil, "", nil), http200)
	l.want(l.call("GET", "/v1/policies/{name}", pol, "", nil), http200)
	var tok struct{ ID, Token string }
	l.want(l.call("POST", "/v1/tokens", nil, "", map[string]any{"policies": []string{"readers"}, "ttl": "1h", "name": "reader"}), http201).decode(t, &tok)
	l.want(l.call("GET", "/v1/tokens", nil, "", nil), http200)
	l.token = tok.Token
	l.want(l.call("GET", "/v1/secrets", nil, "", nil), http200)
	l.want(l.call("GET", "/v1/secrets/{name}/value", db, "", nil), http.StatusForbidden)
	l.token = l.root
	l.want(l.call("DELETE", "/v1/tokens/{id}", map[string]string{"id": tok.ID}, "", nil), http200)
	l.want(l.call("DELETE", "/v1/policies/{name}", pol, "", nil), http200)

	// Audit.
	l.want(l.call("GET", "/v1/audit", nil, "limit=5", nil), http200)
	l.want(l.call("POST", "/v1/audit/verify", nil, "", nil), http200)
	var cp map[string]any
	l.want(l.call("GET", "/v1/audit/checkpoint", nil, "", nil), http200).decode(t, &cp)
	l.want(l.call("POST", "/v1/audit/verify", nil, "", map[string]any{"checkpoint": cp}), http200)

	// Hooks (stored, never delivered here) and the plugin catalog (no
	// plugin host on this server: read from the store).
	hook := map[string]string{"name": "notify"}
	l.want(l.call("POST", "/v1/hooks", nil, "", map[string]any{"name": "notify", "on": "finished", "secrets": "app/*",
		"kind": "webhook", "target": "https://hooks.example.invalid/rotary", "timeout": "5s"}), http201)
	l.want(l.callBad("POST", "/v1/hooks", nil, "", map[string]any{"name": "notify", "on": "sometimes", "kind": "exec", "target": "true"}, "application/json"), http.StatusBadRequest)
	l.want(l.call("GET", "/v1/hooks", nil, "", nil), http200)
	l.want(l.call("DELETE", "/v1/hooks/{name}", hook, "", nil), http200)
	l.want(l.call("GET", "/v1/plugins", nil, "", nil), http200)
	l.want(l.call("GET", "/v1/plugins/{name}", map[string]string{"name": "nope"}, "", nil), http.StatusNotFound)
	l.want(l.call("DELETE", "/v1/plugins/{name}", map[string]string{"name": "nope"}, "", nil), http.StatusNotFound)
	l.want(l.call("PUT", "/v1/plugins/{name}", map[string]string{"name": "echo"}, "", map[string]any{"path": "/usr/lib/rotary/plugins/echo"}), http.StatusNotImplemented)

	// Streams: every line of the rewrap stream is a RewrapProgress.
	a = l.want(l.call("POST", "/v1/keys/rewrap", nil, "", nil), http200)
	lines := strings.Split(strings.TrimSpace(string(a.body)), "\n")
	for _, line := range lines {
		if err := l.validateJSON("RewrapProgress", []byte(line)); err != nil {
			t.Errorf("rewrap line %s does not match the RewrapProgress schema: %v", line, err)
		}
	}
	if !strings.Contains(lines[len(lines)-1], `"done":true`) {
		t.Errorf("last rewrap line %s, want done", lines[len(lines)-1])
	}
	l.checkEvents()

	// A backup: the SQLite file, whose checksum the header gives.
	a = l.want(l.call("GET", "/v1/backup", nil, "", nil), http200)
	if sum := sha256.Sum256(a.body); !bytes.HasPrefix(a.body, []byte("SQLite format 3\x00")) || a.header.Get("X-Rotary-Backup-Sha256") != hex.EncodeToString(sum[:]) {
		t.Errorf("GET /v1/backup: %d bytes, header sha256 %q; want an SQLite file with its checksum", len(a.body), a.header.Get("X-Rotary-Backup-Sha256"))
	}

	// A rotation started without waiting (the engine's Stop waits for it).
	l.want(l.call("POST", "/v1/secrets/{name}/rotate", db, "", nil), http202)

	var missed []string
	for _, path := range l.doc.Paths.Keys() {
		for method := range l.doc.Paths.Value(path).Operations() {
			if !l.seen[method+" "+path] {
				missed = append(missed, method+" "+path)
			}
		}
	}
	if len(missed) > 0 {
		slices.Sort(missed)
		t.Errorf("operations of openapi.json this test does not call: %v", missed)
	}
}

// checkEvents reads GET /v1/events from the start and checks the data of
// its first change event against the Event schema.
func (l *liveAPI) checkEvents() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", l.url+"/v1/events?after=0&secrets=app/*", nil)
	req.Header.Set("Authorization", "Bearer "+l.root)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer res.Body.Close()
	item := l.doc.Paths.Value("/v1/events")
	l.seen["GET /v1/events"] = true
	in := &openapi3filter.RequestValidationInput{Request: req, Route: &routers.Route{Spec: l.doc, Path: "/v1/events", PathItem: item, Method: "GET", Operation: item.Get},
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		l.t.Errorf("GET /v1/events: request does not match openapi.json: %v", err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") ||
		item.Get.Responses.Status(http.StatusOK).Value.Content.Get("text/event-stream") == nil {
		l.t.Fatalf("GET /v1/events = %d %q, want 200 text/event-stream as documented", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok && event != "open" && event != "reset" {
			if err := l.validateJSON("Event", []byte(v)); err != nil {
				l.t.Errorf("event %s data %s does not match the Event schema: %v", event, v, err)
			}
			return
		}
	}
	l.t.Fatalf("the event stream ended without an event: %v", sc.Err())
}

// TestOpenAPILiveCatchesDrift is the negative control of the live check:
// against a document whose SecretValue lost its "encoding" property, the
// real answer is reported.
func TestOpenAPILiveCatchesDrift(t *testing.T) {
	t.Parallel()
	l := startLiveAPI(t)
	l.want(l.call("POST", "/v1/secrets", nil, "", map[string]any{"name": "bin",
		"value": map[string]any{"data": base64.StdEncoding.EncodeToString([]byte{0xff}), "encoding": "base64"}}), http.StatusCreated)
	l.doc = editDoc(t, func(d map[string]any) { delete(schemaProps(d, "SecretValue"), "encoding") })
	_, err := l.do("GET", "/v1/secrets/{name}/value", map[string]string{"name": "bin"}, "", nil, "application/json")
	if err == nil || !strings.Contains(err.Error(), "encoding") {
		t.Errorf("an answer with a field the document lacks: validation error %v, want one naming \"encoding\"", err)
	}
}
