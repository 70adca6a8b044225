// Package api is rotary's HTTP JSON API: routing, authentication,
// authorization, request limits, metrics and the per-request audit record.
// Every CLI command is a call to one of its routes under /v1/.
//
// Request life: a request id is assigned; the bearer token is hashed and
// looked up (a short cache keeps this off the store on hot paths); the
// handler names the action and resource and asks the authorizer; the
// handler runs; the audit record of the request is group-committed to the
// hash chain before the response is written, so no value leaves the daemon
// without its read being on record. Writes that go through
// secrets.Service commit their own audit record in the same transaction as
// the change, and the request record is then not written twice.
//
// Anyone who can reach the port can send requests, so those that carry no
// valid token must not grow the permanent log without bound: a failed
// authentication gets its own record only a few times per client address
// per minute, the rest are summed into one summary record per address
// (see authfail.go), and a request for an unknown route gets a 404 and no
// record. Every one of them is counted in rotary_http_rejected_requests_total.
//
// The chain is keyed (package audit): the daemon derives the key from the
// root key, and api.MigrateAuditLog moves a log written before the key
// existed onto it at start. GET /v1/audit/checkpoint signs the head; POST
// /v1/audit/verify checks the chain, and a checkpoint when given one.
package api

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/hooks"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// MaxBodyBytes bounds every request body. A 64 KiB value sent as base64
// inside JSON stays well below it.
const MaxBodyBytes = 256 << 10

// Config wires the API to the rest of the daemon.
type Config struct {
	Store   store.Store
	Secrets *secrets.Service
	KMS     *kms.Manager
	Engine  *rotation.Engine
	Logger  *slog.Logger
	Now     func() time.Time
	// TokenCacheTTL bounds how long a token, its policies and a revocation
	// on another daemon may take to be seen here (default 2s).
	TokenCacheTTL time.Duration
	// Ready reports whether the daemon is ready (for /readyz).
	Ready func(ctx context.Context) error
	// AuditKey seals and verifies the audit chain; AuditSigner signs
	// checkpoints of it. Both are derived from the root key. Required.
	AuditKey    audit.Key
	AuditSigner audit.Signer
	// AuditWriters is how many group-commit writers append request
	// records, each on its own audit chain (default: 2 on PostgreSQL, 1
	// on SQLite, which has one writer). AuditAnchorEvery and
	// AuditAnchorInterval: an anchor binding every chain's head after that
	// many records committed here or that long, whichever comes first
	// (DefaultAuditAnchorEvery, DefaultAuditAnchorInterval).
	AuditWriters        int
	AuditAnchorEvery    int64
	AuditAnchorInterval time.Duration
	// EventsPoll is how often GET /v1/events looks for events other
	// daemons wrote (DefaultEventsPoll); EventsWritten wakes it for this
	// daemon's own. EventsHeartbeat is the keepalive interval of the
	// stream, at which the token is checked again (DefaultEventsHeartbeat).
	EventsPoll      time.Duration
	EventsHeartbeat time.Duration
	// Hooks stores and lists function hooks; nil answers their routes
	// with 503.
	Hooks *hooks.Manager
	// Plugins runs plugins; PluginDir, when set, is the one folder
	// registered plugins may live in.
	Plugins   PluginHost
	PluginDir string
}

// Server is the HTTP API.
type Server struct {
	cfg      Config
	st       store.Store
	svc      *secrets.Service
	kms      *kms.Manager
	engine   *rotation.Engine
	log      *slog.Logger
	now      func() time.Time
	authn    *authenticator
	audit    *auditLog
	auditKey audit.Key
	signer   audit.Signer
	metrics  *metrics
	mux      *routeMux
	hub      *eventHub
	stopHub  context.CancelFunc
}

