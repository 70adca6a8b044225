// Package rotatortest is the conformance suite every rotator passes against
// its real target: the built-in ones against the machine's PostgreSQL,
// MariaDB and Redis, and plugins through the gRPC boundary.
//
// The suite plays the engine: it calls Create, Set, Test and Finish in
// order, as the engine would, and then checks the target itself through the
// harness (a real login with the engine's own client library): the new
// credential works, the old one is refused or still accepted as the
// strategy promises, set twice is harmless, hostile user names work and
// inject nothing, and a crash between set and finish is recovered by
// testing which credential the target accepts.
package rotatortest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Harness connects the suite to one rotator and its target.
type Harness struct {
	Rotator    rotators.Rotator
	SecretType string // the type of the secrets rotated, e.g. db-credentials

	// NewAccount creates a login named username with a random password on
	// the target, registers its removal (and that of every name in
	// alsoDrop, users the rotator may create) with t.Cleanup, and returns
	// its value as the secret would hold it. The target must check the
	// password of this login (see the PostgreSQL trap in ARCHITECTURE.md).
	NewAccount func(t *testing.T, username string, alsoDrop ...string) rotators.Value

	// Admin returns the value of an admin credential that may change other
	// users' passwords, or nil when the rotator has no admin strategy.
	Admin func(t *testing.T) rotators.Value

	// Login authenticates with value and returns the name the target says
	// the session belongs to (current_user, CURRENT_USER(), ACL WHOAMI).
	// It returns an error when the target refuses the credential.
	Login func(ctx context.Context, value rotators.Value) (string, error)

	// OpenSession opens a session with value and keeps it open; alive
	// reports whether it still works. Nil when the target cannot end
	// sessions (the emergency session checks are skipped).
	OpenSession func(t *testing.T, value rotators.Value) (alive func() bool)

	// Strategies to run, with the config for each. adminSecret is the name
	// the suite gives the admin secret; altUser is the second user of the
	// alternating strategy.
	Strategies []string
	Config     func(strategy, adminSecret, altUser string) json.RawMessage

	// OldKeepsWorking reports whether, after a normal (not emergency)
	// rotation with strategy, the previous credential still logs in.
	OldKeepsWorking func(strategy string) bool

	// HostileNames are user names to try; DefaultHostileNames when nil.
	HostileNames []string

	// Unchecked creates a login named username that the target lets in
	// with any password (PostgreSQL: a role pg_hba.conf trusts; Redis: a
	// nopass user), registers its removal, and returns a value naming it
	// and a function reporting whether its password settings changed
	// since. The single-user strategy must refuse to rotate it. Nil when
	// the target cannot have such a login.
	Unchecked func(t *testing.T, username string) (value rotators.Value, changed func() bool)

	// Masquerade creates a login named username whose sessions the target
	// reports as another user (PostgreSQL: ALTER ROLE … SET role), and
	// returns its value. The rotator must refuse to act through it. Nil
	// when the target has no such thing.
	Masquerade func(t *testing.T, username string) rotators.Value

	// HostileTestQueries returns test_query values that would change the
	// target (DROP TABLE, a second statement, CREATE TABLE, a write) for
	// the login value, and a check that the target is unchanged. Nil
	// when the rotator runs no configurable command.
	HostileTestQueries func(t *testing.T, login rotators.Value) (queries []HostileQuery, unchanged func() error)
}

// HostileQuery is a test_query that would change the target.
type HostileQuery struct {
	Query string
	// ServerOnly: it reads like one read-only statement (WITH … DELETE),
	// so ValidateConfig may accept it; the read-only transaction on the
	// server must stop it in Test.
	ServerOnly bool
}

// DefaultHostileNames are user names full of quoting hazards. The suite
// appends a unique suffix to each.
var DefaultHostileNames = []string{
	`o'brien`, `back\slash`, `with space`, `dq"uote`, `ünïcødé`, `semi;colon--`, `pct%_x`,
}

