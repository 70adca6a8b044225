package mysql

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// countDials counts every TCP connection the rotator opens (a login, a
// refused login, a pooled admin session) until the test ends.
func countDials(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	testDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	t.Cleanup(func() { testDial = nil })
	return &n
}

// rotateWith runs Create → Set → Test → Finish with r and returns the new
// current value.
func rotateWith(ctx context.Context, r *Rotator, cfg json.RawMessage, cur, prev, admin rotators.Value) (rotators.Value, error) {
	sec := rotators.Secret{Name: "t", Type: SecretType}
	resp, err := r.Create(ctx, rotators.CreateRequest{Secret: sec, Config: cfg, Current: cur, Previous: prev})
	if err != nil {
		return nil, err
	}
	if err := r.Set(ctx, rotators.SetRequest{Secret: sec, Config: cfg, Current: cur, Pending: resp.Value, Admin: admin}); err != nil {
		return nil, err
	}
	if err := r.Test(ctx, rotators.TestRequest{Secret: sec, Config: cfg, Value: resp.Value}); err != nil {
		return nil, err
	}
	if err := r.Finish(ctx, rotators.FinishRequest{Secret: sec, Config: cfg, Current: resp.Value, Previous: cur, Admin: admin}); err != nil {
		return nil, err
	}
	return resp.Value, nil
}

// sessions returns the ids of user's sessions on the server.
func (e *env) sessions(t *testing.T, user string) []int64 {
	t.Helper()
	rows, err := e.root.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? ORDER BY ID", user)
	if err != nil {
		t.Fatalf("process list: %v", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

// waitSessions waits until user's sessions satisfy ok.
func (e *env) waitSessions(t *testing.T, user, what string, ok func([]int64) bool) []int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.sessions(t, user)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions of %q are %v; want %s", user, got, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func poolKey(t *testing.T, cfg json.RawMessage, admin rotators.Value) string {
	t.Helper()
	c, err := ParseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseValue("admin", admin)
	if err != nil {
		t.Fatal(err)
	}
	return rotators.AdminPoolKey(c.DBConfig, a)
}

func poolConfig(strategy string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"strategy": strategy, "admin_secret": "pool-admin"})
	return b
}

