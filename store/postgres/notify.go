package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/sensitive"
)

// Change notifications between daemons sharing one schema: see the
// package documentation ("Change notifications").

// channelSQL names the schema's change channel: a NOTIFY channel is
// database-wide, so it is derived from current_schema() (hashed, so that
// any schema name fits the 63-byte limit on channel names).
const channelSQL = `'rotary_changes_' || left(md5(current_schema()), 16)`

// pingPrefix starts the payload of a listener's own check; no secret name
// contains '!' or a space.
const pingPrefix = "!ping "

// Defaults of ListenerConfig.
const (
	DefaultListenerMaxLag       = time.Second
	DefaultListenerReconnectMin = 100 * time.Millisecond
	DefaultListenerReconnectMax = 10 * time.Second
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// MaxLag bounds how stale Current lets a cache be when notices stop
	// arriving: lost with the daemon that was to send them (it died
	// between its commit and its notice), late, or held on a connection
	// that died silently. Every MaxLag/4 the listener checks
	// secret_changes for changes committed since its previous check and
	// notifies itself, and Current holds only while such a check and
	// such a notice came back within MaxLag. Default 1s.
	MaxLag time.Duration
	// ReconnectMin and ReconnectMax bound the pause between attempts to
	// connect again (doubling from min to max). Defaults 100ms and 10s.
	ReconnectMin, ReconnectMax time.Duration
	// DSN of the listening connection; default the store's. Set it when
	// the store's goes through a pooler in transaction mode (PgBouncer),
	// where LISTEN does not work. It must reach the same database.
	DSN    string
	Logger *slog.Logger
}

// ListenerStats counts what a Listener received, for tests and metrics.
type ListenerStats struct {
	Connected bool   // LISTEN is in place and no loss has been seen since
	Changes   uint64 // secret changes handed to subscribers, from notices and checks
	Found     uint64 // of those, changes that the check of secret_changes found before any notice of them
	Checks    uint64 // checks of secret_changes done
	Resets    uint64 // subscribers told to forget everything (each (re)connection)
	Pings     uint64 // own notices that came back
}

// Listener receives the secret changes every daemon on the schema
// commits, on a connection of its own (lib/pq's pq.Listener), and hands
// them to its subscribers (the read cache of secrets.Service). After every
// (re)connection it tells them to forget everything, since notices sent
// while it was not listening are lost. It has the lifecycle of every
// long-running part: Start, then an idempotent Stop.
type Listener struct {
	st    *Store
	cfg   ListenerConfig
	log   *slog.Logger
	id    string
	epoch time.Time

	// checked: every change committed before this instant (ns since
	// epoch) has been handed to the subscribers or covered by a reset.
	// caught: every notice sent before this instant has arrived.
	checked, caught                       atomic.Int64
	down                                  atomic.Bool // not listening, or a loss seen and not yet reset
	changes, found, checks, resets, pings atomic.Uint64

	// Owned by the run goroutine: the snapshot of the previous check
	// (changes committed since are the transactions at or past its xmax
	// and those in progress then), whether a resync is owed (a reset
	// whose baseline snapshot failed), and the newest transaction id
	// handed over per secret since that snapshot's xmin.
	from                     pgSnapshot
	needResync               bool
	seen                     map[string]uint64
	listening, stop, pingNow chan struct{}
	stopOnce                 sync.Once
	wg                       sync.WaitGroup

	mu      sync.Mutex
	subs    []subscriber
	seq     uint64
	sent    map[uint64]int64 // own checks in flight: seq -> ns since epoch when sent
	started bool
	pql     *pq.Listener
}

type subscriber struct {
	changed func(name string)
	reset   func()
}