const adminSecretName = "rotatortest/admin"

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, strategy := range h.Strategies {
		t.Run(strategy, func(t *testing.T) {
			t.Run("rotate", func(t *testing.T) { testRotate(t, h, strategy, "rt_"+unique()) })
			t.Run("rotate twice", func(t *testing.T) { testRotateTwice(t, h, strategy) })
			t.Run("set twice", func(t *testing.T) { testSetTwice(t, h, strategy) })
			t.Run("crash between set and finish", func(t *testing.T) { testCrash(t, h, strategy) })
			t.Run("crash before set", func(t *testing.T) { testCrashBeforeSet(t, h, strategy) })
			t.Run("emergency", func(t *testing.T) { testEmergency(t, h, strategy) })
			t.Run("hostile names", func(t *testing.T) {
				names := h.HostileNames
				if names == nil {
					names = DefaultHostileNames
				}
				canaryUser := "rt_canary_" + unique()
				canary := h.NewAccount(t, canaryUser)
				for _, n := range names {
					t.Run(n, func(t *testing.T) { testRotate(t, h, strategy, n+"_"+unique()) })
				}
				// Nothing the hostile names did touched another account.
				if u, err := h.Login(context.Background(), canary); err != nil || u != canaryUser {
					t.Errorf("an unrelated account broke during hostile-name rotations: login = %q, %v", u, err)
				}
			})
		})
	}
	t.Run("test refuses a wrong password", func(t *testing.T) { testWrongPassword(t, h) })
	t.Run("set never changes another account", func(t *testing.T) { testOtherAccount(t, h) })
	if h.SecretType == "db-credentials" {
		t.Run("no plaintext to a remote host", func(t *testing.T) { testNoPlaintext(t, h) })
		t.Run("hostile host values", func(t *testing.T) { testHostileHosts(t, h) })
	}
	if h.Unchecked != nil && slices.Contains(h.Strategies, rotators.StrategySingleUser) {
		t.Run("single-user refuses a login the target does not check", func(t *testing.T) { testUnchecked(t, h) })
	}
	if h.Masquerade != nil {
		t.Run("refuses a session of another identity", func(t *testing.T) { testMasquerade(t, h) })
	}
	if h.HostileTestQueries != nil {
		t.Run("test_query is one read-only statement", func(t *testing.T) { testHostileTestQueries(t, h) })
	}
}

var counter atomic.Int64

func unique() string {
	return fmt.Sprintf("%x%d", time.Now().UnixNano()&0xffffff, counter.Add(1))
}

type rotation struct {
	t         *testing.T
	h         Harness
	strategy  string
	sec       rotators.Secret
	cfg       json.RawMessage
	admin     rotators.Value
	current   rotators.Value
	previous  rotators.Value
	pending   rotators.Value
	user, alt string
}

func newRotation(t *testing.T, h Harness, strategy, user string) *rotation {
	t.Helper()
	alt := user + "_b"
	r := &rotation{t: t, h: h, strategy: strategy, user: user, alt: alt,
		sec: rotators.Secret{Name: "rotatortest/" + unique(), Type: h.SecretType, Region: "default", Version: 1}}
	r.current = h.NewAccount(t, user, alt)
	if strategy != rotators.StrategySingleUser && h.Admin != nil {
		r.admin = h.Admin(t)
	}
	r.cfg = h.Config(strategy, adminSecretName, alt)
	if v, ok := r.h.Rotator.(rotators.ConfigValidator); ok {
		if err := v.ValidateConfig(context.Background(), h.SecretType, r.cfg); err != nil {
			t.Fatalf("ValidateConfig(%s): %v", r.cfg, err)
		}
	}
	return r
}

func (r *rotation) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r.t.Cleanup(cancel)
	return ctx
}

// noLeak fails if err's text holds any value the suite knows.
func (r *rotation) noLeak(step string, err error) {
	r.t.Helper()
	if err == nil {
		return
	}
	for _, v := range []rotators.Value{r.current, r.previous, r.pending, r.admin} {
		if p := password(v); len(p) >= 4 && strings.Contains(err.Error(), p) {
			r.t.Errorf("%s error leaks a password: %v", step, sensitive.Sanitize(err, sensitive.Bytes(p)))
		}
	}
}

func password(v rotators.Value) string {
	var m map[string]any
	if json.Unmarshal(v.Reveal(), &m) == nil {
		if p, ok := m["password"].(string); ok {
			return p
		}
		return ""
	}
	return string(v.Reveal())
}

func (r *rotation) create(emergency bool) {
	r.t.Helper()
	r.sec.Version++
	resp, err := r.h.Rotator.Create(r.ctx(), rotators.CreateRequest{
		Secret: r.sec, Config: r.cfg, Current: r.current, Previous: r.previous, Emergency: emergency,
	})
	r.noLeak("Create", err)
	if err != nil {
		r.t.Fatalf("Create: %v", err)
	}
	if resp.Value.Equal(r.current) || password(resp.Value) == password(r.current) {
		r.t.Fatalf("Create returned the current password again")
	}
	r.pending = resp.Value
}

