package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
)

// countingStore counts the metadata reads that reach the store, to tell
// cached reads from store reads.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	c.gets.Add(1)
	return c.Store.GetSecret(ctx, name)
}

// daemonB is a second daemon on the same PostgreSQL schema as b: its own
// pool, its own Service and read cache, and (with listen) its own change
// listener.
type daemonB struct {
	svc *secrets.Service
	st  *countingStore
	l   *postgres.Listener
}

func newDaemonB(t *testing.T, b *bundle, dsn string, listen bool, cfg postgres.ListenerConfig) *daemonB {
	t.Helper()
	pg, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	d := &daemonB{st: &countingStore{Store: pg}}
	scfg := secrets.Config{Store: d.st, Keys: b.km, Now: b.clock.Now, AuditKey: testenv.AuditKey(t, b.root)}
	if listen {
		d.l = pg.NewListener(cfg)
		scfg.Changes = d.l
	} else {
		scfg.ReadCacheTTL = time.Hour // what a stale read would need to end: b.clock never moves here
	}
	d.svc, err = secrets.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.l != nil {
		if err := d.l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.l.Stop)
		waitCond(t, 10*time.Second, "B's listener current", d.l.Current)
	}
	return d
}

// get reads name's current value on B ("" and the error when it fails).
func (d *daemonB) get(name string) (string, error) {
	v, err := d.svc.Get(ctx, secrets.GetParams{Name: name})
	if err != nil {
		return "", err
	}
	return string(v.Value.Reveal()), nil
}

// mustBeCached reads name twice on B and fails unless the second read
// was answered from the cache.
func (d *daemonB) mustBeCached(t *testing.T, name string) {
	t.Helper()
	// A listener is trusted once its first self-check has come back (and
	// while later ones do, within MaxLag): on a loaded machine that can
	// take a moment, so wait for a read answered from the cache.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := d.get(name); err != nil {
			t.Fatal(err)
		}
		n := d.st.gets.Load()
		if _, err := d.get(name); err != nil {
			t.Fatal(err)
		}
		got := d.st.gets.Load()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's read of %s reached the store (%d metadata reads, want %d): the cache is not in use and the test proves nothing", name, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCond polls cond (no fixed sleep: a millisecond between checks)
// until it holds, failing after d.
func waitCond(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// pgBundle is setup on PostgreSQL, with the schema's DSN for more daemons.
func pgBundle(t *testing.T) (*bundle, string, string) {
	t.Helper()
	dsn, schema := testenv.PostgresSchema(t)
	be := backend{"postgres", func(t *testing.T) (store.Store, func(t *testing.T) []byte) {
		st, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("postgres.Open: %v", err)
		}
		return st, func(t *testing.T) []byte { return dumpSchema(t, dsn, schema) }
	}}
	return setup(t, be, 0), dsn, schema
}