// NewListener returns a Listener on the store's schema, not yet started.
func (s *Store) NewListener(cfg ListenerConfig) *Listener {
	cfg.MaxLag = max(cmp.Or(cfg.MaxLag, DefaultListenerMaxLag), 4*time.Millisecond)
	cfg.ReconnectMin = cmp.Or(cfg.ReconnectMin, DefaultListenerReconnectMin)
	cfg.ReconnectMax = max(cmp.Or(cfg.ReconnectMax, DefaultListenerReconnectMax), cfg.ReconnectMin)
	cfg.DSN = cmp.Or(cfg.DSN, s.dsn)
	var id [6]byte
	_, _ = rand.Read(id[:])
	l := &Listener{
		st: s, cfg: cfg, log: cfg.Logger, id: hex.EncodeToString(id[:]), epoch: time.Now(),
		listening: make(chan struct{}), stop: make(chan struct{}), pingNow: make(chan struct{}, 1),
		sent: map[uint64]int64{}, seen: map[string]uint64{},
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.caught.Store(math.MinInt64 / 2)
	l.checked.Store(math.MinInt64 / 2)
	l.down.Store(true)
	return l
}

// Subscribe registers handlers, before Start: changed gets the name of
// every secret whose change committed (on any daemon, this one
// included), once or more; reset means changes may have been missed, so
// everything cached must go. Both run on the listener's goroutine, in
// order.
func (l *Listener) Subscribe(changed func(name string), reset func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, subscriber{changed: changed, reset: reset})
}

// Current reports whether every change committed more than MaxLag ago
// has been handed to the subscribers: false before the first LISTEN,
// from a lost connection until the reset that follows its return, and
// whenever the listener's check of secret_changes or its own notice has
// not come back within MaxLag. A cache must not answer from memory while
// it is false.
func (l *Listener) Current() bool {
	now := l.since()
	return !l.down.Load() && now-l.checked.Load() < int64(l.cfg.MaxLag) && now-l.caught.Load() < int64(l.cfg.MaxLag)
}

// Stats reports counts since Start.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Connected: !l.down.Load(), Changes: l.changes.Load(), Found: l.found.Load(), Checks: l.checks.Load(),
		Resets: l.resets.Load(), Pings: l.pings.Load(),
	}
}

// secrets are what a logged error must not show: both DSNs' passwords.
func (l *Listener) secrets() []sensitive.Bytes {
	return append(dsnSecrets(l.st.dsn), dsnSecrets(l.cfg.DSN)...)
}

func (l *Listener) since() int64 { return int64(time.Since(l.epoch)) }

// Start opens the listening connection in the background and returns;
// until it is listening, Current is false.
func (l *Listener) Start(ctx context.Context) error {
	var channel string
	if err := l.st.db.QueryRowContext(ctx, `SELECT `+channelSQL).Scan(&channel); err != nil {
		return fmt.Errorf("postgres: listener: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return errors.New("postgres: listener: started twice")
	}
	l.started = true
	l.pql = pq.NewListener(l.cfg.DSN, l.cfg.ReconnectMin, l.cfg.ReconnectMax, l.event)
	l.wg.Add(2)
	go l.run(l.pql, channel)
	go l.pinger(channel)
	return nil
}

// Stop closes the connection and waits for the goroutines. Idempotent.
func (l *Listener) Stop() {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.mu.Lock()
		pql := l.pql
		l.mu.Unlock()
		if pql != nil {
			_ = pql.Close()
		}
		l.wg.Wait()
		l.down.Store(true)
	})
}

func (l *Listener) stopping() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// run listens and dispatches notices in order, and checks
// secret_changes every MaxLag/4. pq sends a nil notice after each
// reconnection (and LISTEN again), which is when to reset.
func (l *Listener) run(pql *pq.Listener, channel string) {
	defer l.wg.Done()
	// Drain what pq still sends once we return, so that its goroutine
	// never blocks on a full channel; it closes Notify when it ends.
	defer func() {
		go func() {
			for range pql.Notify {
			}
		}()
	}()
	if err := pql.Listen(channel); err != nil {
		if !l.stopping() {
			l.log.Error("postgres change listener: LISTEN failed; the read cache stays bypassed", "err", sensitive.Sanitize(err, l.secrets()...))
		}
		return
	}
	l.resync() // what was read before LISTEN may have missed changes
	close(l.listening)
	tick := time.NewTicker(l.cfg.MaxLag / 4)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			l.check()
		case n, ok := <-pql.Notify:
			switch {
			case !ok:
				return
			case n == nil:
				l.resync()
			default:
				l.handle(n.Extra)
			}
		}
	}
}