func (r *rotation) set(emergency bool) {
	r.t.Helper()
	err := r.h.Rotator.Set(r.ctx(), rotators.SetRequest{
		Secret: r.sec, Config: r.cfg, Current: r.current, Pending: r.pending, Admin: r.admin, Emergency: emergency,
	})
	r.noLeak("Set", err)
	if err != nil {
		r.t.Fatalf("Set: %v", err)
	}
}

func (r *rotation) test(v rotators.Value) error {
	err := r.h.Rotator.Test(r.ctx(), rotators.TestRequest{Secret: r.sec, Config: r.cfg, Value: v})
	r.noLeak("Test", err)
	return err
}

func (r *rotation) finish(emergency, keepSessions bool) {
	r.t.Helper()
	r.previous, r.current = r.current, r.pending
	err := r.h.Rotator.Finish(r.ctx(), rotators.FinishRequest{
		Secret: r.sec, Config: r.cfg, Current: r.current, Previous: r.previous, Admin: r.admin,
		Emergency: emergency, KeepSessions: keepSessions,
	})
	r.noLeak("Finish", err)
	if err != nil {
		r.t.Fatalf("Finish: %v", err)
	}
	r.pending = nil
}

func (r *rotation) full(emergency, keepSessions bool) {
	r.t.Helper()
	r.create(emergency)
	r.set(emergency)
	if err := r.test(r.pending); err != nil {
		r.t.Fatalf("Test(pending) after Set: %v", err)
	}
	r.finish(emergency, keepSessions)
}

func username(v rotators.Value) string {
	var m map[string]any
	if json.Unmarshal(v.Reveal(), &m) == nil {
		if u, ok := m["username"].(string); ok {
			return u
		}
	}
	return ""
}

// works checks that v logs in as the user it names (or, for values with
// no user, that it logs in at all).
func (r *rotation) works(what string, v rotators.Value) {
	r.t.Helper()
	got, err := r.h.Login(r.ctx(), v)
	if err != nil {
		r.t.Fatalf("%s credential refused by the target: %v", what, sensitive.Sanitize(err, sensitive.Bytes(password(v))))
	}
	if want := username(v); want != "" && got != want {
		r.t.Fatalf("%s credential logged in as %q, want %q", what, got, want)
	}
}

func (r *rotation) refused(what string, v rotators.Value) {
	r.t.Helper()
	if got, err := r.h.Login(r.ctx(), v); err == nil {
		r.t.Fatalf("%s credential still logs in (as %q); want it refused", what, got)
	}
}

func testRotate(t *testing.T, h Harness, strategy, user string) {
	r := newRotation(t, h, strategy, user)
	r.works("initial", r.current)
	r.full(false, false)
	r.works("new", r.current)
	if strategy == rotators.StrategyAlternating && username(r.current) == username(r.previous) {
		t.Fatalf("alternating rotation kept user %q; want the other user", username(r.current))
	}
	if h.OldKeepsWorking(strategy) {
		r.works("old (previous)", r.previous)
	} else {
		r.refused("old", r.previous)
	}
	// A wrong password for the new user is refused: the target really
	// checks passwords (the negative control of every login above).
	wrong, err := rotators.WithCredentials(r.current, username(r.current), sensitive.Bytes("wrong-"+unique()))
	if err == nil {
		r.refused("wrong", wrong)
	}
}

// testRotateTwice: alternating comes back to the first user, and every
// strategy keeps working over several rotations.
func testRotateTwice(t *testing.T, h Harness, strategy string) {
	r := newRotation(t, h, strategy, "rt2_"+unique())
	first := username(r.current)
	r.full(false, false)
	r.full(false, false)
	r.works("after two rotations", r.current)
	if strategy == rotators.StrategyAlternating && username(r.current) != first && first != "" {
		t.Errorf("after two alternating rotations the user is %q, want %q", username(r.current), first)
	}
	if !h.OldKeepsWorking(strategy) {
		r.refused("previous", r.previous)
	}
}

func testSetTwice(t *testing.T, h Harness, strategy string) {
	r := newRotation(t, h, strategy, "rt3_"+unique())
	r.create(false)
	r.set(false)
	r.set(false) // again, as after a crash
	if err := r.test(r.pending); err != nil {
		t.Fatalf("Test(pending) after setting twice: %v", err)
	}
	r.finish(false, false)
	r.works("new", r.current)
}

