package postgres

import (
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// onTarget returns v pointed at host:port with the given TLS fields.
func onTarget(t *testing.T, v rotators.Value, host string, port int, tls map[string]any) rotators.Value {
	t.Helper()
	c, err := rotators.ParseDBCredentials(v)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{"engine": "postgres", "host": host, "port": port, "username": c.Username, "password": c.Password, "dbname": c.DBName}
	for k, f := range tls {
		m[k] = f
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return sensitive.Bytes(b)
}

// TestTLS: a whole single-user rotation over verified TLS (a proxy with a
// CA the test generates, in front of the machine's PostgreSQL), and the
// refusals: a wrong CA, a certificate for another name; verify-ca and
// require accept what they promise to.
func TestTLS(t *testing.T) {
	h := newHarness(t)
	proxy := rotatortest.StartTLSProxy(t, net.JoinHostPort(h.host, strconv.Itoa(h.port)), rotatortest.PostgresStartTLS)
	other := rotatortest.NewCA(t)
	user := testenv.Unique("rt_tls_")
	plain := h.NewAccount(t, user)
	r := New()
	cfg := h.Config(rotators.StrategySingleUser, "", "")
	ctx := t.Context()

	verified := onTarget(t, plain, "localhost", proxy.Port, map[string]any{"sslmode": "verify-full", "sslrootcert": proxy.CA.File})
	resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: verified})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, rotators.SetRequest{Config: cfg, Current: verified, Pending: resp.Value}); err != nil {
		t.Fatalf("Set over verify-full: %v", err)
	}
	if err := r.Test(ctx, rotators.TestRequest{Config: cfg, Value: resp.Value}); err != nil {
		t.Fatalf("Test over verify-full: %v", err)
	}
	if err := r.Finish(ctx, rotators.FinishRequest{Config: cfg, Current: resp.Value, Previous: verified}); err != nil {
		t.Fatalf("Finish over verify-full: %v", err)
	}
	if proxy.Handshakes.Load() < 3 || proxy.Plaintext.Load() != 0 {
		t.Fatalf("handshakes %d, plaintext connections %d; want every connection over TLS", proxy.Handshakes.Load(), proxy.Plaintext.Load())
	}
	current := resp.Value
	if who, err := h.login(ctx, onTarget(t, current, h.host, h.port, map[string]any{"sslmode": "disable"})); err != nil || who != user {
		t.Fatalf("the rotated password does not work directly: %q, %v", who, err)
	}

	for _, tc := range []struct {
		name string
		host string
		tls  map[string]any
		want string // "" works, else a word of the error
	}{
		{"verify-full by IP", "127.0.0.1", map[string]any{"sslmode": "verify-full", "sslrootcert": proxy.CA.File}, ""},
		{"wrong CA", "localhost", map[string]any{"sslmode": "verify-full", "sslrootcert": other.File}, "certificate"},
		{"wrong CA, verify-ca", "localhost", map[string]any{"sslmode": "verify-ca", "sslrootcert": other.File}, "certificate"},
		{"name not in the certificate", "localhost", map[string]any{"sslmode": "verify-full", "sslrootcert": proxy.CA.File, "tls_server_name": "db.example.com"}, "certificate"},
		{"verify-ca ignores the name", "localhost", map[string]any{"sslmode": "verify-ca", "sslrootcert": proxy.CA.File, "tls_server_name": "db.example.com"}, ""},
		{"require does not verify", "localhost", map[string]any{"sslmode": "require", "sslrootcert": other.File}, ""},
		{"system roots do not know the test CA", "localhost", map[string]any{"sslmode": "verify-full"}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := proxy.Handshakes.Load()
			v := onTarget(t, current, tc.host, proxy.Port, tc.tls)
			err := r.Test(ctx, rotators.TestRequest{Config: cfg, Value: v})
			c, _ := rotators.ParseDBCredentials(v)
			if err != nil && strings.Contains(err.Error(), c.Password) {
				t.Fatalf("error leaks the password")
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Test = %v; want it to work", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Test = %v; want an error about the %s", err, tc.want)
			case tc.want != "" && proxy.Handshakes.Load() != before:
				t.Fatalf("a refused certificate still completed a handshake")
			}
		})
	}
}