// TestOtherDaemonCacheInvalidated: two daemons on one PostgreSQL schema.
// Each write on A (put, a rotation's pending version and its promotion,
// delete, restore, purge and re-create) reaches B's cached read at once,
// through LISTEN/NOTIFY: B's listener stays current all along, so the new
// value is not the cache being bypassed. Negative control: a daemon
// without a listener keeps serving the stale value from its cache.
func TestOtherDaemonCacheInvalidated(t *testing.T) {
	t.Parallel()
	b, dsn, _ := pgBundle(t)
	B := newDaemonB(t, b, dsn, true, postgres.ListenerConfig{})
	C := newDaemonB(t, b, dsn, false, postgres.ListenerConfig{}) // notifications off

	const name = "hot/db"
	mustCreate(t, b, secrets.CreateParams{Name: name, Value: []byte("v1")})
	B.mustBeCached(t, name)
	C.mustBeCached(t, name)

	// seen waits until B reads want and returns how long it took.
	seen := func(what, want string) time.Duration {
		t.Helper()
		var got string
		var err error
		d := waitCond(t, 2*time.Second, fmt.Sprintf("%s: B reads %q (last read %q, %v)", what, want, got, err), func() bool {
			got, err = B.get(name)
			if want == "" {
				return errors.Is(err, secrets.ErrDeleted)
			}
			return got == want
		})
		if !B.l.Current() {
			t.Fatalf("%s: B's listener is not current; the read may have bypassed the cache", what)
		}
		return d
	}

	var lat []time.Duration
	for i := 2; i <= 31; i++ {
		v := fmt.Sprintf("v%d", i)
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: name, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, seen("put "+v, v))
		B.mustBeCached(t, name) // and B caches again once invalidated
	}
	slices.Sort(lat)
	t.Logf("B saw A's put after: min %s, median %s, max %s (%d rounds, polled every 1ms)", lat[0], lat[len(lat)/2], lat[len(lat)-1], len(lat))

	// The negative control, read after B has seen the notice: C, whose
	// cache has no feed, still answers the first value.
	if got, err := C.get(name); err != nil || got != "v1" {
		t.Errorf("C (notifications off) reads %q, %v; want the stale v1 (otherwise the test does not show that notices are what invalidates)", got, err)
	}
	if got := B.l.Stats().Changes; got < 30 {
		t.Errorf("B's listener got %d change notices, want at least 30", got)
	}

	// A rotation: the pending version, then its promotion, each in the
	// caller's transaction.
	var pending secrets.VersionInfo
	err := b.st.InTx(ctx, func(tx store.Ops) error {
		var err error
		pending, err = b.svc.PutTx(ctx, tx, secrets.PutParams{Name: name, Value: []byte("rotated"), Stages: []string{store.StagePending}, Reason: "scheduled"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitCond(t, 2*time.Second, "B sees the pending stage", func() bool {
		v, err := B.svc.Get(ctx, secrets.GetParams{Name: name, Stage: store.StagePending})
		return err == nil && v.Version == pending.Version
	})
	if err := b.st.InTx(ctx, func(tx store.Ops) error {
		return b.svc.PromoteTx(ctx, tx, secrets.PromoteParams{Name: name, Version: pending.Version, Reason: "scheduled"})
	}); err != nil {
		t.Fatal(err)
	}
	b.svc.Invalidate(name)
	seen("promote", "rotated")

	// Delete, restore, force delete and create again.
	if _, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: name}); err != nil {
		t.Fatal(err)
	}
	seen("delete", "")
	if _, err := b.svc.Restore(ctx, name); err != nil {
		t.Fatal(err)
	}
	seen("restore", "rotated")
	if _, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: name, Force: true}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 2*time.Second, "B sees the purge", func() bool {
		_, err := B.get(name)
		return errors.Is(err, secrets.ErrNotFound)
	})
	mustCreate(t, b, secrets.CreateParams{Name: name, Value: []byte("reborn")})
	seen("re-create", "reborn")
	if got, err := C.get(name); err != nil || got != "v1" {
		t.Errorf("C (notifications off) reads %q, %v at the end; want the stale v1", got, err)
	}
}

// TestOtherDaemonCacheResetOnReconnect: B's listening backend is killed
// (pg_terminate_backend) while A writes one secret. B's listener comes
// back, and B's whole cache is dropped, the secret A did not touch
// included (notices sent while it was away are lost, so B cannot know
// which secrets changed); B reads A's write and caches again.
func TestOtherDaemonCacheResetOnReconnect(t *testing.T) {
	t.Parallel()
	b, dsn, schema := pgBundle(t)
	B := newDaemonB(t, b, dsn, true, postgres.ListenerConfig{ReconnectMin: 10 * time.Millisecond})
	mustCreate(t, b, secrets.CreateParams{Name: "app/written", Value: []byte("x1")})
	mustCreate(t, b, secrets.CreateParams{Name: "app/untouched", Value: []byte("y1")})
	B.mustBeCached(t, "app/written")
	B.mustBeCached(t, "app/untouched")
	resets := B.l.Stats().Resets

	var pids []int
	waitCond(t, 10*time.Second, "B's LISTEN backend", func() bool { pids = testenv.PostgresListenerPIDs(t, schema); return len(pids) == 1 })
	var ok bool
	if err := testenv.WaitPostgres(t).QueryRow(`SELECT pg_terminate_backend($1)`, pids[0]).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pids[0], ok, err)
	}
	if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "app/written", Value: []byte("x2")}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 10*time.Second, "B's listener back and reset", func() bool {
		return B.l.Stats().Resets > resets && B.l.Current()
	})
	n := B.st.gets.Load()
	if got, err := B.get("app/untouched"); err != nil || got != "y1" {
		t.Fatalf("B reads app/untouched = %q, %v; want y1", got, err)
	}
	if B.st.gets.Load() == n {
		t.Errorf("B answered app/untouched from a cache kept across the lost connection; want the whole cache dropped")
	}
	waitCond(t, 2*time.Second, "B reads x2", func() bool { got, _ := B.get("app/written"); return got == "x2" })
	B.mustBeCached(t, "app/untouched")
	B.mustBeCached(t, "app/written")
}