// testCrash: the engine crashed after Set; on resume it tests pending,
// which works, and rolls forward.
func testCrash(t *testing.T, h Harness, strategy string) {
	r := newRotation(t, h, strategy, "rt4_"+unique())
	r.create(false)
	r.set(false)
	// Resume: a fresh engine knows only the stored versions.
	if err := r.test(r.pending); err != nil {
		t.Fatalf("after a crash following Set, Test(pending) = %v; want it to work", err)
	}
	r.finish(false, false)
	r.works("recovered", r.current)
}

// testCrashBeforeSet: the engine crashed after Create; pending does not
// work, current does, so the engine knows to set again (or roll back).
func testCrashBeforeSet(t *testing.T, h Harness, strategy string) {
	r := newRotation(t, h, strategy, "rt5_"+unique())
	r.create(false)
	if err := r.test(r.pending); err == nil {
		t.Fatalf("Test(pending) succeeded before Set; the test step proves nothing")
	}
	if err := r.test(r.current); err != nil {
		t.Fatalf("Test(current) before Set = %v; want it to work", err)
	}
	r.set(false)
	if err := r.test(r.pending); err != nil {
		t.Fatalf("Test(pending) after the resumed Set: %v", err)
	}
	r.finish(false, false)
	r.works("new", r.current)
}

func testEmergency(t *testing.T, h Harness, strategy string) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep-sessions=%v", keep), func(t *testing.T) {
			r := newRotation(t, h, strategy, "rt6_"+unique())
			if strategy == rotators.StrategyAlternating {
				r.full(false, false) // both users exist and the pair is in use
			}
			var alive, aliveOlder func() bool
			if h.OpenSession != nil {
				alive = h.OpenSession(t, r.current)
				if !alive() {
					t.Fatalf("the session did not open")
				}
				// With alternating, the previous credential still works
				// before the emergency: its sessions must end too.
				if r.previous != nil && h.OldKeepsWorking(strategy) {
					aliveOlder = h.OpenSession(t, r.previous)
					if !aliveOlder() {
						t.Fatalf("the session of the previous credential did not open")
					}
				}
			}
			older := r.previous
			r.full(true, keep)
			r.works("new", r.current)
			r.refused("old", r.previous)
			if older != nil {
				r.refused("the one before the old", older)
			}
			for what, alive := range map[string]func() bool{"current": alive, "previous": aliveOlder} {
				if alive == nil {
					continue
				}
				if keep && !alive() {
					t.Errorf("keep-sessions: the session of the old %s credential was ended", what)
				}
				if !keep {
					deadline := time.Now().Add(10 * time.Second)
					for alive() {
						if time.Now().After(deadline) {
							t.Fatalf("emergency: the session of the old %s credential is still alive", what)
						}
						time.Sleep(50 * time.Millisecond)
					}
				}
			}
		})
	}
}

func testWrongPassword(t *testing.T, h Harness) {
	strategy := h.Strategies[0]
	r := newRotation(t, h, strategy, "rt7_"+unique())
	wrong, err := rotators.WithCredentials(r.current, username(r.current), sensitive.Bytes("not-the-password-"+unique()))
	if err != nil {
		wrong = sensitive.Bytes("not-the-password-" + unique())
	}
	if err := r.test(wrong); err == nil {
		t.Fatalf("Test(wrong password) succeeded; want an error")
	}
	if err := r.test(r.current); err != nil {
		t.Fatalf("Test(right password) = %v", err)
	}
}

// testOtherAccount: a pending value naming an account other than the one
// the rotation is for (a canary) is refused by Set, and the canary's
// password still works. For alternating the pending user must be the
// other user of the pair.
func testOtherAccount(t *testing.T, h Harness) {
	for _, strategy := range h.Strategies {
		t.Run(strategy, func(t *testing.T) {
			r := newRotation(t, h, strategy, "rt8_"+unique())
			canaryUser := "rt_canary_" + unique()
			canary := h.NewAccount(t, canaryUser)
			r.create(false)
			hostile, err := rotators.WithCredentials(r.pending, canaryUser, sensitive.Bytes(password(r.pending)))
			if err != nil {
				t.Fatalf("WithCredentials: %v", err)
			}
			err = h.Rotator.Set(r.ctx(), rotators.SetRequest{
				Secret: r.sec, Config: r.cfg, Current: r.current, Pending: hostile, Admin: r.admin,
			})
			r.noLeak("Set", err)
			if err == nil {
				t.Fatalf("Set with a pending value for another account (%q) succeeded; want it refused", canaryUser)
			}
			if u, err := h.Login(r.ctx(), canary); err != nil || u != canaryUser {
				t.Fatalf("the other account's own password stopped working: login = %q, %v", u, err)
			}
			r.refused("hostile pending", hostile)
			r.works("current", r.current)
		})
	}
}

