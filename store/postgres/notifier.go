package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store/internal/sqlops"
)

// The sending side of change notices: see the package documentation
// ("Change notifications").

// change is one secret name a committed (or committing) transaction
// changed, with that transaction's id (pg_current_xact_id()).
type change struct {
	name string
	xid  uint64
}

// Payloads on the change channel. A batch is batchPrefix followed by
// "xid:name" entries separated by spaces (no secret name contains '!', a
// space or ':'); manyChanged stands for a batch too large for one notice
// (PostgreSQL refuses payloads of 8000 bytes or more): its listeners
// check secret_changes at once. A payload without '!' is one name, as
// daemons before batching sent it from inside the writing transaction.
const (
	batchPrefix     = "!c "
	manyChanged     = "!many"
	maxPayloadBytes = 7999
)

// noticeWait bounds how long a write waits, after its commit, for its
// notice to be sent. Past it the write returns anyway: the notice goes
// out later, or the listeners' check of secret_changes finds the change.
const noticeWait = 250 * time.Millisecond

// noticeSendTimeout bounds one NOTIFY on the notifier's connection.
const noticeSendTimeout = 5 * time.Second

// recordChangeSQL records, in the writing transaction, that it changed
// the secret, and returns the transaction's id.
const recordChangeSQL = `INSERT INTO secret_changes (name, xid) VALUES ($1, pg_current_xact_id())
	ON CONFLICT (name) DO UPDATE SET xid = excluded.xid RETURNING xid::text`

// NotifySecretChanged records that the secret changed (a secret_changes
// row stamped with the transaction's id) and queues its notice: inside
// InTx the notice is sent after the commit (never after a rollback), by
// the store's notifier, batched with other transactions' notices;
// outside, after the row's autocommit.
func (dialect) NotifySecretChanged(ctx context.Context, q sqlops.Querier, name string) error {
	var s string
	if err := q.QueryRowContext(ctx, recordChangeSQL, name).Scan(&s); err != nil {
		return fmt.Errorf("postgres: notify %s changed: %w", name, err)
	}
	xid, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("postgres: notify %s changed: transaction id %q: %w", name, s, err)
	}
	c := change{name: name, xid: xid}
	switch q := q.(type) {
	case txQuerier:
		if q.changes == nil {
			return fmt.Errorf("postgres: notify %s changed: not in a transaction of InTx", name)
		}
		*q.changes = append(*q.changes, c)
	case dbQuerier:
		q.n.sendAndWait(ctx, []change{c})
	default:
		return fmt.Errorf("postgres: notify %s changed: unexpected querier %T", name, q)
	}
	return nil
}

// notifier sends the change notices of committed transactions, batched:
// whatever was committed while the previous NOTIFY was on its way goes
// in the next one, on one connection of its own.
type notifier struct {
	db     *sql.DB
	log    *slog.Logger
	hidden func() []sensitive.Bytes // what a logged error must not show

	mu        sync.Mutex
	cur       *noticeBatch // being filled; nil when nothing waits
	failpoint func(name string)
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	conn      *sql.Conn // held while the notifier runs; nil until the first send or after an error
	sent      uint64    // notices sent, for tests
}

type noticeBatch struct {
	changes []change
	sent    chan struct{} // closed once the NOTIFY was attempted
}