// New builds the API server. Call Start before serving and Stop after.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Secrets == nil || cfg.KMS == nil || cfg.Engine == nil {
		return nil, errors.New("api: Store, Secrets, KMS and Engine are required")
	}
	if !cfg.AuditKey.Valid() || !cfg.AuditSigner.Valid() {
		return nil, errors.New("api: AuditKey and AuditSigner are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.EventsPoll = cmp.Or(cfg.EventsPoll, DefaultEventsPoll)
	cfg.EventsHeartbeat = cmp.Or(cfg.EventsHeartbeat, DefaultEventsHeartbeat)
	if cfg.TokenCacheTTL == 0 {
		cfg.TokenCacheTTL = 2 * time.Second
	}
	s := &Server{
		cfg: cfg, st: cfg.Store, svc: cfg.Secrets, kms: cfg.KMS, engine: cfg.Engine, log: cfg.Logger, now: cfg.Now,
		mux: newRouteMux(), auditKey: cfg.AuditKey, signer: cfg.AuditSigner,
	}
	s.authn = newAuthenticator(cfg.Store, cfg.TokenCacheTTL, cfg.Now)
	if cfg.AuditWriters <= 0 {
		cfg.AuditWriters = 1
		if cfg.Store.Dialect() == "postgres" {
			cfg.AuditWriters = 2
		}
	}
	s.audit = newAuditLog(cfg.Store, cfg.AuditKey, cfg.Now, cfg.Logger, cfg.AuditWriters, cfg.AuditAnchorEvery, cfg.AuditAnchorInterval)
	s.metrics = newMetrics(cfg.Store)
	s.metrics.reg.MustRegister(s.audit.writeFailures)
	s.hub = newEventHub(cfg.Store, cfg.EventsPoll, cfg.Now, cfg.Logger)
	s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rotary_event_stream_subscribers", Help: "Open GET /v1/events streams on this daemon.",
	}, func() float64 { return float64(s.hub.count()) }))
	s.registerRoutes()
	return s, nil
}

// Start starts the background parts (the audit group committer).
func (s *Server) Start(ctx context.Context) error {
	if err := s.audit.Start(ctx); err != nil {
		return err
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopHub = cancel
	go s.hub.run(hctx)
	return nil
}

// CloseStreams ends every GET /v1/events stream (their clients resume
// elsewhere or after the restart); http.Server.Shutdown would otherwise
// wait for them. Idempotent.
func (s *Server) CloseStreams() {
	if s.stopHub != nil {
		s.stopHub()
	}
}

// Stop flushes the audit log and stops. Idempotent.
func (s *Server) Stop() { s.CloseStreams(); s.audit.Stop() }

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.mux }

// reqInfo travels with a request through the middleware.
type reqInfo struct {
	id      string
	tokenID string
	action  string
	target  string
	result  string
	detail  string
	audited bool // the handler's service call committed its own audit record
	route   string
	// authFailed: authentication failed (401); the audit record is
	// rate-limited per client address.
	authFailed bool
}

type reqInfoKey struct{}

func info(r *http.Request) *reqInfo { return r.Context().Value(reqInfoKey{}).(*reqInfo) }

// handlerFunc is a route handler. It returns an error for the middleware
// to render; a nil error means it wrote its response.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *principal) error

// handle registers an authenticated, audited route.
func (s *Server) handle(pattern string, h handlerFunc) {
	s.mux.Handle(pattern, s.wrap(pattern, true, h))
}

// handlePublic registers an unauthenticated, unaudited route.
func (s *Server) handlePublic(pattern string, h http.HandlerFunc) {
	s.mux.Handle(pattern, s.metrics.instrument(pattern, h))
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) wrap(route string, authenticate bool, h handlerFunc) http.Handler {
	return s.metrics.instrument(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := &reqInfo{id: newRequestID(), route: route, result: "ok"}
		w.Header().Set("X-Request-Id", ri.id)
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		bw := &bufferedWriter{header: w.Header(), real: w}
		var p *principal
		err := func() (err error) {
			defer func() {
				if v := recover(); v != nil {
					// Never log the panic value: it may hold request data.
					s.log.Error("panic in handler", "route", route, "request_id", ri.id, "stack", string(debug.Stack()))
					err = errInternal
				}
			}()
			if authenticate {
				var aerr error
				p, aerr = s.authn.authenticate(r.Context(), r.Header.Get("Authorization"))
				if aerr != nil {
					ri.result = "unauthenticated"
					if ri.action == "" {
						ri.action = route // no handler ran to name the action
					}
					if reason, ok := authFailureReason(r.Header.Get("Authorization"), aerr); ok {
						ri.authFailed = true
						s.metrics.rejected.WithLabelValues("auth_" + reason).Inc()
					}
					return aerr
				}
				ri.tokenID = p.tokenID
			}
			ctx := secrets.WithActor(r.Context(), secrets.Actor{TokenID: ri.tokenID, RequestID: ri.id})
			return h(bw, r.WithContext(ctx), p)
		}()
		status := http.StatusOK
		if err == nil && r.Method != http.MethodGet {
			s.hub.wakeUp() // a write may have added an event
		}
		if err != nil {
			status = s.renderError(bw, r, err)
			if ri.result == "ok" {
				ri.result = resultOf(status)
			}
		} else if bw.status != 0 {
			status = bw.status
		}
		if ri.action == "" {
			ri.action = route
		}
		record := !(ri.audited && err == nil)
		if ri.authFailed {
			addr := clientAddr(r)
			ri.detail = truncate(ri.detail, 150) + "; from " + addr
			if !s.audit.failures.allow(addr) {
				record = false
				s.metrics.suppressed.Inc()
			}
		}
		if record {
			aerr := s.audit.Append(r.Context(), store.AuditRecord{
				Time: s.now().UTC(), TokenID: ri.tokenID, Action: ri.action, Target: ri.target,
				Result: ri.result, RequestID: ri.id, Detail: ri.detail,
			})
			if aerr != nil {
				s.log.Error("audit append failed; refusing to answer", "request_id", ri.id, "err", aerr)
				bw.reset()
				status = s.renderError(bw, r, errInternal)
			}
		}
		bw.flushTo(w, status)
		lvl := slog.LevelInfo
		if status >= 500 {
			lvl = slog.LevelError
		} else if ri.authFailed && !record {
			lvl = slog.LevelDebug // a flood of bad tokens must not flood the log either
		}
		s.log.Log(r.Context(), lvl, "request", "request_id", ri.id, "method", r.Method, "route", route,
			"status", status, "token_id", ri.tokenID, "action", ri.action, "target", ri.target)
	}))
}