// resync takes the snapshot that later checks start from, then resets
// the subscribers: a change a read after the reset did not see committed
// after that snapshot was taken, so the next check finds it. Without the
// snapshot the listener stays down and the next tick tries again.
func (l *Listener) resync() {
	start := l.since()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.MaxLag)
	defer cancel()
	snap, err := l.snapshot(ctx)
	if err != nil {
		l.down.Store(true)
		l.needResync = true
		if !l.stopping() {
			l.log.Warn("postgres change listener: cannot read a snapshot; reads bypass the cache", "err", sensitive.Sanitize(err, l.secrets()...))
		}
		return
	}
	l.from, l.needResync = snap, false
	l.reset()
	l.checked.Store(start)
}

// check hands the subscribers every secret change committed since the
// previous check that no notice brought: the fallback for notices lost
// with a daemon that died after its commit, or late.
func (l *Listener) check() {
	if l.needResync {
		l.resync()
		return
	}
	if l.down.Load() {
		return // the reset after the reconnection covers it
	}
	start := l.since()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.MaxLag)
	defer cancel()
	// First the snapshot the next check starts from, then the changes:
	// whatever the second statement does not see committed after the
	// first one's snapshot was taken.
	snap, err := l.snapshot(ctx)
	if err != nil {
		l.checkFailed(err)
		return
	}
	var cs []change
	rows, err := l.st.db.QueryContext(ctx, `SELECT name, xid::text FROM secret_changes
		WHERE xid >= $1::text::xid8 OR xid = ANY($2::text::xid8[])`, strconv.FormatUint(l.from.xmax, 10), l.from.xipArray())
	if err != nil {
		l.checkFailed(err)
		return
	}
	for rows.Next() {
		var c change
		var x string
		if err := rows.Scan(&c.name, &x); err != nil {
			rows.Close()
			l.checkFailed(err)
			return
		}
		if c.xid, err = strconv.ParseUint(x, 10, 64); err != nil {
			rows.Close()
			l.checkFailed(err)
			return
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		l.checkFailed(err)
		return
	}
	rows.Close()
	subs := l.subscribers()
	for _, c := range cs {
		if l.seen[c.name] >= c.xid {
			continue // its notice (or an earlier check) handed it over
		}
		l.seen[c.name] = c.xid
		for _, s := range subs {
			s.changed(c.name)
		}
		l.changes.Add(1)
		l.found.Add(1)
	}
	l.from = snap
	for name, xid := range l.seen {
		if xid < snap.xmin {
			delete(l.seen, name) // no check returns it again
		}
	}
	l.checks.Add(1)
	if start > l.checked.Load() {
		l.checked.Store(start)
	}
}

func (l *Listener) checkFailed(err error) {
	if !l.stopping() {
		l.log.Debug("postgres change listener: check of secret_changes failed", "err", sensitive.Sanitize(err, l.secrets()...))
	}
}

func (l *Listener) subscribers() []subscriber {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.subs
}

// pgSnapshot is a pg_snapshot: transactions below xmin are done, those
// at or past xmax had not started, those in xip were in progress.
type pgSnapshot struct {
	xmin, xmax uint64
	xip        []uint64
}

func (l *Listener) snapshot(ctx context.Context) (pgSnapshot, error) {
	var s string
	if err := l.st.db.QueryRowContext(ctx, `SELECT pg_current_snapshot()::text`).Scan(&s); err != nil {
		return pgSnapshot{}, err
	}
	return parseSnapshot(s)
}

