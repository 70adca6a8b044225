package rabbit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/plugins/examples/rabbitmq/rabbit"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

type bundle struct {
	r         rabbit.Rotator
	cfg       json.RawMessage
	admin     rotators.Value
	current   rotators.Value
	previous  rotators.Value
	sec       rotators.Secret
	user, alt string
	effects   []rotators.Effect // what the last Finish reported
}

func setup(t *testing.T, strategy string) *bundle {
	t.Helper()
	user := testenv.Unique("rt-app-")
	b := &bundle{r: rabbit.New(), cfg: config(strategy, "rabbit/admin"), admin: newAdmin(t), user: user, alt: user + "_b",
		sec: rotators.Secret{Name: "rabbit/" + user, Type: rabbit.SecretType, Region: "default", Version: 2}}
	b.current = createUser(t, user, "monitoring", appPerms, b.alt)
	if err := b.r.ValidateConfig(context.Background(), rabbit.SecretType, b.cfg); err != nil {
		t.Fatalf("ValidateConfig(%s) = %v", b.cfg, err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// rotate runs Create, Set, Test(pending) and Finish and returns the new
// value.
func (b *bundle) rotate(t *testing.T, emergency, keep bool) rotators.Value {
	t.Helper()
	resp, err := b.r.Create(ctx(t), rotators.CreateRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Previous: b.previous, Emergency: emergency})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	pending := resp.Value
	if err := b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Pending: pending, Admin: b.admin, Emergency: emergency}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: pending}); err != nil {
		t.Fatalf("Test(pending): %v", err)
	}
	b.previous, b.current = b.current, pending
	var effects rotators.Effects
	if err := b.r.Finish(ctx(t), rotators.FinishRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Previous: b.previous, Admin: b.admin,
		Emergency: emergency, KeepSessions: keep, Effects: &effects}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	b.effects = effects.List()
	b.sec.Version++
	return b.current
}

func works(t *testing.T, what string, v rotators.Value) {
	t.Helper()
	got, err := login(ctx(t), v)
	if err != nil {
		t.Fatalf("%s credential refused: %v", what, sensitive.Sanitize(err, sensitive.Bytes(fields(v)["password"])))
	}
	if want := fields(v)["username"]; got != want {
		t.Fatalf("%s credential logs in as %q, want %q", what, got, want)
	}
}

func refused(t *testing.T, what string, v rotators.Value) {
	t.Helper()
	if _, err := dial(v); err == nil {
		t.Fatalf("%s credential still opens an AMQP connection; want it refused", what)
	} else if !errors.Is(err, amqp.ErrCredentials) && !strings.Contains(err.Error(), "403") {
		t.Fatalf("%s credential: dial = %v; want the broker to refuse the credential (403)", what, err)
	}
}

// recorder is a reverse proxy in front of the management API that keeps
// every request body, to show what crosses the wire.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	url    string
}

func newRecorder(t *testing.T) *recorder {
	target, _ := url.Parse(mgmtURL())
	rp := httputil.NewSingleHostReverseProxy(target)
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, r.Method+" "+r.URL.EscapedPath()+" "+string(b))
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

func withFields(t *testing.T, v rotators.Value, f map[string]string) rotators.Value {
	t.Helper()
	m := fields(v)
	for k, x := range f {
		m[k] = x
	}
	b, _ := json.Marshal(m)
	return sensitive.Bytes(b)
}

// TestAdminRotation: Create→Set→Test→Finish with the admin strategy. The
// new password opens an AMQP connection as the user; the old one is
// refused (the negative control); the user keeps its tags; only a salted
// hash of the password crosses the management API.
func TestAdminRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, rotators.StrategyAdmin)
	rec := newRecorder(t)
	via := map[string]string{"management_url": rec.url}
	b.current, b.admin = withFields(t, b.current, via), withFields(t, b.admin, via)
	works(t, "initial", b.current)
	old := b.current
	newV := b.rotate(t, false, false)
	if fields(newV)["username"] != b.user || fields(newV)["management_url"] != rec.url {
		t.Fatalf("the new value changed more than the password: user %q, management_url %q", fields(newV)["username"], fields(newV)["management_url"])
	}
	works(t, "new", newV)
	refused(t, "old", old)
	refused(t, "wrong", withFields(t, newV, map[string]string{"password": "wrong-" + b.user}))

	var u struct {
		Tags      []string `json:"tags"`
		Algorithm string   `json:"hashing_algorithm"`
	}
	guest(t, http.MethodGet, "/users/"+esc(b.user), nil, &u)
	if !slices.Equal(u.Tags, []string{"monitoring"}) || u.Algorithm != "rabbit_password_hashing_sha256" {
		t.Errorf("user after Set: tags %q, algorithm %q; want [monitoring], rabbit_password_hashing_sha256", u.Tags, u.Algorithm)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	sawHash := false
	for _, body := range rec.bodies {
		for _, v := range []rotators.Value{newV, old} {
			if strings.Contains(body, fields(v)["password"]) {
				t.Errorf("a management API request holds a plaintext password: %s", sensitive.SanitizeString(body, sensitive.Bytes(fields(v)["password"])))
			}
		}
		sawHash = sawHash || strings.HasPrefix(body, "PUT /api/users/") && strings.Contains(body, `"password_hash"`)
	}
	if !sawHash {
		t.Errorf("no PUT /api/users/… with password_hash went through the proxy; requests: %q", rec.bodies)
	}
}

