package api

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/store"
)

// auditLog appends request records to the hash chain with group commit:
// callers block in Append until their record is committed, and one writer
// goroutine commits whatever has queued up in a single transaction. Under
// load this turns thousands of appends into a few transactions per second
// without ever answering a request before its record is durable.
type auditLog struct {
	st  store.Store
	now func() time.Time
	log *slog.Logger

	queue    chan pending
	stopOnce sync.Once
	done     chan struct{}
	started  bool
}

type pending struct {
	rec  store.AuditRecord
	done chan error
}

func newAuditLog(st store.Store, now func() time.Time, log *slog.Logger) *auditLog {
	return &auditLog{st: st, now: now, log: log, queue: make(chan pending, 4096), done: make(chan struct{})}
}

// Start runs the writer until Stop.
func (l *auditLog) Start(ctx context.Context) error {
	l.started = true
	go l.run(context.WithoutCancel(ctx))
	return nil
}

// Stop commits what is queued and stops the writer. Idempotent.
func (l *auditLog) Stop() {
	l.stopOnce.Do(func() {
		if !l.started {
			return
		}
		close(l.queue)
		<-l.done
	})
}

var errAuditStopped = errors.New("audit log stopped")

// Append queues rec and waits until it is committed.
func (l *auditLog) Append(ctx context.Context, rec store.AuditRecord) (err error) {
	p := pending{rec: rec, done: make(chan error, 1)}
	defer func() {
		if recover() != nil { // queue closed by Stop
			err = errAuditStopped
		}
	}()
	select {
	case l.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Wait even if ctx ends: the record may already be in a transaction.
	return <-p.done
}

func (l *auditLog) run(ctx context.Context) {
	defer close(l.done)
	const maxBatch = 512
	batch := make([]pending, 0, maxBatch)
	for {
		p, ok := <-l.queue
		if !ok {
			return
		}
		batch = append(batch[:0], p)
	fill:
		for len(batch) < maxBatch {
			select {
			case p, ok := <-l.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		err := l.commit(ctx, batch)
		if err != nil {
			l.log.Error("audit commit failed", "records", len(batch), "err", err)
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

func (l *auditLog) commit(ctx context.Context, batch []pending) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = l.st.InTx(ctx, func(tx store.Ops) error {
			seq, head, err := tx.AuditHead(ctx)
			if err != nil {
				return err
			}
			recs := make([]store.AuditRecord, len(batch))
			for i, p := range batch {
				r := audit.Seal(head, seq+1, audit.Record(p.rec))
				recs[i] = store.AuditRecord(r)
				seq, head = r.Seq, r.Hash
			}
			return tx.AppendAudit(ctx, recs...)
		})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}