// unmatched answers a request no route matches: 404 JSON, counted in
// metrics, and no audit record, since anyone can send any number of them.
func (s *Server) unmatched() http.Handler {
	return s.metrics.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.metrics.rejected.WithLabelValues("unknown_route").Inc()
		w.Header().Set("X-Request-Id", newRequestID())
		writeJSON(w, http.StatusNotFound, client.ErrorBody{Error: truncate(fmt.Sprintf("no such endpoint: %s %s", r.Method, strconv.Quote(r.URL.Path)), 300)})
	}))
}

func resultOf(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "denied"
	case http.StatusNotFound:
		return "not_found"
	default:
		if status >= 500 {
			return "error"
		}
		return "invalid"
	}
}

// bufferedWriter holds the response until the audit record is committed.
type bufferedWriter struct {
	header http.Header
	status int
	body   []byte
	real   http.ResponseWriter
	stream bool // the handler wrote straight to real
}

// beginStream hands a streaming handler the real writer. The handler must
// have committed its audit record first (and set reqInfo.audited).
func (b *bufferedWriter) beginStream(status int) http.ResponseWriter {
	b.stream = true
	b.real.WriteHeader(status)
	return b.real
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.body = append(b.body, p...)
	return len(p), nil
}
func (b *bufferedWriter) reset() { b.status, b.body = 0, nil }
func (b *bufferedWriter) flushTo(w http.ResponseWriter, status int) {
	if b.stream {
		return // already written
	}
	w.WriteHeader(status)
	_, _ = w.Write(b.body)
}

// Errors the handlers return; renderError maps them to statuses.
var (
	errInternal     = errors.New("internal error")
	errUnauthorized = errors.New("missing or invalid token")
)

type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func forbidden(action, resource string) error {
	return &httpError{http.StatusForbidden, fmt.Sprintf("permission denied: %s on %s", action, resource)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) int {
	status, msg := http.StatusInternalServerError, "internal error"
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.As(err, &mbe):
		status, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, errUnauthorized), errors.Is(err, errTokenExpired), errors.Is(err, errTokenRevoked):
		status, msg = http.StatusUnauthorized, err.Error()
	case errors.Is(err, secrets.ErrInvalid), errors.Is(err, kms.ErrInvalidArgument):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, secrets.ErrNotFound), errors.Is(err, kms.ErrNotFound), errors.Is(err, store.ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, secrets.ErrExists), errors.Is(err, store.ErrConflict), errors.Is(err, kms.ErrConflict):
		status, msg = http.StatusConflict, err.Error()
	case errors.Is(err, secrets.ErrDeleted), errors.Is(err, kms.ErrKeyDisabled),
		errors.Is(err, kms.ErrKeyPendingDeletion), errors.Is(err, kms.ErrInvalidState):
		status, msg = http.StatusConflict, err.Error()
	case errors.Is(err, kms.ErrDecrypt):
		status, msg = http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, context.Canceled):
		status, msg = 499, "request cancelled"
	default:
		s.log.Error("request failed", "request_id", info(r).id, "err", err)
	}
	if status == http.StatusInternalServerError {
		msg = "internal error (request " + info(r).id + ")"
	}
	info(r).detail = truncate(msg, 200)
	writeJSON(w, status, client.ErrorBody{Error: msg})
	return status
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a strict JSON body into v: content type application/json,
// no unknown fields, nothing after the document.
func decode(r *http.Request, v any) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" {
		return &httpError{http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q is not supported: send application/json", ct)}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("invalid JSON body: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("invalid JSON body: unexpected data after the JSON document")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: expected %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated document"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "malformed document"
	}
}