// TestAlternatingRotation: the first rotation creates the other user with
// the first user's tags and permissions; the previous user keeps working
// after a normal finish; the second rotation comes back to the first
// user, and the old password of that user is refused.
func TestAlternatingRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, rotators.StrategyAlternating)
	first := b.current
	v1 := b.rotate(t, false, false)
	if got := fields(v1)["username"]; got != b.alt {
		t.Fatalf("alternating: the pending user is %q, want %q", got, b.alt)
	}
	works(t, "new (other user)", v1)
	works(t, "previous (first user)", first)
	var u struct {
		Tags []string `json:"tags"`
	}
	guest(t, http.MethodGet, "/users/"+esc(b.alt), nil, &u)
	if !slices.Equal(u.Tags, []string{"monitoring"}) {
		t.Errorf("the created user's tags are %q, want the first user's [monitoring]", u.Tags)
	}
	var perms []map[string]string
	guest(t, http.MethodGet, "/users/"+esc(b.alt)+"/permissions", nil, &perms)
	if len(perms) != 1 || perms[0]["vhost"] != "/" || perms[0]["configure"] != appPerms["configure"] || perms[0]["write"] != appPerms["write"] {
		t.Errorf("the created user's permissions are %v, want the first user's %v on /", perms, appPerms)
	}
	v2 := b.rotate(t, false, false)
	if got := fields(v2)["username"]; got != b.user {
		t.Fatalf("second alternating rotation: user %q, want %q", got, b.user)
	}
	works(t, "second new", v2)
	works(t, "previous (other user)", v1)
	refused(t, "first user's old password", first)
}

