package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
)

// recorder is a Listener subscriber that keeps what it was handed and
// wakes waiters on every call.
type recorder struct {
	mu     sync.Mutex
	names  []string
	resets int
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{})} }

func (r *recorder) changed(name string) {
	r.mu.Lock()
	r.names = append(r.names, name)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.resets++
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.names, name)
}

// waitFor waits, up to 10 s, until name has been handed over.
func (r *recorder) waitFor(t *testing.T, name string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok, wake := slices.Contains(r.names, name), r.wake
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-timeout:
			t.Fatalf("notice %q not received within 10s (got %q)", name, r.names)
		}
	}
}

// eventually polls cond until it holds, failing after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func startListener(t *testing.T, st *postgres.Store, cfg postgres.ListenerConfig) (*postgres.Listener, *recorder) {
	t.Helper()
	l := st.NewListener(cfg)
	rec := newRecorder()
	l.Subscribe(rec.changed, rec.reset)
	if l.Current() {
		t.Fatal("Current() before Start = true, want false")
	}
	if err := l.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(l.Stop)
	eventually(t, 10*time.Second, "listener current after Start", l.Current)
	return l, rec
}

// TestListenerDeliversOnCommit: a notice reaches every listener of the
// schema when its transaction commits, not before, never after a
// rollback, and never reaches another schema's listeners.
func TestListenerDeliversOnCommit(t *testing.T) {
	ctx := t.Context()
	_, dsn := freshSchema(t)
	st := open(t, dsn)
	_, rec := startListener(t, st, postgres.ListenerConfig{})
	_, rec2 := startListener(t, open(t, dsn), postgres.ListenerConfig{}) // a second daemon

	const name = "app/a_b+c=d.e@f-g"
	if err := st.InTx(ctx, func(tx store.Ops) error { return tx.NotifySecretChanged(ctx, name) }); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, name)
	rec2.waitFor(t, name)

	// Inside a transaction: held until commit. A marker sent outside
	// meanwhile arrives first, and the notice is not there yet.
	err := st.InTx(ctx, func(tx store.Ops) error {
		if err := tx.NotifySecretChanged(ctx, "app/in-tx"); err != nil {
			return err
		}
		if err := st.NotifySecretChanged(ctx, "app/marker"); err != nil {
			return err
		}
		rec.waitFor(t, "app/marker")
		if rec.has("app/in-tx") {
			t.Errorf("notice of an uncommitted transaction delivered")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "app/in-tx")

	// Rolled back: never delivered. Notices arrive in commit order, so
	// once the next one is in, the rolled-back one would have been too.
	errBoom := errors.New("boom")
	if err := st.InTx(ctx, func(tx store.Ops) error {
		if err := tx.NotifySecretChanged(ctx, "app/rolled-back"); err != nil {
			return err
		}
		return errBoom
	}); !errors.Is(err, errBoom) {
		t.Fatalf("InTx = %v, want boom", err)
	}
	// Another schema's notice: on its own channel.
	_, otherDSN := freshSchema(t)
	if err := open(t, otherDSN).NotifySecretChanged(ctx, "other/schema"); err != nil {
		t.Fatal(err)
	}
	if err := st.NotifySecretChanged(ctx, "app/after"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "app/after")
	if rec.has("app/rolled-back") {
		t.Errorf("notice of a rolled-back transaction delivered")
	}
	if rec.has("other/schema") {
		t.Errorf("another schema's notice delivered")
	}
	// Negative control for the two checks above: the same notices,
	// committed on this schema, do arrive.
	if err := st.NotifySecretChanged(ctx, "other/schema"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "other/schema")
}

// TestListenerTerminatedResets: when the listening backend is killed
// (pg_terminate_backend), the listener logs the loss, connects again,
// tells its subscribers to forget everything, and delivers again.
func TestListenerTerminatedResets(t *testing.T) {
	ctx := t.Context()
	schema, dsn := freshSchema(t)
	st := open(t, dsn)
	var logs syncBuf
	l, rec := startListener(t, st, postgres.ListenerConfig{
		ReconnectMin: 10 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	before := l.Stats()
	if before.Resets != 1 || rec.resets != 1 {
		t.Fatalf("resets after Start = %d (subscriber %d), want 1: the first LISTEN resets", before.Resets, rec.resets)
	}
	var pids []int
	eventually(t, 10*time.Second, "one LISTEN backend", func() bool { pids = testenv.PostgresListenerPIDs(t, schema); return len(pids) == 1 })
	var ok bool
	if err := admin(t).QueryRow(`SELECT pg_terminate_backend($1)`, pids[0]).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pids[0], ok, err)
	}
	eventually(t, 10*time.Second, "reset after reconnect", func() bool { return l.Stats().Resets > before.Resets && l.Current() })
	rec.mu.Lock()
	resets := rec.resets
	rec.mu.Unlock()
	if resets < 2 {
		t.Errorf("subscriber resets = %d, want 2 (start, reconnect)", resets)
	}
	if !bytes.Contains(logs.Bytes(), []byte("connection lost")) {
		t.Errorf("log does not tell of the lost connection:\n%s", logs.Bytes())
	}
	if after := testenv.PostgresListenerPIDs(t, schema); len(after) != 1 || after[0] == pids[0] {
		t.Errorf("LISTEN backends after reconnect = %v, want one other than %d", after, pids[0])
	}
	if err := st.NotifySecretChanged(ctx, "after/reconnect"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "after/reconnect")
}

// TestListenerDownOrStalledIsNotCurrent takes the listening connection
// through a proxy the test owns. Cut: Current turns false, notices sent
// meanwhile are lost, and on return the subscribers are reset. Stalled
// (the connection stays open but nothing comes through, as with a dead
// peer): no disconnect is seen, yet Current turns false within MaxLag
// because the listener's own check does not come back; once traffic
// flows again it is current with no reset, and the held notice arrives.
func TestListenerDownOrStalledIsNotCurrent(t *testing.T) {
	ctx := t.Context()
	_, dsn := freshSchema(t)
	st := open(t, dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewProxy(t, u.Host)
	u.Host = p.Addr()
	const maxLag = 200 * time.Millisecond
	l, rec := startListener(t, st, postgres.ListenerConfig{
		DSN: u.String(), MaxLag: maxLag, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 20 * time.Millisecond,
	})

	// Stalled.
	p.SetStalled(true)
	stalledAt := time.Now()
	eventually(t, 10*time.Second, "not current while stalled", func() bool { return !l.Current() })
	if d := time.Since(stalledAt); d > 5*maxLag {
		t.Errorf("still current %s after the stall, want about MaxLag %s", d, maxLag)
	}
	if !l.Stats().Connected {
		t.Errorf("Stats().Connected = false; the stall should not look like a disconnect (the check is what caught it)")
	}
	if err := st.NotifySecretChanged(ctx, "held/by-stall"); err != nil {
		t.Fatal(err)
	}
	resets := l.Stats().Resets
	p.SetStalled(false)
	rec.waitFor(t, "held/by-stall")
	eventually(t, 10*time.Second, "current after the stall", l.Current)
	if got := l.Stats().Resets; got != resets {
		t.Errorf("resets after a stall = %d, want %d (the connection survived)", got, resets)
	}

	// Cut.
	p.SetDown(true)
	eventually(t, 10*time.Second, "not current while cut", func() bool { return !l.Current() && !l.Stats().Connected })
	if err := st.NotifySecretChanged(ctx, "missed/while-down"); err != nil {
		t.Fatal(err)
	}
	if l.Current() {
		t.Errorf("current while the connection is cut")
	}
	p.SetDown(false)
	eventually(t, 10*time.Second, "current after the cut", func() bool { return l.Current() && l.Stats().Resets > resets })
	if err := st.NotifySecretChanged(ctx, "after/cut"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "after/cut")
	if rec.has("missed/while-down") {
		t.Errorf("a notice sent while cut arrived; the reset would not be needed and this test proves nothing")
	}
}

// TestListenerStop: Stop is idempotent, and a stopped listener is not
// current.
func TestListenerStop(t *testing.T) {
	_, dsn := freshSchema(t)
	l, _ := startListener(t, open(t, dsn), postgres.ListenerConfig{})
	l.Stop()
	l.Stop()
	if l.Current() {
		t.Errorf("Current() after Stop = true")
	}
	if err := l.Start(context.Background()); err == nil {
		t.Errorf("Start after Start/Stop = nil, want an error")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// BenchmarkNotifyDelivery: a transaction that calls NotifySecretChanged
// commits, and the time until the listener has handed the notice to its
// subscriber (the read cache's invalidation) is measured from InTx's
// return ("deliver-ns/op"), which waits for the notice to be sent.
func BenchmarkNotifyDelivery(b *testing.B) {
	ctx := b.Context()
	_, dsn := freshSchema(b)
	st := open(b, dsn)
	l := st.NewListener(postgres.ListenerConfig{})
	got := make(chan string, 1)
	l.Subscribe(func(name string) { got <- name }, func() {})
	if err := l.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Stop)
	for !l.Current() {
		time.Sleep(time.Millisecond)
	}
	var wait time.Duration
	i := 0
	for b.Loop() {
		i++
		name := "bench/" + strconv.Itoa(i)
		if err := st.InTx(ctx, func(tx store.Ops) error { return tx.NotifySecretChanged(ctx, name) }); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for n := <-got; n != name; n = <-got {
		}
		wait += time.Since(start)
	}
	b.ReportMetric(float64(wait.Nanoseconds())/float64(i), "deliver-ns/op")
}

// BenchmarkCommitWithNotify: concurrent write transactions (8 per core,
// one small insert each) with and without NotifySecretChanged, to show
// what the change notice costs: its secret_changes row, and the wait
// for its batch's NOTIFY after the commit (PostgreSQL serializes the
// commits of transactions that NOTIFY, which is why the notice is no
// longer sent inside the writing transaction).
func BenchmarkCommitWithNotify(b *testing.B) {
	for _, notify := range []bool{false, true} {
		b.Run("notify="+strconv.FormatBool(notify), func(b *testing.B) {
			ctx := b.Context()
			_, dsn := freshSchema(b)
			st := open(b, dsn)
			var n atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					name := "bench/" + strconv.FormatInt(n.Add(1), 10)
					err := st.InTx(ctx, func(tx store.Ops) error {
						if err := tx.PutMetaIfAbsent(ctx, name, []byte("x")); err != nil {
							return err
						}
						if notify {
							return tx.NotifySecretChanged(ctx, name)
						}
						return nil
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestListenerLogsNoPassword: a listener that cannot connect says so in
// the log, never with its DSN's password.
func TestListenerLogsNoPassword(t *testing.T) {
	_, dsn := freshSchema(t)
	st := open(t, dsn)
	const canary = "canary-Pw-7f3a9c"
	var logs syncBuf
	l := st.NewListener(postgres.ListenerConfig{
		DSN:          "postgres://rotary:" + canary + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=1",
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	eventually(t, 10*time.Second, "a log line about the failed connection", func() bool {
		return bytes.Contains(logs.Bytes(), []byte("cannot connect"))
	})
	if l.Current() {
		t.Errorf("Current() without a connection = true")
	}
	l.Stop()
	if bytes.Contains(logs.Bytes(), []byte(canary)) {
		t.Errorf("the log shows the DSN's password:\n%s", logs.Bytes())
	}
}

// TestListenerFindsChangeWithoutNotice: the crash gap. Daemon A's
// write commits but its notice is never sent (A's notifier is held
// before its NOTIFY, as when A dies right after its commit). B's
// listener, current all along, still hands the change over by its
// check of secret_changes, and within MaxLag of the commit: whenever B
// is current after that, it has the change. The control that the notice
// really was not sent: A's notifier sent nothing.
func TestListenerFindsChangeWithoutNotice(t *testing.T) {
	ctx := t.Context()
	_, dsn := freshSchema(t)
	a := open(t, dsn)
	held := make(chan struct{})
	var reached atomic.Bool
	reachedAt := make(chan time.Time, 1) // after the commit, before the NOTIFY
	a.SetNotifyFailpoint(func(string) {
		if !reached.Swap(true) {
			reachedAt <- time.Now()
		}
		<-held
	})
	t.Cleanup(func() { close(held) }) // before a's Close (cleanups run last first)
	const maxLag = 300 * time.Millisecond
	l, rec := startListener(t, open(t, dsn), postgres.ListenerConfig{MaxLag: maxLag})

	const name = "gap/after-commit"
	if err := a.InTx(ctx, func(tx store.Ops) error {
		if err := tx.PutMetaIfAbsent(ctx, "gap-marker", []byte("x")); err != nil {
			return err
		}
		return tx.NotifySecretChanged(ctx, name)
	}); err != nil {
		t.Fatal(err)
	}
	committed := <-reachedAt // the commit happened before
	for !rec.has(name) {
		if l.Current() && time.Since(committed) > maxLag {
			t.Fatalf("listener current %s after the commit without the change (MaxLag %s)", time.Since(committed), maxLag)
		}
		if time.Since(committed) > 20*time.Second {
			t.Fatalf("change never handed over (stats %+v)", l.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("handed over within %s of the commit", time.Since(committed))
	if !reached.Load() || a.NoticesSent() != 0 {
		t.Fatalf("failpoint reached %v, notices sent %d: want the notice held and none sent", reached.Load(), a.NoticesSent())
	}
	if st := l.Stats(); st.Found < 1 || st.Checks < 1 {
		t.Errorf("stats %+v: want the change found by a check", st)
	}
	eventually(t, 10*time.Second, "listener current", l.Current)
}

// TestNoticesBatchedAfterCommit: concurrent write transactions of one
// store share NOTIFYs (fewer notices than transactions), each
// transaction's change reaches another store's listener by its notice
// (not the check: the listener's check is slowed to a minute), and a
// transaction whose names do not fit in one notice sends "many", on
// which the listener checks at once.
func TestNoticesBatchedAfterCommit(t *testing.T) {
	ctx := t.Context()
	_, dsn := freshSchema(t)
	a := open(t, dsn)
	// MaxLag of a minute: its own checks every 15 s, so what arrives
	// within seconds came by notice.
	l, rec := startListener(t, open(t, dsn), postgres.ListenerConfig{MaxLag: time.Minute})
	checks := l.Stats().Checks

	const writers, each = 16, 12
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				name := "batch/" + strconv.Itoa(w) + "/" + strconv.Itoa(i)
				if err := a.InTx(ctx, func(tx store.Ops) error { return tx.NotifySecretChanged(ctx, name) }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w := range writers {
		for i := range each {
			rec.waitFor(t, "batch/"+strconv.Itoa(w)+"/"+strconv.Itoa(i))
		}
	}
	sent := a.NoticesSent()
	t.Logf("%d transactions, %d NOTIFYs", writers*each, sent)
	if sent >= writers*each || sent == 0 {
		t.Errorf("NOTIFYs sent = %d for %d concurrent transactions, want fewer (batched) and some", sent, writers*each)
	}

	// Too many names for one notice (8000 bytes): "many", then a check.
	long := strings.Repeat("x", 200)
	var names []string
	if err := a.InTx(ctx, func(tx store.Ops) error {
		for i := range 60 {
			n := "many/" + long + "/" + strconv.Itoa(i)
			names = append(names, n)
			if err := tx.NotifySecretChanged(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		rec.waitFor(t, n)
	}
	if st := l.Stats(); st.Checks == checks || st.Found < uint64(len(names)) {
		t.Errorf("stats %+v (checks before %d): want the names found by a check the \"many\" notice started", st, checks)
	}
}