// parseSnapshot reads a pg_snapshot's text form, "xmin:xmax:xip,xip".
func parseSnapshot(s string) (pgSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return pgSnapshot{}, fmt.Errorf("snapshot %q: want xmin:xmax:xip", s)
	}
	var snap pgSnapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return pgSnapshot{}, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return pgSnapshot{}, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return pgSnapshot{}, fmt.Errorf("snapshot %q: %w", s, err)
			}
			snap.xip = append(snap.xip, v)
		}
	}
	return snap, nil
}

// xipArray is the in-progress list as a PostgreSQL array literal.
func (s pgSnapshot) xipArray() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, x := range s.xip {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(x, 10))
	}
	sb.WriteByte('}')
	return sb.String()
}

func (l *Listener) reset() {
	l.mu.Lock()
	subs := l.subs
	l.mu.Unlock()
	for _, s := range subs {
		s.reset()
	}
	l.resets.Add(1)
	l.down.Store(false)
	select { // check at once rather than at the next tick
	case l.pingNow <- struct{}{}:
	default:
	}
}

func (l *Listener) handle(payload string) {
	if rest, ok := strings.CutPrefix(payload, pingPrefix); ok {
		id, s, _ := strings.Cut(rest, ":")
		seq, err := strconv.ParseUint(s, 10, 64)
		if id != l.id || err != nil {
			return // another daemon's check
		}
		l.mu.Lock()
		sentAt, ok := l.sent[seq]
		for k := range l.sent {
			if k <= seq {
				delete(l.sent, k)
			}
		}
		l.mu.Unlock()
		// Notices arrive in the order they were sent: every notice sent
		// before this one has been handled above.
		if ok && sentAt > l.caught.Load() {
			l.caught.Store(sentAt)
		}
		l.pings.Add(1)
		return
	}
	if payload != manyChanged && strings.HasPrefix(payload, "!") && !strings.HasPrefix(payload, batchPrefix) {
		return // reserved
	}
	cs, many := parsePayload(payload)
	if many {
		l.check() // too many names for one notice: they are in secret_changes
		return
	}
	subs := l.subscribers()
	for _, c := range cs {
		if c.xid != 0 {
			if l.seen[c.name] >= c.xid {
				continue // a check handed it over already, after its commit
			}
			l.seen[c.name] = c.xid
		}
		for _, s := range subs {
			s.changed(c.name)
		}
		l.changes.Add(1)
	}
}

// pinger sends the listener's own notice every MaxLag/4 through the pool
// (and at once after each reset).
func (l *Listener) pinger(channel string) {
	defer l.wg.Done()
	select {
	case <-l.listening:
	case <-l.stop:
		return
	}
	t := time.NewTicker(l.cfg.MaxLag / 4)
	defer t.Stop()
	for {
		l.ping(channel)
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.pingNow:
		}
	}
}

func (l *Listener) ping(channel string) {
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.sent[seq] = l.since()
	delete(l.sent, seq-64) // a check that never came back
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.MaxLag)
	defer cancel()
	_, err := l.st.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, pingPrefix+l.id+":"+strconv.FormatUint(seq, 10))
	if err != nil && !l.stopping() {
		l.log.Debug("postgres change listener: check not sent", "err", sensitive.Sanitize(err, l.secrets()...))
	}
}

func (l *Listener) event(ev pq.ListenerEventType, err error) {
	if l.stopping() {
		return
	}
	switch ev {
	case pq.ListenerEventDisconnected:
		l.down.Store(true)
		l.log.Warn("postgres change listener: connection lost; reads bypass the cache until it is back",
			"err", sensitive.Sanitize(err, l.secrets()...))
	case pq.ListenerEventConnectionAttemptFailed:
		l.log.Warn("postgres change listener: cannot connect; reads bypass the cache",
			"err", sensitive.Sanitize(err, l.secrets()...))
	case pq.ListenerEventReconnected:
		l.log.Info("postgres change listener: connected again; the read cache starts empty")
	}
}