// waitClosed waits until the connection is closed by the broker.
func waitClosed(t *testing.T, what string, c *amqp.Connection) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !c.IsClosed() {
		if time.Now().After(deadline) {
			t.Fatalf("emergency: the open connection of %s is still open after 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEmergencyClosesConnections: an emergency rotation ends the open
// AMQP connections of the old credential (both users of an alternating
// pair); with KeepSessions they stay open.
func TestEmergencyClosesConnections(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategyAlternating} {
		t.Run(strategy, func(t *testing.T) {
			b := setup(t, strategy)
			var conns []*amqp.Connection
			open := func(v rotators.Value) *amqp.Connection {
				c, err := dial(v)
				if err != nil {
					t.Fatalf("open a connection: %v", err)
				}
				t.Cleanup(func() { c.Close() })
				conns = append(conns, c)
				return c
			}
			if strategy == rotators.StrategyAlternating {
				b.rotate(t, false, false)
				if len(b.effects) != 0 {
					t.Fatalf("a regular rotation reported %+v; want nothing", b.effects)
				}
				open(b.previous)
			}
			open(b.current)
			old, older := b.current, b.previous
			b.rotate(t, true, false)
			// It reports the credential it made useless: the old one's
			// user, whose password Set replaced (admin) or which it
			// scrambled (alternating: the other user took the new one).
			revoked := username(t, old)
			if want := []rotators.Effect{{Kind: rotators.EffectCredentialRevoked, Target: strconv.Quote(revoked)}}; len(b.effects) != 1 ||
				b.effects[0].Kind != want[0].Kind || b.effects[0].Target != "user "+want[0].Target {
				t.Errorf("the emergency reported %+v; want the credential of user %s made useless", b.effects, want[0].Target)
			}
			for i, c := range conns {
				waitClosed(t, []string{"the old credential", "the previous user"}[min(i, 1)], c)
			}
			works(t, "new", b.current)
			refused(t, "old", old)
			if older != nil {
				refused(t, "the one before", older)
			}
			// Negative control: KeepSessions leaves a connection open.
			keep := open(b.current)
			b.rotate(t, true, true)
			if keep.IsClosed() {
				t.Fatalf("keep-sessions: the connection was closed")
			}
			if ch, err := keep.Channel(); err != nil {
				t.Fatalf("keep-sessions: the connection does not work: %v", err)
			} else {
				ch.Close()
			}
		})
	}
}

// TestSingleUserRefused: single-user (said, or the default) is refused
// when the settings are saved, with ErrUnsupported and the reason.
func TestSingleUserRefused(t *testing.T) {
	for _, raw := range []string{`{"strategy":"single-user"}`, `{}`, ``} {
		err := rabbit.New().ValidateConfig(context.Background(), rabbit.SecretType, json.RawMessage(raw))
		if !errors.Is(err, rotators.ErrUnsupported) || !strings.Contains(err.Error(), "administrator") || !strings.Contains(err.Error(), `"strategy"`) {
			t.Errorf("ValidateConfig(%q) = %v; want rotators.ErrUnsupported naming the strategy field and the administrator reason", raw, err)
		}
	}
	err := rabbit.New().ValidateConfig(context.Background(), "db-credentials", config("admin", "a"))
	if !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("ValidateConfig(db-credentials) = %v; want rotators.ErrUnsupported", err)
	}
	if err := rabbit.New().ValidateConfig(context.Background(), rabbit.SecretType, config("admin", "a")); err != nil {
		t.Errorf("ValidateConfig(admin) = %v; want nil (negative control)", err)
	}
}

// TestTargetIdentity: a value naming another user (or server) fails the
// check against the identity a rotation was bound to; the pair of an
// alternating rotation passes.
func TestTargetIdentity(t *testing.T) {
	r := rabbit.New()
	pw := sensitive.Bytes("p4ssword-not-checked")
	mk := func(user string, extra map[string]string) rotators.Value { return value(user, pw, extra) }
	target := func(cfg json.RawMessage, v, prev rotators.Value) rotators.Target {
		t.Helper()
		tg, err := r.Target(context.Background(), rotators.TargetRequest{SecretType: rabbit.SecretType, Config: cfg, Value: v, Previous: prev})
		if err != nil {
			t.Fatalf("Target: %v", err)
		}
		return tg
	}
	admin := config("admin", "a")
	bound := target(admin, mk("app", nil), nil)
	for _, f := range []string{"host", "port", "management_url", "username"} {
		if _, ok := bound.Field(f); !ok {
			t.Errorf("the identity has no %q field: %v", f, bound)
		}
	}
	if err := bound.Check(target(admin, mk("app", nil), nil), "the pending version", false); err != nil {
		t.Errorf("the same account: %v (negative control)", err)
	}
	for name, v := range map[string]rotators.Value{
		"username":       mk("other", nil),
		"port":           mk("app", map[string]string{"port": "5673"}),
		"host":           mk("app", map[string]string{"host": "127.0.0.2"}),
		"management_url": mk("app", map[string]string{"management_url": "http://127.0.0.1:15673"}),
	} {
		err := bound.Check(target(admin, v, nil), "the pending version", false)
		if !errors.Is(err, rotators.ErrTargetMismatch) || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("a value with another %s: Check = %v; want ErrTargetMismatch naming the field", name, err)
		}
	}
	// The admin value must name the same server; its user differs.
	if err := bound.Check(target(admin, mk("root", nil), nil), "the admin value", true); err != nil {
		t.Errorf("admin on the same server: %v", err)
	}
	if err := bound.Check(target(admin, mk("root", map[string]string{"management_url": "http://localhost:15672"}), nil), "the admin value", true); !errors.Is(err, rotators.ErrTargetMismatch) {
		t.Errorf("admin value on another management_url: %v; want ErrTargetMismatch", err)
	}
	alt := config("alternating", "a")
	pair := target(alt, mk("app", nil), nil)
	for _, u := range []string{"app", "app_b"} {
		if err := pair.Check(target(alt, mk(u, nil), nil), "a later version", false); err != nil {
			t.Errorf("alternating: user %q of the pair: %v", u, err)
		}
	}
	if err := pair.Check(target(alt, mk("app_c", nil), nil), "a later version", false); !errors.Is(err, rotators.ErrTargetMismatch) {
		t.Errorf("alternating: a user outside the pair: %v; want ErrTargetMismatch", err)
	}
	// Bound on the second user with the first as previous: the same pair.
	if !pair.Same(target(alt, mk("app_b", nil), mk("app", nil))) {
		t.Errorf("the pair bound from its second user is not the same target")
	}
}