// TestRemotePlaintextRefused: a value for a host that is not loopback
// with sslmode disable is refused before any connection, with the host
// and the fix named; no sslmode means verify-full there.
func TestRemotePlaintextRefused(t *testing.T) {
	h := newTarget(t)
	v := h.value("app", sensitive.Bytes("canary-password-5521"))
	remote := onTarget(t, v, "192.0.2.1", 5432, map[string]any{"sslmode": "disable"})
	rec := &recordingDialer{}
	testDialer = rec
	t.Cleanup(func() { testDialer = nil })
	err := New().Test(t.Context(), rotators.TestRequest{Value: remote})
	if !errors.Is(err, rotators.ErrPlaintext) || !strings.Contains(err.Error(), "192.0.2.1") || !strings.Contains(err.Error(), "sslrootcert") ||
		strings.Contains(err.Error(), "canary-password") {
		t.Fatalf("Test to a remote host in plaintext = %v; want ErrPlaintext naming the host and the fix", err)
	}
	if len(rec.sent) != 0 {
		t.Fatalf("%d bytes were sent; want none", len(rec.sent))
	}
	c, _ := rotators.ParseDBCredentials(onTarget(t, v, "db.example.com", 5432, nil))
	if m, _ := c.Mode(); m != rotators.SSLVerifyFull {
		t.Errorf("remote host without sslmode: mode %q, want verify-full", m)
	}
}

// TestEnvironmentIgnored: PG* variables in the daemon's environment do not
// redirect the rotator (PGHOSTADDR), add options (PGOPTIONS: SET ROLE at
// login) or pick a service.
func TestEnvironmentIgnored(t *testing.T) {
	h := newHarness(t)
	user := testenv.Unique("rt_env_")
	v := h.NewAccount(t, user)
	t.Setenv("PGHOSTADDR", "192.0.2.1")
	t.Setenv("PGOPTIONS", "-c role=rotary_pwcheck")
	t.Setenv("PGSERVICE", "nonexistent")
	t.Setenv("PGTARGETSESSIONATTRS", "read-only")
	t.Setenv("PGSSLMODE", "verify-full")
	t.Setenv("PGGSSENCMODE", "require") // pq refuses to start with it set
	if err := New().Test(t.Context(), rotators.TestRequest{Value: v}); err != nil {
		t.Fatalf("Test with hostile PG* variables in the environment: %v", err)
	}
}

// TestRollbackAlternating: alternating Set gave the other user the pending
// password; when the engine rolls back (pending failed its test, current
// works) that password must stop working, since nobody will store it.
// The current user keeps working; Rollback is idempotent; other
// strategies have nothing to undo.
func TestRollbackAlternating(t *testing.T) {
	h := newHarness(t)
	user := testenv.Unique("rt_rb_")
	current := h.NewAccount(t, user, user+"_b")
	cfg := h.Config(rotators.StrategyAlternating, "admin", user+"_b")
	r := New()
	ctx := t.Context()
	resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: current})
	if err != nil {
		t.Fatal(err)
	}
	pending := resp.Value
	if err := r.Set(ctx, rotators.SetRequest{Config: cfg, Current: current, Pending: pending, Admin: h.adminValue}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if who, err := h.login(ctx, pending); err != nil || who != user+"_b" {
		t.Fatalf("pending after Set: %q, %v; want it to log in (the state a rollback starts from)", who, err)
	}
	for i := range 2 {
		if err := r.Rollback(ctx, rotators.RollbackRequest{Config: cfg, Current: current, Pending: pending, Admin: h.adminValue}); err != nil {
			t.Fatalf("Rollback #%d: %v", i+1, err)
		}
	}
	if _, err := h.login(ctx, pending); err == nil {
		t.Fatalf("the pending password of %s_b still logs in after Rollback", user)
	}
	if who, err := h.login(ctx, current); err != nil || who != user {
		t.Fatalf("current after Rollback: %q, %v", who, err)
	}
	// A pending user outside the pair is refused, not changed.
	canary := h.NewAccount(t, testenv.Unique("rt_rbc_"))
	c, _ := rotators.ParseDBCredentials(canary)
	hostile, _ := rotators.WithCredentials(pending, c.Username, sensitive.Bytes("x"))
	if err := r.Rollback(ctx, rotators.RollbackRequest{Config: cfg, Current: current, Pending: hostile, Admin: h.adminValue}); !errors.Is(err, rotators.ErrWrongIdentity) {
		t.Fatalf("Rollback of a user outside the pair = %v; want ErrWrongIdentity", err)
	}
	if who, err := h.login(ctx, canary); err != nil || who != c.Username {
		t.Fatalf("the canary's password changed: %q, %v", who, err)
	}
	// Single-user: nothing to undo, nothing touched.
	if err := r.Rollback(ctx, rotators.RollbackRequest{Config: h.Config(rotators.StrategySingleUser, "", ""), Current: current, Pending: pending}); err != nil {
		t.Fatalf("single-user Rollback: %v", err)
	}
}