// nonLoopbackAddr returns a non-loopback IP address of this machine, or ""
// when it has none.
func nonLoopbackAddr() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// withField returns v with field set (a JSON value).
func withField(t *testing.T, v rotators.Value, fields map[string]any) rotators.Value {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(v.Reveal(), &m); err != nil {
		t.Fatalf("value is not a JSON object")
	}
	for k, f := range fields {
		m[k] = f
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return sensitive.Bytes(b)
}

// testNoPlaintext: a value whose host is not loopback and whose sslmode
// sends the password in plaintext is refused by every step with
// rotators.ErrPlaintext before any connection: a listener on that host
// (a non-loopback address of this machine, when it has one) sees none.
func testNoPlaintext(t *testing.T, h Harness) {
	host, port := "192.0.2.1", 9 // TEST-NET: nothing to reach when the machine has no other address
	var ln *net.TCPListener
	if a := nonLoopbackAddr(); a != "" {
		l, err := net.Listen("tcp", net.JoinHostPort(a, "0"))
		if err == nil {
			ln = l.(*net.TCPListener)
			t.Cleanup(func() { ln.Close() })
			host, port = a, ln.Addr().(*net.TCPAddr).Port
		}
	}
	for _, strategy := range h.Strategies {
		t.Run(strategy, func(t *testing.T) {
			r := newRotation(t, h, strategy, "rt9_"+unique())
			r.create(false)
			remote := map[string]any{"host": host, "port": port, "sslmode": "disable"}
			cur, pend := withField(t, r.current, remote), withField(t, r.pending, remote)
			admin := r.admin
			if admin != nil {
				admin = withField(t, admin, remote)
			}
			for step, call := range map[string]func() error{
				"Test": func() error {
					return h.Rotator.Test(r.ctx(), rotators.TestRequest{Secret: r.sec, Config: r.cfg, Value: cur})
				},
				"Set": func() error {
					return h.Rotator.Set(r.ctx(), rotators.SetRequest{Secret: r.sec, Config: r.cfg, Current: cur, Pending: pend, Admin: admin})
				},
				"Finish": func() error {
					return h.Rotator.Finish(r.ctx(), rotators.FinishRequest{Secret: r.sec, Config: r.cfg, Current: pend, Previous: cur, Admin: admin, Emergency: true})
				},
			} {
				err := call()
				r.noLeak(step, err)
				if !errors.Is(err, rotators.ErrPlaintext) {
					t.Errorf("%s to %s in plaintext = %v; want rotators.ErrPlaintext", step, host, err)
				} else if !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "verify-full") {
					t.Errorf("%s error %q: want the host and the fix (sslmode verify-full) named", step, err)
				}
			}
			if ln != nil {
				_ = ln.SetDeadline(time.Now())
				if c, err := ln.Accept(); err == nil {
					c.Close()
					t.Errorf("a rotator connected to %s:%d; want no connection at all", host, port)
				}
			}
			// The negative control: with allow_plaintext the value is accepted
			// and Test reaches the target (the real one, on loopback).
			ok := withField(t, r.current, map[string]any{"allow_plaintext": true})
			if err := r.test(ok); err != nil {
				t.Errorf("Test with allow_plaintext on the loopback target: %v", err)
			}
		})
	}
}

