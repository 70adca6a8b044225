package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// countingDialer counts every TCP connection the rotator opens (a login,
// a refused login, a pooled admin session): set as testDialer.
type countingDialer struct{ n atomic.Int64 }

func (d *countingDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *countingDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *countingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.n.Add(1)
	return (&net.Dialer{}).DialContext(ctx, network, address)
}

func countDials(t *testing.T) *countingDialer {
	t.Helper()
	d := &countingDialer{}
	testDialer = d
	t.Cleanup(func() { testDialer = nil })
	return d
}

// rotateOnce runs Create → Set → Test → Finish and returns the new
// current value.
func rotateOnce(ctx context.Context, r *Rotator, cfg json.RawMessage, current, previous, admin rotators.Value) (rotators.Value, error) {
	resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: current, Previous: previous})
	if err != nil {
		return nil, err
	}
	if err := r.Set(ctx, rotators.SetRequest{Config: cfg, Current: current, Pending: resp.Value, Admin: admin}); err != nil {
		return nil, err
	}
	if err := r.Test(ctx, rotators.TestRequest{Config: cfg, Value: resp.Value}); err != nil {
		return nil, err
	}
	if err := r.Finish(ctx, rotators.FinishRequest{Config: cfg, Current: resp.Value, Previous: current, Admin: admin}); err != nil {
		return nil, err
	}
	return resp.Value, nil
}

// backends returns the pids of role's sessions on the server.
func (h *harness) backends(t *testing.T, role string) []int {
	t.Helper()
	rows, err := h.db.Query(`SELECT pid FROM pg_stat_activity WHERE usename = $1 ORDER BY pid`, role)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		out = append(out, pid)
	}
	return out
}

// waitBackends waits until role's sessions on the server satisfy ok.
func (h *harness) waitBackends(t *testing.T, role string, what string, ok func([]int) bool) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.backends(t, role)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions of %q are %v; want %s", role, got, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func poolKey(t *testing.T, cfg json.RawMessage, admin rotators.Value) string {
	t.Helper()
	c, err := parseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseAdmin(admin)
	if err != nil {
		t.Fatal(err)
	}
	return rotators.AdminPoolKey(c, a)
}

func userOf(v rotators.Value) string {
	c, _ := rotators.ParseDBCredentials(v)
	return c.Username
}