// TestOtherDaemonCacheBypassedWhileDown: while B's listener cannot
// connect, B answers from the store, not the cache (it cannot know what
// it misses). Negative control: the same reads with the listener up are
// answered from the cache.
func TestOtherDaemonCacheBypassedWhileDown(t *testing.T) {
	t.Parallel()
	b, dsn, _ := pgBundle(t)
	// A listener whose connection never succeeds: a port nobody listens on.
	bad := "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1"
	B := &daemonB{}
	pg, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	B.st = &countingStore{Store: pg}
	B.l = pg.NewListener(postgres.ListenerConfig{DSN: bad, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	B.svc, err = secrets.New(secrets.Config{Store: B.st, Keys: b.km, Now: b.clock.Now, AuditKey: testenv.AuditKey(t, b.root), Changes: B.l})
	if err != nil {
		t.Fatal(err)
	}
	if err := B.l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(B.l.Stop)

	mustCreate(t, b, secrets.CreateParams{Name: "app/down", Value: []byte("d1")})
	for i := range 3 {
		n := B.st.gets.Load()
		if got, err := B.get("app/down"); err != nil || got != "d1" {
			t.Fatalf("read %d on B = %q, %v; want d1", i, got, err)
		}
		if B.st.gets.Load() == n {
			t.Fatalf("read %d on B came from the cache while its listener is down", i)
		}
	}
	if B.l.Current() {
		t.Fatal("listener current without a connection")
	}
	// Negative control: a daemon whose listener is up caches.
	newDaemonB(t, b, dsn, true, postgres.ListenerConfig{}).mustBeCached(t, "app/down")
}

// silentStore is a store whose transactions skip NotifySecretChanged:
// what a write costs without the notice.
type silentStore struct{ store.Store }

func (s silentStore) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	return s.Store.InTx(ctx, func(tx store.Ops) error { return fn(silentOps{tx}) })
}

type silentOps struct{ store.Ops }

func (silentOps) NotifySecretChanged(context.Context, string) error { return nil }

// BenchmarkPutPostgres: concurrent puts (8 per core, each to its own
// secret) on PostgreSQL, with and without the change notice in each
// transaction. PostgreSQL serializes the commits of transactions that
// NOTIFY; today puts also serialize on the audit head row.
func BenchmarkPutPostgres(b *testing.B) {
	for _, notify := range []bool{false, true} {
		b.Run("notify="+strconv.FormatBool(notify), func(b *testing.B) {
			dsn, _ := testenv.PostgresSchema(b)
			pg, err := postgres.Open(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { pg.Close() })
			var st store.Store = pg
			if !notify {
				st = silentStore{pg}
			}
			root := newRoot()
			km, err := kms.New(ctx, kms.Config{Store: secrets.KeyStore(pg), Root: sensitive.Bytes(root)})
			if err != nil {
				b.Fatal(err)
			}
			if err := km.EnsureRegion(ctx, "default"); err != nil {
				b.Fatal(err)
			}
			svc, err := secrets.New(secrets.Config{Store: st, Keys: km, AuditKey: testenv.AuditKey(b, root)})
			if err != nil {
				b.Fatal(err)
			}
			const n = 64
			for i := range n {
				if _, err := svc.Create(ctx, secrets.CreateParams{Name: fmt.Sprintf("bench/%d", i), Value: []byte("v")}); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				name := fmt.Sprintf("bench/%d", next.Add(1)%n)
				for pb.Next() {
					if _, err := svc.Put(ctx, secrets.PutParams{Name: name, Value: []byte("v")}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
