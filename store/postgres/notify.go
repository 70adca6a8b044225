package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/rotary-secrets/rotary/store/internal/sqlops"
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

// NotifySecretChanged sends the secret's name on the schema's change
// channel (pg_notify). Inside InTx PostgreSQL holds the notice until the
// transaction commits and drops it on rollback.
func (dialect) NotifySecretChanged(ctx context.Context, q sqlops.Querier, name string) error {
	if _, err := q.ExecContext(ctx, `SELECT pg_notify(`+channelSQL+`, $1)`, name); err != nil {
		return fmt.Errorf("postgres: notify %s changed: %w", name, err)
	}
	return nil
}

// Defaults of ListenerConfig.
const (
	DefaultListenerMaxLag       = time.Second
	DefaultListenerReconnectMin = 100 * time.Millisecond
	DefaultListenerReconnectMax = 10 * time.Second
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// MaxLag bounds how stale Current lets a cache be when notices stop
	// arriving, even on a connection that died silently: the listener
	// notifies itself every MaxLag/4, and Current holds only while one of
	// those came back within MaxLag. Default 1s.
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
	Changes   uint64 // secret-changed notices handed to subscribers
	Resets    uint64 // subscribers told to forget everything (each (re)connection)
	Pings     uint64 // own checks that came back
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

	// caught: every change committed before this instant (ns since epoch)
	// has been handed to the subscribers or covered by a reset.
	caught                   atomic.Int64
	down                     atomic.Bool // not listening, or a loss seen and not yet reset
	changes, resets, pings   atomic.Uint64
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
		sent: map[uint64]int64{},
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.caught.Store(math.MinInt64 / 2)
	l.down.Store(true)
	return l
}

// Subscribe registers handlers, before Start: changed gets the name of
// every secret whose change committed (on any daemon, this one
// included); reset means changes may have been missed, so everything
// cached must go. Both run on the listener's goroutine, in order.
func (l *Listener) Subscribe(changed func(name string), reset func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, subscriber{changed: changed, reset: reset})
}

// Current reports whether every change committed more than MaxLag ago
// has been handed to the subscribers: false before the first LISTEN,
// from a lost connection until the reset that follows its return, and
// whenever the listener's own check has not come back within MaxLag.
// A cache must not answer from memory while it is false.
func (l *Listener) Current() bool {
	return !l.down.Load() && l.since()-l.caught.Load() < int64(l.cfg.MaxLag)
}

// Stats reports counts since Start.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Connected: !l.down.Load(), Changes: l.changes.Load(), Resets: l.resets.Load(), Pings: l.pings.Load(),
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

// run listens and dispatches notices in order. pq sends a nil notice
// after each reconnection (and LISTEN again), which is when to reset.
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
	l.reset() // what was read before LISTEN may have missed changes
	close(l.listening)
	for {
		select {
		case <-l.stop:
			return
		case n, ok := <-pql.Notify:
			switch {
			case !ok:
				return
			case n == nil:
				l.reset()
			default:
				l.handle(n.Extra)
			}
		}
	}
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
		// Notices arrive in commit order: every change committed before
		// this check was sent has been handled above.
		if ok && sentAt > l.caught.Load() {
			l.caught.Store(sentAt)
		}
		l.pings.Add(1)
		return
	}
	if strings.HasPrefix(payload, "!") {
		return // reserved
	}
	l.mu.Lock()
	subs := l.subs
	l.mu.Unlock()
	for _, s := range subs {
		s.changed(payload)
	}
	l.changes.Add(1)
}

// pinger sends the listener's own check every MaxLag/4 through the pool
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
