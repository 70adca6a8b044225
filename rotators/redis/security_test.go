package redis_test

import (
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/redis"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// withFields returns v with fields set.
func withFields(t *testing.T, v rotators.Value, fields map[string]any) rotators.Value {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(v.Reveal(), &m); err != nil {
		t.Fatal(err)
	}
	for k, f := range fields {
		m[k] = f
	}
	b, _ := json.Marshal(m)
	return sensitive.Bytes(b)
}

// TestTLS: a whole admin rotation over verified TLS (a proxy with a CA the
// test generates in front of the machine's Redis), and a wrong CA or a
// name the certificate lacks refused before any credential is sent.
func TestTLS(t *testing.T) {
	host, port := testAddr()
	proxy := rotatortest.StartTLSProxy(t, net.JoinHostPort(host, strconv.Itoa(port)), nil)
	other := rotatortest.NewCA(t)
	f := newFixture(t, rotators.StrategyAdmin, appRules)
	tlsFields := map[string]any{"host": "localhost", "port": proxy.Port, "sslmode": "verify-full", "sslrootcert": proxy.CA.File}
	cur := withFields(t, f.current, tlsFields)
	admin := withFields(t, f.admin, tlsFields)
	r := redis.Rotator{}
	resp, err := r.Create(ctx(t), rotators.CreateRequest{Config: f.cfg, Current: cur})
	if err != nil {
		t.Fatal(err)
	}
	pending := resp.Value
	if err := r.Set(ctx(t), rotators.SetRequest{Config: f.cfg, Current: cur, Pending: pending, Admin: admin}); err != nil {
		t.Fatalf("Set over verify-full: %v", err)
	}
	if err := r.Test(ctx(t), rotators.TestRequest{Config: f.cfg, Value: pending}); err != nil {
		t.Fatalf("Test over verify-full: %v", err)
	}
	if err := r.Finish(ctx(t), rotators.FinishRequest{Config: f.cfg, Current: pending, Previous: cur, Admin: admin}); err != nil {
		t.Fatalf("Finish over verify-full: %v", err)
	}
	if proxy.Handshakes.Load() < 3 || proxy.Plaintext.Load() != 0 {
		t.Fatalf("handshakes %d, plaintext %d; want every connection over TLS", proxy.Handshakes.Load(), proxy.Plaintext.Load())
	}
	direct := withFields(t, pending, map[string]any{"host": host, "port": port, "sslmode": "disable", "sslrootcert": nil})
	if who, err := login(ctx(t), direct); err != nil || who != f.user {
		t.Fatalf("the rotated password does not work directly: %q, %v", who, err)
	}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"wrong CA", map[string]any{"sslrootcert": other.File}, "certificate"},
		{"wrong CA, verify-ca", map[string]any{"sslmode": "verify-ca", "sslrootcert": other.File}, "certificate"},
		{"name not in the certificate", map[string]any{"tls_server_name": "cache.example.com"}, "certificate"},
		{"verify-ca ignores the name", map[string]any{"sslmode": "verify-ca", "tls_server_name": "cache.example.com"}, ""},
		{"require does not verify", map[string]any{"sslmode": "require", "sslrootcert": other.File}, ""},
		{"no TLS to a TLS port", map[string]any{"sslmode": "disable", "sslrootcert": nil}, "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := proxy.Handshakes.Load()
			v := withFields(t, withFields(t, pending, tlsFields), tc.fields)
			err := r.Test(ctx(t), rotators.TestRequest{Config: f.cfg, Value: v})
			noLeak(t, err, v)
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

// TestRollbackRemovesPending: a rotation whose pending password was added
// by Set but failed its test (the engine rolls back because current still
// works) must not leave the pending password valid. Rollback removes it,
// keeps the current one, and is idempotent.
func TestRollbackRemovesPending(t *testing.T) {
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategySingleUser} {
		t.Run(strategy, func(t *testing.T) {
			rules := appRules
			if strategy == rotators.StrategySingleUser {
				rules = append(append([]string{}, appRules...), selfRules...)
			}
			f := newFixture(t, strategy, rules)
			pending := f.create()
			if err := f.set(pending); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if who, err := login(ctx(t), pending); err != nil || who != f.user {
				t.Fatalf("pending after Set: %q, %v; want it to log in (the state a rollback starts from)", who, err)
			}
			var r rotators.Rotator = redis.Rotator{}
			rb, ok := r.(rotators.Rollbacker)
			if !ok {
				t.Fatalf("redis.Rotator does not implement rotators.Rollbacker")
			}
			for i := range 2 { // idempotent
				err := rb.Rollback(ctx(t), rotators.RollbackRequest{Config: f.cfg, Current: f.current, Pending: pending, Admin: f.admin})
				noLeak(t, err, f.current, pending, f.admin)
				if err != nil {
					t.Fatalf("Rollback #%d: %v", i+1, err)
				}
			}
			if who, err := login(ctx(t), pending); err == nil {
				t.Fatalf("pending still logs in (as %q) after Rollback", who)
			}
			if who, err := login(ctx(t), f.current); err != nil || who != f.user {
				t.Fatalf("current after Rollback: %q, %v; want it to keep working", who, err)
			}
			// A "pending" equal to current is never removed.
			if err := rb.Rollback(ctx(t), rotators.RollbackRequest{Config: f.cfg, Current: f.current, Pending: f.current, Admin: f.admin}); err != nil {
				t.Fatalf("Rollback with pending = current: %v", err)
			}
			if _, err := login(ctx(t), f.current); err != nil {
				t.Fatalf("Rollback removed the current password: %v", err)
			}
		})
	}
}

// TestSingleUserDefaultNopass: the attack on an out-of-the-box
// Redis: a value naming a nopass user with any password, rotated with the
// single-user strategy, would add a password to that user (and drop its
// nopass), locking out every client of it. Refused; nothing changes.
func TestSingleUserDefaultNopass(t *testing.T) {
	rdb := root(t)
	name := testenv.Unique("rt_nopass_")
	v, changed := uncheckedUser(t, rdb, name, append(append([]string{}, appRules...), selfRules...))
	f := &fixture{t: t, rdb: rdb, cfg: config(rotators.StrategySingleUser, ""), user: name, current: v}
	pending := f.create()
	err := f.set(pending)
	if !errors.Is(err, rotators.ErrWrongIdentity) || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("single-user Set on a nopass user = %v; want ErrWrongIdentity explaining the user takes any password", err)
	}
	noLeak(t, err, v, pending)
	if changed() {
		t.Fatalf("the nopass user's rules changed")
	}
}