// TestAdminRotationOpensOneConnection: after a warm-up that fills the
// pool, a rotation with the admin or alternating strategy opens exactly
// one connection (the test login with the new password), one at a time
// and 8 at a time, and the admin's sessions on the server stay the same
// ones. Single-user (the control: the counter sees every login) opens
// three: the refused wrong-password probe, the login that sets, the test
// login.
func TestAdminRotationOpensOneConnection(t *testing.T) {
	e := newEnv(t)
	dials := countDials(t)
	c := ctx(t)
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategyAlternating} {
		t.Run(strategy, func(t *testing.T) {
			adminUser := testenv.Unique("rotary_padm_")
			admin := e.createUser(t, adminUser, adminGrants)
			r := New()
			t.Cleanup(func() { r.Close() })
			cfg := poolConfig(strategy)
			const workers, perWorker = 8, 3
			type acct struct{ cur, prev rotators.Value }
			accts := make([]*acct, workers)
			for i := range accts {
				u := testenv.Unique("rt_pool_")
				accts[i] = &acct{cur: e.createUser(t, u, nil, u+"_b")}
			}
			rotateAll := func(rounds int) {
				var wg sync.WaitGroup
				errs := make(chan error, workers)
				for _, a := range accts {
					wg.Go(func() {
						for range rounds {
							next, err := rotateWith(c, r, cfg, a.cur, a.prev, admin)
							if err != nil {
								errs <- err
								return
							}
							a.prev, a.cur = a.cur, next
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatalf("rotation: %v", err)
				}
			}
			rotateAll(1)
			// Fill the pool to its bound, so that the warm-up's luck does not
			// decide whether a rotation below opens an admin session.
			pc, _ := ParseConfig(cfg)
			var leases []*rotators.Lease[*session]
			for range rotators.DefaultPoolMaxOpen {
				l, err := r.adminSession(c, pc, admin)
				if err != nil {
					t.Fatal(err)
				}
				leases = append(leases, l)
			}
			for _, l := range leases {
				l.Release(nil)
			}
			st, ok := r.adminPools().Stats(poolKey(t, cfg, admin))
			if !ok || st.Open != rotators.DefaultPoolMaxOpen || st.Idle != st.Open {
				t.Fatalf("pool after the warm-up: %+v (%v); want %d sessions, all idle", st, ok, rotators.DefaultPoolMaxOpen)
			}
			before := e.waitSessions(t, adminUser, "the pool's sessions", func(ids []int64) bool { return len(ids) == st.Open })

			dials.Store(0)
			a := accts[0]
			for range 5 {
				next, err := rotateWith(c, r, cfg, a.cur, a.prev, admin)
				if err != nil {
					t.Fatalf("rotation: %v", err)
				}
				a.prev, a.cur = a.cur, next
			}
			if got := dials.Load(); got != 5 {
				t.Errorf("5 rotations one at a time opened %d connections; want 5 (the test logins)", got)
			}
			dials.Store(0)
			rotateAll(perWorker)
			if got, want := dials.Load(), int64(workers*perWorker); got != want {
				t.Errorf("%d rotations 8 at a time opened %d connections; want %d (the test logins)", want, got, want)
			}
			if after := e.sessions(t, adminUser); !slices.Equal(after, before) {
				t.Errorf("the admin's sessions changed from %v to %v; want the pooled ones kept", before, after)
			}
			for _, a := range accts {
				cu, _ := rotators.ParseDBCredentials(a.cur)
				if who, err := login(c, a.cur); err != nil || who != cu.Username {
					t.Errorf("login with the new password of %q: %q, %v", cu.Username, who, err)
				}
			}
		})
	}
	t.Run("single-user", func(t *testing.T) {
		r := New()
		t.Cleanup(func() { r.Close() })
		cur := e.createUser(t, testenv.Unique("rt_pool_su_"), nil)
		dials.Store(0)
		for range 3 {
			next, err := rotateWith(c, r, json.RawMessage(`{}`), cur, nil, nil)
			if err != nil {
				t.Fatalf("rotation: %v", err)
			}
			cur = next
		}
		if got := dials.Load(); got != 9 {
			t.Errorf("3 single-user rotations opened %d connections; want 9 (per rotation: the refused wrong-password probe, the login that sets, the test login)", got)
		}
		if r.adminPools().Len() != 0 {
			t.Errorf("single-user rotations opened an admin pool")
		}
	})
}

// TestAdminPoolRebuiltWhenAdminRotates: the admin secret is rotated
// (single-user: the admin changes its own password); the next rotation,
// handed the new admin value, closes the old pool's session on the server
// and works over a new one; the old admin password is refused by the
// server, and a rotation still handed it fails and leaves no pool.
func TestAdminPoolRebuiltWhenAdminRotates(t *testing.T) {
	e := newEnv(t)
	dials := countDials(t)
	c := ctx(t)
	adminUser := testenv.Unique("rotary_padm_")
	admin1 := e.createUser(t, adminUser, adminGrants)
	target := e.createUser(t, testenv.Unique("rt_pool_tg_"), nil)
	r := New()
	t.Cleanup(func() { r.Close() })
	cfg := poolConfig(rotators.StrategyAdmin)
	cur, err := rotateWith(c, r, cfg, target, nil, admin1)
	if err != nil {
		t.Fatalf("rotation with the first admin value: %v", err)
	}
	old := e.sessions(t, adminUser)
	if len(old) != 1 {
		t.Fatalf("admin sessions %v; want the one pooled session", old)
	}
	admin2, err := rotateWith(c, r, json.RawMessage(`{}`), admin1, nil, nil)
	if err != nil {
		t.Fatalf("rotate the admin secret: %v", err)
	}
	e.waitSessions(t, adminUser, "the pooled session", func(ids []int64) bool { return slices.Equal(ids, old) })

	dials.Store(0)
	cur, err = rotateWith(c, r, cfg, cur, nil, admin2)
	if err != nil {
		t.Fatalf("rotation with the new admin value: %v", err)
	}
	if got := dials.Load(); got != 2 {
		t.Errorf("the first rotation after the admin's opened %d connections; want 2 (a new admin session, the test login)", got)
	}
	e.waitSessions(t, adminUser, "one new session, not the old pool's", func(ids []int64) bool {
		return len(ids) == 1 && !slices.Contains(old, ids[0])
	})
	tu, _ := rotators.ParseDBCredentials(cur)
	if who, err := login(c, cur); err != nil || who != tu.Username {
		t.Errorf("login with the target's new password: %q, %v", who, err)
	}
	if _, err := login(c, admin1); !isAccessDenied(err) {
		t.Errorf("login with the old admin password = %v; want the server to refuse it", err)
	}
	_, err = rotateWith(c, r, cfg, cur, nil, admin1)
	if !isAccessDenied(err) {
		t.Fatalf("rotation with the old admin value = %v; want the server to refuse the login", err)
	}
	for _, v := range []rotators.Value{admin1, admin2} {
		if p := passwordOf(v); strings.Contains(err.Error(), p) {
			t.Errorf("the error leaks an admin password: %v", sensitive.Sanitize(err, sensitive.Bytes(p)))
		}
	}
	if n := r.adminPools().Len(); n != 0 {
		t.Errorf("%d pools open after the refused login; want none", n)
	}
	e.waitSessions(t, adminUser, "none", func(ids []int64) bool { return len(ids) == 0 })
}

func passwordOf(v rotators.Value) string {
	c, _ := rotators.ParseDBCredentials(v)
	return c.Password
}

// TestAdminPoolDroppedOnAuthFailure: the admin's password is changed
// behind rotary's back while the pool holds two sessions, one lent and
// one idle that the server then kills. The next rotation finds the idle
// one dead, logs in again, is refused, and drops the pool: the lent
// session is closed when it comes back. The control: before that, a
// session that comes back stays open in the pool.
func TestAdminPoolDroppedOnAuthFailure(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	adminUser := testenv.Unique("rotary_padm_")
	admin := e.createUser(t, adminUser, adminGrants)
	target := e.createUser(t, testenv.Unique("rt_pool_af_"), nil)
	r := &Rotator{Pool: rotators.PoolLimits{MaxOpen: 2, MaxIdle: 2}}
	t.Cleanup(func() { r.Close() })
	cfg := poolConfig(rotators.StrategyAdmin)
	pc, _ := ParseConfig(cfg)
	key := poolKey(t, cfg, admin)
	lend := func() *rotators.Lease[*session] {
		l, err := r.adminSession(c, pc, admin)
		if err != nil {
			t.Fatalf("lend an admin session: %v", err)
		}
		return l
	}
	a, b := lend(), lend()
	ida, idb := int64(a.S.id), int64(b.S.id)
	a.Release(nil)
	b.Release(nil)
	if st, _ := r.adminPools().Stats(key); st.Open != 2 || st.Idle != 2 {
		t.Fatalf("pool after two sessions came back: %+v; want 2 open, 2 idle", st)
	}
	held := lend()
	if !held.Reused || int64(held.S.id) != idb {
		t.Fatalf("lent a session that is not the last pooled one")
	}
	if _, err := e.root.Exec("SET PASSWORD FOR ?@'%' = PASSWORD(?)", adminUser, "changed-by-hand-"+testenv.Unique("")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.root.Exec("KILL ?", ida); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(t, adminUser, "only the lent session", func(ids []int64) bool { return slices.Equal(ids, []int64{idb}) })

	_, err := rotateWith(c, r, cfg, target, nil, admin)
	if !isAccessDenied(err) {
		t.Fatalf("rotation with an admin password the server no longer takes = %v; want its refusal", err)
	}
	if strings.Contains(err.Error(), passwordOf(admin)) {
		t.Errorf("the error leaks the admin password")
	}
	if _, ok := r.adminPools().Stats(key); ok {
		t.Errorf("the pool is still there after a refused login")
	}
	if err := held.S.conn.PingContext(c); err != nil {
		t.Fatalf("the lent session: %v", err)
	}
	held.Release(nil)
	e.waitSessions(t, adminUser, "none: the lent session closed when it came back", func(ids []int64) bool { return len(ids) == 0 })
}