// TestSetRefusesAnotherUser: Set with a pending value for another user
// changes nothing, with either strategy (a live canary keeps its password).
func TestSetRefusesAnotherUser(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategyAlternating} {
		t.Run(strategy, func(t *testing.T) {
			b := setup(t, strategy)
			canaryName := testenv.Unique("rt-canary-")
			canary := createUser(t, canaryName, "", appPerms)
			hostile := value(canaryName, newPassword(t), nil)
			err := b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Pending: hostile, Admin: b.admin})
			if !errors.Is(err, rotators.ErrWrongIdentity) {
				t.Fatalf("Set with a pending value for %q = %v; want ErrWrongIdentity", canaryName, err)
			}
			works(t, "canary", canary)
			refused(t, "hostile pending", hostile)
		})
	}
}

// nonLoopback returns a non-loopback address of this machine with a
// listener, or TEST-NET when there is none.
func nonLoopback(t *testing.T) (host string, accepted func() bool) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			ln, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
			if err != nil {
				continue
			}
			t.Cleanup(func() { ln.Close() })
			return ln.Addr().String(), func() bool {
				_ = ln.(*net.TCPListener).SetDeadline(time.Now())
				c, err := ln.Accept()
				if err == nil {
					c.Close()
				}
				return err == nil
			}
		}
	}
	return "192.0.2.1:9", func() bool { return false }
}

// TestNoPlaintext: a management_url over http to a host that is not
// loopback (or an AMQP host that is not loopback with sslmode disable) is refused
// by every step with rotators.ErrPlaintext before anything is sent;
// allow_plaintext "true" lifts it (negative control).
func TestNoPlaintext(t *testing.T) {
	t.Parallel()
	b := setup(t, rotators.StrategyAdmin)
	addr, accepted := nonLoopback(t)
	host, _, _ := net.SplitHostPort(addr)
	for name, remote := range map[string]map[string]string{
		"management_url": {"management_url": "http://" + addr},
		// Without sslmode a remote host gets verify-full (TLS); disable says plaintext.
		"amqp host": {"host": host, "sslmode": "disable"},
	} {
		t.Run(name, func(t *testing.T) {
			cur, adm := withFields(t, b.current, remote), withFields(t, b.admin, remote)
			pend := withFields(t, cur, map[string]string{"password": "pending-" + b.user})
			for step, call := range map[string]func() error{
				"Test": func() error { return b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: cur}) },
				"Set": func() error {
					return b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: cur, Pending: pend, Admin: adm})
				},
				"Finish": func() error {
					return b.r.Finish(ctx(t), rotators.FinishRequest{Secret: b.sec, Config: b.cfg, Current: pend, Previous: cur, Admin: adm, Emergency: true})
				},
				"Rollback": func() error {
					return b.r.Rollback(ctx(t), rotators.RollbackRequest{Secret: b.sec, Config: b.cfg, Current: cur, Pending: pend, Admin: adm})
				},
			} {
				err := call()
				if !errors.Is(err, rotators.ErrPlaintext) || !strings.Contains(err.Error(), host) {
					t.Errorf("%s = %v; want rotators.ErrPlaintext naming %s", step, err, host)
				}
				for _, v := range []rotators.Value{cur, pend, adm} {
					if err != nil && strings.Contains(err.Error(), fields(v)["password"]) {
						t.Errorf("%s error holds a password", step)
					}
				}
			}
			if accepted() {
				t.Errorf("a step connected to %s; want no connection at all", addr)
			}
		})
	}
	// Negative control: the same values with allow_plaintext parse, and on
	// loopback the flag changes nothing for Test.
	if _, err := rabbit.ParseValue(withFields(t, b.current, map[string]string{"management_url": "http://" + addr, "host": host, "allow_plaintext": "true"}), "current"); err != nil {
		t.Errorf("allow_plaintext: %v", err)
	}
	if err := b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: withFields(t, b.current, map[string]string{"allow_plaintext": "true"})}); err != nil {
		t.Errorf("Test with allow_plaintext on loopback: %v", err)
	}
}