// testUnchecked: single-user never rotates a login the target lets in
// with any password; nothing about it changes.
func testUnchecked(t *testing.T, h Harness) {
	user := "rt10_" + unique()
	v, changed := h.Unchecked(t, user)
	cfg := h.Config(rotators.StrategySingleUser, adminSecretName, user+"_b")
	sec := rotators.Secret{Name: "rotatortest/" + unique(), Type: h.SecretType, Region: "default", Version: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.Rotator.Create(ctx, rotators.CreateRequest{Secret: sec, Config: cfg, Current: v})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	err = h.Rotator.Set(ctx, rotators.SetRequest{Secret: sec, Config: cfg, Current: v, Pending: resp.Value})
	if !errors.Is(err, rotators.ErrWrongIdentity) {
		t.Fatalf("single-user Set on a login the target does not check = %v; want rotators.ErrWrongIdentity", err)
	}
	if changed() {
		t.Fatalf("the unchecked login's password settings changed; want nothing changed")
	}
}

// testMasquerade: a login whose session the target reports as another
// user is refused by Set (any strategy that logs in as it) and Test.
func testMasquerade(t *testing.T, h Harness) {
	user := "rt11_" + unique()
	v := h.Masquerade(t, user)
	before, _ := h.Login(context.Background(), v)
	if before == user {
		t.Fatalf("Masquerade: the session is %q's own; the harness proves nothing", user)
	}
	cfg := h.Config(rotators.StrategySingleUser, adminSecretName, user+"_b")
	sec := rotators.Secret{Name: "rotatortest/" + unique(), Type: h.SecretType, Region: "default", Version: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.Rotator.Create(ctx, rotators.CreateRequest{Secret: sec, Config: cfg, Current: v})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := h.Rotator.Set(ctx, rotators.SetRequest{Secret: sec, Config: cfg, Current: v, Pending: resp.Value}); !errors.Is(err, rotators.ErrWrongIdentity) {
		t.Errorf("Set as a login whose session is %q = %v; want rotators.ErrWrongIdentity", before, err)
	}
	if err := h.Rotator.Test(ctx, rotators.TestRequest{Secret: sec, Config: cfg, Value: v}); !errors.Is(err, rotators.ErrWrongIdentity) {
		t.Errorf("Test of a login whose session is %q = %v; want rotators.ErrWrongIdentity", before, err)
	}
	if _, err := h.Login(ctx, resp.Value); err == nil {
		t.Errorf("the pending password logs in: Set changed it")
	}
}

// testHostileTestQueries: ValidateConfig refuses each hostile test_query
// with rotators.ErrTestQuery, Test refuses it too, and the target is
// unchanged; the default test query still works (negative control).
func testHostileTestQueries(t *testing.T, h Harness) {
	r := newRotation(t, h, h.Strategies[0], "rt12_"+unique())
	queries, unchanged := h.HostileTestQueries(t, r.current)
	for _, hq := range queries {
		q := hq.Query
		t.Run(q, func(t *testing.T) {
			var cfg map[string]any
			if err := json.Unmarshal(r.cfg, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["test_query"] = q
			raw, _ := json.Marshal(cfg)
			if v, ok := h.Rotator.(rotators.ConfigValidator); ok {
				err := v.ValidateConfig(r.ctx(), h.SecretType, raw)
				if (!hq.ServerOnly || err != nil) && (!errors.Is(err, rotators.ErrTestQuery) || !strings.Contains(err.Error(), "test_query")) {
					t.Errorf("ValidateConfig(test_query %s) = %v; want rotators.ErrTestQuery naming test_query", strconv.Quote(q), err)
				}
			}
			err := h.Rotator.Test(r.ctx(), rotators.TestRequest{Secret: r.sec, Config: raw, Value: r.current})
			r.noLeak("Test", err)
			if err == nil {
				t.Errorf("Test with test_query %s succeeded; want it refused", strconv.Quote(q))
			}
			if err := unchanged(); err != nil {
				t.Fatalf("after test_query %s: %v", strconv.Quote(q), err)
			}
		})
	}
	if err := r.test(r.current); err != nil {
		t.Errorf("Test with the default test query: %v", err)
	}
}

// HostileHosts are host field values a driver could read as a socket, a
// second host or more parameters. Every step refuses them naming the field.
var HostileHosts = []string{
	"/tmp", "/var/run/postgresql", "@abstract", "127.0.0.1,127.0.0.2", "127.0.0.1 port=1", "127.0.0.1' options='-c role=postgres",
	"127.0.0.1?tls=false", "127.0.0.1)/x?allowCleartextPasswords=true", "evil@127.0.0.1", "127.0.0.1/x", "127.0.0.1:1",
}

func testHostileHosts(t *testing.T, h Harness) {
	r := newRotation(t, h, h.Strategies[0], "rt13_"+unique())
	for _, host := range HostileHosts {
		v := withField(t, r.current, map[string]any{"host": host})
		err := h.Rotator.Test(r.ctx(), rotators.TestRequest{Secret: r.sec, Config: r.cfg, Value: v})
		r.noLeak("Test", err)
		if err == nil || !strings.Contains(err.Error(), `field "host"`) {
			t.Errorf("Test with host %q = %v; want it refused naming the host field", host, err)
		}
	}
}