func newNotifier(db *sql.DB, hidden func() []sensitive.Bytes) *notifier {
	n := &notifier{
		db: db, log: slog.New(slog.DiscardHandler), hidden: hidden,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go n.run()
	return n
}

// add queues the changes of a committed transaction and returns a
// channel closed once their notice was sent (or failed).
func (n *notifier) add(cs []change) <-chan struct{} {
	n.mu.Lock()
	if n.cur == nil {
		n.cur = &noticeBatch{sent: make(chan struct{})}
	}
	b := n.cur
	b.changes = append(b.changes, cs...)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return b.sent
}

// sendAndWait queues cs and waits until their notice was sent, at most
// noticeWait (or until ctx ends).
func (n *notifier) sendAndWait(ctx context.Context, cs []change) {
	if len(cs) == 0 {
		return
	}
	sent := n.add(cs)
	t := time.NewTimer(noticeWait)
	defer t.Stop()
	select {
	case <-sent:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (n *notifier) run() {
	defer close(n.done)
	defer func() {
		if n.conn != nil {
			_ = n.conn.Close()
		}
	}()
	for {
		select {
		case <-n.wake:
		case <-n.stop:
			n.flush() // what committed before Close
			return
		}
		n.flush()
	}
}

// flush sends the batch being filled, if any.
func (n *notifier) flush() {
	n.mu.Lock()
	b, fp, log := n.cur, n.failpoint, n.log
	n.cur = nil
	n.mu.Unlock()
	if b == nil {
		return
	}
	defer close(b.sent)
	if fp != nil {
		fp("notify-before-send")
	}
	if err := n.send(payload(b.changes)); err != nil {
		// The changes are in secret_changes: the listeners' periodic
		// check finds them within their MaxLag.
		log.Warn("postgres change notices: NOTIFY failed; other daemons see these changes by their periodic check instead",
			"secrets", len(b.changes), "err", sensitive.Sanitize(err, n.hidden()...))
	}
}

func (n *notifier) send(p string) error {
	ctx, cancel := context.WithTimeout(context.Background(), noticeSendTimeout)
	defer cancel()
	if n.conn == nil {
		c, err := n.db.Conn(ctx)
		if err != nil {
			return err
		}
		n.conn = c
	}
	if _, err := n.conn.ExecContext(ctx, `SELECT pg_notify(`+channelSQL+`, $1)`, p); err != nil {
		_ = n.conn.Close()
		n.conn = nil
		return err
	}
	n.mu.Lock()
	n.sent++
	n.mu.Unlock()
	return nil
}

// payload is the notice of a batch: each name once, with the newest
// transaction id that changed it, or manyChanged when that does not fit.
func payload(cs []change) string {
	newest := make(map[string]uint64, len(cs))
	order := make([]string, 0, len(cs))
	for _, c := range cs {
		x, ok := newest[c.name]
		if !ok {
			order = append(order, c.name)
		}
		newest[c.name] = max(x, c.xid)
	}
	var sb strings.Builder
	sb.WriteString(batchPrefix)
	for i, name := range order {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(strconv.FormatUint(newest[name], 10))
		sb.WriteByte(':')
		sb.WriteString(name)
		if sb.Len() > maxPayloadBytes {
			return manyChanged
		}
	}
	return sb.String()
}

// parsePayload reads a notice: the changes of a batch, a lone name (xid
// 0: unknown), or many (check secret_changes now).
func parsePayload(p string) (cs []change, many bool) {
	if p == manyChanged {
		return nil, true
	}
	rest, ok := strings.CutPrefix(p, batchPrefix)
	if !ok {
		return []change{{name: p}}, false
	}
	for _, e := range strings.Split(rest, " ") {
		x, name, ok := strings.Cut(e, ":")
		xid, err := strconv.ParseUint(x, 10, 64)
		if !ok || err != nil || name == "" {
			return nil, true // not ours to read: check instead
		}
		cs = append(cs, change{name: name, xid: xid})
	}
	return cs, false
}

// close sends what is queued and stops, waiting at most a few seconds
// for a send in progress.
func (n *notifier) close() {
	n.stopOnce.Do(func() {
		close(n.stop)
		select {
		case <-n.done:
		case <-time.After(noticeSendTimeout):
			n.mu.Lock()
			log := n.log
			n.mu.Unlock()
			log.Warn("postgres change notices: the notifier did not stop in time")
		}
	})
}

// SetNotifyFailpoint installs a hook the notifier calls before each
// NOTIFY, with the point's name ("notify-before-send"). Crash tests use
// it (the failpoints build of cmd/rotary) to stop a daemon between its
// commits and their notices; nothing else may.
func (s *Store) SetNotifyFailpoint(f func(name string)) {
	s.notifier.mu.Lock()
	s.notifier.failpoint = f
	s.notifier.mu.Unlock()
}

// NoticesSent counts the NOTIFYs the notifier sent (each one batch).
func (s *Store) NoticesSent() uint64 {
	s.notifier.mu.Lock()
	defer s.notifier.mu.Unlock()
	return s.notifier.sent
}