// TestRollback: after Set, Rollback brings back the state before it: the
// current credential works and the pending one is refused. Idempotent.
func TestRollback(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategyAlternating} {
		t.Run(strategy, func(t *testing.T) {
			b := setup(t, strategy)
			resp, err := b.r.Create(ctx(t), rotators.CreateRequest{Secret: b.sec, Config: b.cfg, Current: b.current})
			if err != nil {
				t.Fatal(err)
			}
			pend := resp.Value
			if err := b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Pending: pend, Admin: b.admin}); err != nil {
				t.Fatalf("Set: %v", err)
			}
			works(t, "pending after Set", pend)
			for i := range 2 {
				if err := b.r.Rollback(ctx(t), rotators.RollbackRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Pending: pend, Admin: b.admin}); err != nil {
					t.Fatalf("Rollback #%d: %v", i+1, err)
				}
			}
			works(t, "current after Rollback", b.current)
			refused(t, "pending after Rollback", pend)
			if err := b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: pend}); err == nil {
				t.Errorf("Test(pending) after Rollback succeeded")
			}
		})
	}
}

// TestErrorsHoldNoSecret: a canary password in every value never shows in
// an error, whatever fails (wrong admin password, wrong password in Test,
// a user that does not exist, a broker that is not there).
func TestErrorsHoldNoSecret(t *testing.T) {
	t.Parallel()
	b := setup(t, rotators.StrategyAdmin)
	canary := "CANARY-" + strings.Repeat("z", 8) + "-" + b.user
	with := func(v rotators.Value, f map[string]string) rotators.Value {
		f["password"] = canary + "-" + f["password"]
		return withFields(t, v, f)
	}
	cases := map[string]func() error{
		"Set, wrong admin password": func() error {
			return b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: b.current,
				Pending: with(b.current, map[string]string{"password": "p"}), Admin: with(b.admin, map[string]string{"password": "a"})})
		},
		"Set, no such user": func() error {
			cur := with(b.current, map[string]string{"username": "rt-nobody-" + b.user, "password": "c"})
			return b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: cur,
				Pending: with(cur, map[string]string{"password": "p"}), Admin: b.admin})
		},
		"Test, wrong password": func() error {
			return b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: with(b.current, map[string]string{"password": "t"})})
		},
		"Test, nothing listening": func() error {
			return b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: with(b.current, map[string]string{"port": "1", "password": "t"})})
		},
		"Finish, management API not there": func() error {
			v := with(b.current, map[string]string{"management_url": "http://127.0.0.1:1", "password": "f"})
			return b.r.Finish(ctx(t), rotators.FinishRequest{Secret: b.sec, Config: b.cfg, Current: v, Previous: v,
				Admin: with(b.admin, map[string]string{"management_url": "http://127.0.0.1:1", "password": "a"}), Emergency: true})
		},
		"Test, bad value": func() error {
			return b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: sensitive.Bytes(`{"password":"` + canary + `","port":"x"`)})
		},
	}
	for name, call := range cases {
		err := call()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "CANARY") {
			t.Errorf("%s: the error holds the password: %v", name, sensitive.SanitizeString(err.Error(), sensitive.Bytes(canary)))
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestAlternatingResumesPermissionCopy: a crash after Set created the
// other user but before it copied the permissions left a user without
// any; the retried Set finishes the copy and the pending value works.
func TestAlternatingResumesPermissionCopy(t *testing.T) {
	t.Parallel()
	b := setup(t, rotators.StrategyAlternating)
	resp, err := b.r.Create(ctx(t), rotators.CreateRequest{Secret: b.sec, Config: b.cfg, Current: b.current})
	if err != nil {
		t.Fatal(err)
	}
	// What the crashed Set left: the user with the first user's tags, no permissions.
	guest(t, http.MethodPut, "/users/"+esc(b.alt), map[string]string{"password": "left-by-a-crash-" + b.user, "tags": "monitoring"}, nil)
	if _, err := dial(resp.Value); err == nil {
		t.Fatalf("the pending value works before Set")
	}
	if err := b.r.Set(ctx(t), rotators.SetRequest{Secret: b.sec, Config: b.cfg, Current: b.current, Pending: resp.Value, Admin: b.admin}); err != nil {
		t.Fatalf("retried Set: %v", err)
	}
	var perms []map[string]string
	guest(t, http.MethodGet, "/users/"+esc(b.alt)+"/permissions", nil, &perms)
	if len(perms) != 1 || perms[0]["write"] != appPerms["write"] {
		t.Errorf("permissions after the retried Set: %v; want the first user's", perms)
	}
	if err := b.r.Test(ctx(t), rotators.TestRequest{Secret: b.sec, Config: b.cfg, Value: resp.Value}); err != nil {
		t.Errorf("Test(pending) after the retried Set: %v", err)
	}
}

// username is the user of a RabbitMQ credential value.
func username(t *testing.T, v rotators.Value) string {
	t.Helper()
	c, err := rabbit.ParseValue(v, "value")
	if err != nil {
		t.Fatal(err)
	}
	return c.Username
}