// TestAdminRotationOpensOneConnection: after a warm-up, a rotation with
// the admin or alternating strategy opens exactly one connection (the
// test login with the new password), one after another and 8 at a time;
// the admin's sessions on the server are the same backends throughout,
// never more than the pool's bound. Single-user (the control: the counter
// counts every login) opens three: the refused login that proves the
// server checks the role's password, the login as the role that sets it,
// and the test login.
func TestAdminRotationOpensOneConnection(t *testing.T) {
	h := newHarness(t)
	dials := countDials(t)
	ctx := t.Context()
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategyAlternating} {
		t.Run(strategy, func(t *testing.T) {
			r := New()
			t.Cleanup(func() { r.Close() })
			const workers, perWorker = 8, 3
			type acct struct{ cur, prev rotators.Value }
			accts := make([]*acct, workers)
			for i := range accts {
				user := testenv.Unique("rt_pool_")
				accts[i] = &acct{cur: h.NewAccount(t, user, user+"_b")}
			}
			cfg := h.Config(strategy, "pool-admin", "")
			rotateAll := func(rounds int) {
				var wg sync.WaitGroup
				errs := make(chan error, workers)
				for _, a := range accts {
					wg.Go(func() {
						for range rounds {
							next, err := rotateOnce(ctx, r, cfg, a.cur, a.prev, h.adminValue)
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
			rotateAll(1) // warm-up: the pool opens sessions (and alternating creates each _b)
			// The pool at its bound: lend every session it may open at once
			// and give them back, so that how many the warm-up happened to
			// need does not decide whether the rotations below open one.
			dbcfg, _ := parseConfig(cfg)
			adm, _ := parseAdmin(h.adminValue)
			var leases []*rotators.Lease[*session]
			for range rotators.DefaultPoolMaxOpen {
				l, err := r.adminSession(ctx, dbcfg, adm)
				if err != nil {
					t.Fatal(err)
				}
				leases = append(leases, l)
			}
			for _, l := range leases {
				l.Release(nil)
			}
			key := poolKey(t, cfg, h.adminValue)
			st, ok := r.adminPools().Stats(key)
			if !ok || st.Open != rotators.DefaultPoolMaxOpen || st.Idle != st.Open {
				t.Fatalf("after the warm-up the pool is %+v (%v); want %d sessions, all idle", st, ok, rotators.DefaultPoolMaxOpen)
			}
			before := h.waitBackends(t, h.adminName, "the pool's sessions", func(pids []int) bool { return len(pids) == st.Open })

			dials.n.Store(0)
			for _, a := range accts[:1] { // one at a time
				for range 5 {
					next, err := rotateOnce(ctx, r, cfg, a.cur, a.prev, h.adminValue)
					if err != nil {
						t.Fatalf("rotation: %v", err)
					}
					a.prev, a.cur = a.cur, next
				}
			}
			if got := dials.n.Load(); got != 5 {
				t.Errorf("5 rotations one at a time opened %d connections; want 5 (the test logins)", got)
			}
			dials.n.Store(0)
			rotateAll(perWorker)
			if got, want := dials.n.Load(), int64(workers*perWorker); got != want {
				t.Errorf("%d rotations 8 at a time opened %d connections; want %d (the test logins)", want, got, want)
			}
			after := h.backends(t, h.adminName)
			if !slices.Equal(after, before) {
				t.Errorf("the admin's sessions changed from %v to %v; want the pooled backends kept", before, after)
			}
			for _, a := range accts { // every new password works, as the server checks it
				if who, err := h.login(ctx, a.cur); err != nil || who != userOf(a.cur) {
					t.Errorf("login with the new password of %q: %q, %v", userOf(a.cur), who, err)
				}
			}
		})
	}
	t.Run("single-user", func(t *testing.T) {
		r := New()
		t.Cleanup(func() { r.Close() })
		cur := h.NewAccount(t, testenv.Unique("rt_pool_su_"))
		cfg := h.Config(rotators.StrategySingleUser, "", "")
		dials.n.Store(0)
		for range 3 {
			next, err := rotateOnce(ctx, r, cfg, cur, nil, nil)
			if err != nil {
				t.Fatalf("rotation: %v", err)
			}
			cur = next
		}
		if got := dials.n.Load(); got != 9 {
			t.Errorf("3 single-user rotations opened %d connections; want 9 (per rotation: the refused wrong-password probe, the login that sets, the test login)", got)
		}
		if r.adminPools().Len() != 0 {
			t.Errorf("single-user rotations opened an admin pool")
		}
	})
}

// newRotatableAdmin makes an admin role like the harness's (CREATEROLE,
// pg_signal_backend, a member of rotary_pwcheck so that the server checks
// its password) that the test may rotate and break.
func (h *harness) newRotatableAdmin(t *testing.T) (string, rotators.Value) {
	t.Helper()
	name := testenv.Unique("rt_padm_")
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE ROLE " + pq.QuoteIdentifier(name) + " LOGIN CREATEROLE PASSWORD " + pq.QuoteLiteral(string(pw.Reveal())) + " IN ROLE pg_signal_backend",
		"GRANT rotary_pwcheck TO " + pq.QuoteIdentifier(name) + " WITH ADMIN OPTION",
	} {
		if _, err := h.db.Exec(q); err != nil {
			t.Fatalf("create the admin: %v", sensitive.Sanitize(err, pw))
		}
	}
	t.Cleanup(func() { h.dropRoles(t, name) })
	return name, h.value(name, pw)
}

// TestAdminPoolRebuiltWhenAdminRotates: the admin secret itself is
// rotated (single-user, the admin changes its own password). The next
// rotation, handed the new admin value, drops the pool opened with the
// old one (its sessions end on the server) and works over a new one; the
// old admin password is refused by the server.
func TestAdminPoolRebuiltWhenAdminRotates(t *testing.T) {
	h := newHarness(t)
	dials := countDials(t)
	ctx := t.Context()
	adminName, admin1 := h.newRotatableAdmin(t)
	target := h.newAccountFor(t, testenv.Unique("rt_pool_tg_"), adminName)
	r := New()
	t.Cleanup(func() { r.Close() })
	cfg := h.Config(rotators.StrategyAdmin, "pool-admin", "")
	cur, err := rotateOnce(ctx, r, cfg, target, nil, admin1)
	if err != nil {
		t.Fatalf("rotation with the first admin value: %v", err)
	}
	old := h.backends(t, adminName)
	if len(old) != 1 {
		t.Fatalf("the admin has sessions %v; want the one pooled session", old)
	}

	// Rotate the admin secret (the same rotator, as the daemon would).
	admin2, err := rotateOnce(ctx, r, h.Config(rotators.StrategySingleUser, "", ""), admin1, nil, nil)
	if err != nil {
		t.Fatalf("rotate the admin secret: %v", err)
	}
	// The sessions of the admin's own rotation end; the pooled one stays
	// (nothing used the pool yet).
	h.waitBackends(t, adminName, "the pooled session", func(pids []int) bool { return slices.Equal(pids, old) })

	dials.n.Store(0)
	cur, err = rotateOnce(ctx, r, cfg, cur, nil, admin2)
	if err != nil {
		t.Fatalf("rotation with the new admin value: %v", err)
	}
	if got := dials.n.Load(); got != 2 {
		t.Errorf("the first rotation after the admin's opened %d connections; want 2 (a new admin session, the test login)", got)
	}
	h.waitBackends(t, adminName, "one new session, none of the old pool's", func(pids []int) bool {
		return len(pids) == 1 && !slices.Contains(old, pids[0])
	})
	if st, ok := r.adminPools().Stats(poolKey(t, cfg, admin2)); !ok || st.Open != 1 {
		t.Errorf("the pool is %+v (%v); want one session", st, ok)
	}
	if who, err := h.login(ctx, cur); err != nil || who != userOf(cur) {
		t.Errorf("login with the target's new password: %q, %v", who, err)
	}
	// Negative control: the old admin password no longer logs in.
	_, err = h.login(ctx, admin1)
	if !isAuthFailure(err) {
		t.Errorf("login with the old admin password = %v; want the server to refuse it", err)
	}
	// The old admin value is refused too when a rotation is handed it: the
	// pool is never used for a credential other than its own.
	dials.n.Store(0)
	_, err = rotateOnce(ctx, r, cfg, cur, nil, admin1)
	if err == nil || !isAuthFailure(err) {
		t.Fatalf("rotation with the old admin value = %v; want the server to refuse the login", err)
	}
	if strings.Contains(err.Error(), password(admin1)) || strings.Contains(err.Error(), password(admin2)) {
		t.Errorf("the error leaks an admin password: %v", sensitive.Sanitize(err, sensitive.Bytes(password(admin1)), sensitive.Bytes(password(admin2))))
	}
	if r.adminPools().Len() != 0 {
		t.Errorf("a pool is still open after the refused login")
	}
	h.waitBackends(t, adminName, "none (the pool of the new value was dropped for the old one's)", func(pids []int) bool { return len(pids) == 0 })
}

func password(v rotators.Value) string {
	c, _ := rotators.ParseDBCredentials(v)
	return c.Password
}

// newAccountFor is NewAccount with admin on PostgreSQL 16+ given ADMIN
// OPTION on the role (on 15 CREATEROLE is enough).
func (h *harness) newAccountFor(t *testing.T, username, admin string) rotators.Value {
	t.Helper()
	v := h.NewAccount(t, username)
	if h.v16 {
		if _, err := h.db.Exec("GRANT " + pq.QuoteIdentifier(username) + " TO " + pq.QuoteIdentifier(admin) + " WITH ADMIN OPTION"); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// TestAdminPoolDroppedOnAuthFailure: the admin's password is changed
// behind rotary's back while the pool holds two sessions (one idle, one
// lent). The idle one is ended by the server; the next rotation finds it
// dead, logs in again with the stored admin value, is refused, and drops
// the pool: the lent session is closed when it comes back instead of
// being kept for later rotations. The control: without the refusal, a
// lent session that comes back stays open in the pool.
func TestAdminPoolDroppedOnAuthFailure(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	adminName, admin := h.newRotatableAdmin(t)
	target := h.newAccountFor(t, testenv.Unique("rt_pool_af_"), adminName)
	r := New()
	r.Pool = rotators.PoolLimits{MaxOpen: 2, MaxIdle: 2}
	t.Cleanup(func() { r.Close() })
	cfg := h.Config(rotators.StrategyAdmin, "pool-admin", "")
	dbcfg, _ := parseConfig(cfg)
	adm, _ := parseAdmin(admin)
	key := poolKey(t, cfg, admin)
	pidOf := func(l *rotators.Lease[*session]) int {
		var pid int
		if err := l.S.conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	lend := func() *rotators.Lease[*session] {
		l, err := r.adminSession(ctx, dbcfg, adm)
		if err != nil {
			t.Fatalf("lend an admin session: %v", err)
		}
		return l
	}

	// Control: two sessions lent and given back both stay.
	a, b := lend(), lend()
	pa, pb := pidOf(a), pidOf(b)
	a.Release(nil)
	b.Release(nil)
	if st, _ := r.adminPools().Stats(key); st.Open != 2 || st.Idle != 2 {
		t.Fatalf("pool after two sessions came back: %+v; want 2 open, 2 idle", st)
	}
	if got := h.backends(t, adminName); !slices.Equal(got, sortedInts(pa, pb)) {
		t.Fatalf("admin sessions %v; want %v", got, sortedInts(pa, pb))
	}

	// Lend one (b: the last given back is lent first) and keep it; a stays idle.
	held := lend()
	if !held.Reused || pidOf(held) != pb {
		t.Fatalf("lent a session that is not the pooled one")
	}
	// Behind rotary's back: a new admin password, and the idle session ends.
	if _, err := h.db.Exec("ALTER ROLE " + pq.QuoteIdentifier(adminName) + " PASSWORD " + pq.QuoteLiteral("changed-by-hand-"+testenv.Unique(""))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec(`SELECT pg_terminate_backend($1)`, pa); err != nil {
		t.Fatal(err)
	}
	h.waitBackends(t, adminName, "only the lent session", func(pids []int) bool { return slices.Equal(pids, []int{pb}) })

	_, err := rotateOnce(ctx, r, cfg, target, nil, admin)
	if !isAuthFailure(err) {
		t.Fatalf("rotation with an admin password the server no longer takes = %v; want its refusal", err)
	}
	if strings.Contains(err.Error(), password(admin)) {
		t.Errorf("the error leaks the admin password")
	}
	if _, ok := r.adminPools().Stats(key); ok {
		t.Errorf("the pool is still there after a refused login")
	}
	// The lent session still works (PostgreSQL does not end sessions on a
	// password change), but it goes back to a dropped pool: closed.
	if _, err := held.S.conn.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the lent session: %v", err)
	}
	held.Release(nil)
	h.waitBackends(t, adminName, "none: the lent session closed when it came back", func(pids []int) bool { return len(pids) == 0 })
	if r.adminPools().Len() != 0 {
		t.Errorf("%d pools open; want none", r.adminPools().Len())
	}
}

func sortedInts(v ...int) []int {
	slices.Sort(v)
	return v
}

// TestAdminPoolClose: Close ends the pooled sessions on the server, a
// session lent at that moment ends when it comes back, and the rotator
// refuses admin work after.
func TestAdminPoolClose(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	adminName, admin := h.newRotatableAdmin(t)
	target := h.newAccountFor(t, testenv.Unique("rt_pool_cl_"), adminName)
	r := New()
	cfg := h.Config(rotators.StrategyAdmin, "pool-admin", "")
	cur, err := rotateOnce(ctx, r, cfg, target, nil, admin)
	if err != nil {
		t.Fatal(err)
	}
	dbcfg, _ := parseConfig(cfg)
	adm, _ := parseAdmin(admin)
	held, err := r.adminSession(ctx, dbcfg, adm) // the pooled one
	if err != nil {
		t.Fatal(err)
	}
	other, err := r.adminSession(ctx, dbcfg, adm) // a second, opened now
	if err != nil {
		t.Fatal(err)
	}
	other.Release(nil)
	if n := len(h.backends(t, adminName)); n != 2 {
		t.Fatalf("admin sessions: %d; want 2", n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitBackends(t, adminName, "the lent one only", func(pids []int) bool { return len(pids) == 1 })
	held.Release(nil)
	h.waitBackends(t, adminName, "none", func(pids []int) bool { return len(pids) == 0 })
	if _, err := rotateOnce(ctx, r, cfg, cur, nil, admin); !errors.Is(err, rotators.ErrPoolClosed) {
		t.Errorf("rotation after Close = %v; want ErrPoolClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestAdminPoolReplacesEndedSessions: the server ends every pooled admin
// session (pg_terminate_backend, as a restart or an idle timeout would);
// the next rotation finds them dead when it checks them, closes them and
// logs in again: it works, with one admin login more.
func TestAdminPoolReplacesEndedSessions(t *testing.T) {
	h := newHarness(t)
	dials := countDials(t)
	ctx := t.Context()
	adminName, admin := h.newRotatableAdmin(t)
	cur := h.newAccountFor(t, testenv.Unique("rt_pool_end_"), adminName)
	r := New()
	t.Cleanup(func() { r.Close() })
	cfg := h.Config(rotators.StrategyAdmin, "pool-admin", "")
	cur, err := rotateOnce(ctx, r, cfg, cur, nil, admin)
	if err != nil {
		t.Fatal(err)
	}
	old := h.backends(t, adminName)
	if _, err := h.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, adminName); err != nil {
		t.Fatal(err)
	}
	h.waitBackends(t, adminName, "none", func(pids []int) bool { return len(pids) == 0 })
	dials.n.Store(0)
	if cur, err = rotateOnce(ctx, r, cfg, cur, nil, admin); err != nil {
		t.Fatalf("rotation after the server ended the pooled session: %v", err)
	}
	if got := dials.n.Load(); got != 2 {
		t.Errorf("the rotation opened %d connections; want 2 (a new admin session, the test login)", got)
	}
	if got := h.backends(t, adminName); len(got) != 1 || slices.Contains(old, got[0]) {
		t.Errorf("admin sessions %v; want one new one (the ended ones were %v)", got, old)
	}
	if who, err := h.login(ctx, cur); err != nil || who != userOf(cur) {
		t.Errorf("login with the new password: %q, %v", who, err)
	}
}

// freezingProxy forwards TCP connections to target; freeze makes every
// connection open at that moment stop carrying bytes (as a network cut
// that drops packets does) while new ones still work.
type freezingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	gen    int
	frozen chan struct{} // closed at cleanup: frozen pumps end
	limit  int           // connections accepted before freeze have gen < limit
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, target: target, frozen: make(chan struct{}), limit: -1}
	t.Cleanup(func() { ln.Close(); close(p.frozen) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			gen := p.gen
			p.gen++
			p.mu.Unlock()
			go p.serve(c, gen)
		}
	}()
	return p
}

func (p *freezingProxy) isFrozen(gen int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return gen < p.limit
}

func (p *freezingProxy) freeze() {
	p.mu.Lock()
	p.limit = p.gen
	p.mu.Unlock()
}

func (p *freezingProxy) serve(c net.Conn, gen int) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	pump := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if p.isFrozen(gen) {
					<-p.frozen // the bytes go nowhere, the connection stays open
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	done := make(chan struct{}, 2)
	go func() { pump(s, c); done <- struct{}{} }()
	go func() { pump(c, s); done <- struct{}{} }()
	<-done
}

// TestAdminPoolFrozenSession: the pooled admin session's connection stops
// carrying bytes (a network cut that drops packets). The check before
// reuse gives up after the config's connect timeout, as a new connection
// would, and the rotation goes on over a new session instead of hanging
// until its context ends.
func TestAdminPoolFrozenSession(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	adminName, admin := h.newRotatableAdmin(t)
	proxy := newFreezingProxy(t, net.JoinHostPort(h.host, strconv.Itoa(h.port)))
	var a map[string]any
	_ = json.Unmarshal(admin.Reveal(), &a)
	a["port"] = proxy.ln.Addr().(*net.TCPAddr).Port
	viaProxy, _ := json.Marshal(a)
	admin = rotators.Value(viaProxy)
	cur := h.newAccountFor(t, testenv.Unique("rt_pool_frz_"), adminName)
	r := New()
	t.Cleanup(func() { r.Close() })
	cfg := json.RawMessage(`{"strategy":"admin","admin_secret":"pool-admin","connect_timeout":"1s"}`)
	cur, err := rotateOnce(ctx, r, cfg, cur, nil, admin)
	if err != nil {
		t.Fatal(err)
	}
	proxy.freeze()
	start := time.Now()
	cur, err = rotateOnce(ctx, r, cfg, cur, nil, admin)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("rotation after the pooled session froze: %v (after %v)", err, took)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("the rotation took %v; want about the 1s connect timeout (the frozen session given up on), far below the 30s context", took)
	}
	if who, err := h.login(ctx, cur); err != nil || who != userOf(cur) {
		t.Errorf("login with the new password: %q, %v", who, err)
	}
}
