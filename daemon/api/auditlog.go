package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/store"
)

// auditLog appends request records to the audit chains with group
// commit: callers block in Append until their record is committed, and
// writer goroutines (AuditWriters of them) each commit whatever has
// queued up in a single transaction, with multi-row inserts, on a writer
// chain no other transaction holds (store.Ops.ClaimAuditChain). Under load
// this turns thousands of appends into a few transactions per second
// without ever answering a request before its record is durable, and the
// writers of several daemons never wait for each other's commits.
//
// An anchorer binds the heads of every chain in an anchor record (chain
// audit.AnchorChain) every anchorEvery records this daemon committed or
// anchorInterval, whichever comes first, and once more at Stop.
type auditLog struct {
	st  store.Store
	key audit.Key
	now func() time.Time
	log *slog.Logger

	queue    chan pending
	writers  int
	stopOnce sync.Once
	done     chan struct{}
	started  bool

	anchorEvery    int64
	anchorInterval time.Duration
	sinceAnchor    atomic.Int64
	anchorNow      chan struct{}
	stopAnchor     chan struct{}
	anchorDone     chan struct{}
	anchorMu       sync.Mutex // one anchor at a time on this daemon

	// failures rate-limits the records of failed authentication; the
	// summary goroutine writes what it suppressed every summaryEvery.
	failures     *failedAuth
	summaryEvery time.Duration
	stopSummary  chan struct{}
	summaryDone  chan struct{}

	// writeFailures counts audit writes that failed, by kind: "records"
	// (a batch of request records, each request refused with it) and
	// "anchor".
	writeFailures *prometheus.CounterVec
}

// Kinds of rotary_audit_write_failures_total.
var auditWriteKinds = []string{"records", "anchor"}

func newAuditWriteFailures() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rotary_audit_write_failures_total",
		Help: "Audit writes that failed, by kind: records (a group commit of request records; those requests were refused) and anchor.",
	}, []string{"kind"})
	for _, k := range auditWriteKinds {
		c.WithLabelValues(k) // every series from 0, so increase() sees the first failure
	}
	return c
}

type pending struct {
	rec  store.AuditRecord
	done chan error
}

// Defaults of the audit log's writers and anchors.
const (
	// DefaultAuditAnchorEvery: an anchor after this many records committed
	// by one daemon's group committer.
	DefaultAuditAnchorEvery = 1000
	// DefaultAuditAnchorInterval: an anchor at least this often while any
	// chain moves.
	DefaultAuditAnchorInterval = time.Second
)

func newAuditLog(st store.Store, key audit.Key, now func() time.Time, log *slog.Logger, writers int, anchorEvery int64, anchorInterval time.Duration) *auditLog {
	return &auditLog{
		st: st, key: key, now: now, log: log, queue: make(chan pending, 4096), done: make(chan struct{}),
		writers:     max(writers, 1),
		anchorEvery: cmp.Or(anchorEvery, DefaultAuditAnchorEvery), anchorInterval: cmp.Or(anchorInterval, DefaultAuditAnchorInterval),
		anchorNow: make(chan struct{}, 1), stopAnchor: make(chan struct{}), anchorDone: make(chan struct{}),
		failures: newFailedAuth(now), summaryEvery: failedAuthSummary,
		stopSummary: make(chan struct{}), summaryDone: make(chan struct{}),
		writeFailures: newAuditWriteFailures(),
	}
}

// Start runs the writers, the anchorer and the summary of suppressed
// failures until Stop.
func (l *auditLog) Start(ctx context.Context) error {
	l.started = true
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range l.writers {
		wg.Go(func() { l.run(ctx) })
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	go l.summarize(ctx)
	go l.anchorLoop(ctx)
	return nil
}

// Stop writes the summary of suppressed failures, commits what is queued,
// stops the writers, and writes a last anchor. Idempotent.
func (l *auditLog) Stop() {
	l.stopOnce.Do(func() {
		if !l.started {
			return
		}
		close(l.stopSummary)
		<-l.summaryDone
		close(l.queue)
		<-l.done
		close(l.stopAnchor)
		<-l.anchorDone
	})
}

// anchorLoop writes an anchor every anchorInterval, when the writers ask
// (anchorEvery records), and at Stop; each only if a chain moved since
// the last anchor.
func (l *auditLog) anchorLoop(ctx context.Context) {
	defer close(l.anchorDone)
	t := time.NewTicker(l.anchorInterval)
	defer t.Stop()
	for {
		stop := false
		select {
		case <-t.C:
		case <-l.anchorNow:
		case <-l.stopAnchor:
			stop = true
		}
		if _, err := l.Anchor(ctx); err != nil {
			l.writeFailures.WithLabelValues("anchor").Inc()
			l.log.Error("audit: writing an anchor", "err", err)
		}
		if stop {
			return
		}
	}
}

// Anchor appends an anchor record binding the heads of every chain but
// the anchor chain, read as committed, and returns it. If no chain moved
// since the newest anchor it writes nothing and returns that anchor (the
// zero record if there is none and nothing to bind). The anchor chain's
// head is locked for the transaction, so anchors of several daemons
// queue there (a short transaction, off the request path).
func (l *auditLog) Anchor(ctx context.Context) (store.AuditRecord, error) {
	l.anchorMu.Lock()
	defer l.anchorMu.Unlock()
	l.sinceAnchor.Store(0)
	var out store.AuditRecord
	err := l.st.InTx(ctx, func(tx store.Ops) error {
		out = store.AuditRecord{}
		seq, head, err := tx.AuditHead(ctx, audit.AnchorChain)
		if err != nil {
			return err
		}
		hs, err := tx.AuditHeads(ctx)
		if err != nil {
			return err
		}
		var heads []audit.Head
		for _, h := range hs {
			if h.Chain != audit.AnchorChain && !h.Missing && h.Seq > 0 {
				heads = append(heads, audit.Head{Chain: h.Chain, Seq: h.Seq, Hash: h.Hash})
			}
		}
		if seq > 0 {
			last, err := tx.ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: audit.AnchorChain, AfterSeq: seq - 1, Limit: 1})
			if err != nil {
				return err
			}
			if len(last) == 1 && last[0].Detail == audit.AnchorDetail(heads) {
				out = last[0]
				return nil
			}
		} else if len(heads) == 0 {
			return nil
		}
		r := l.key.Seal(head, seq+1, audit.Record{
			Chain: audit.AnchorChain, Time: l.now(), TokenID: "system", Action: audit.AnchorAction, Target: "audit",
			Result: "ok", Detail: audit.AnchorDetail(heads),
		})
		out = store.AuditRecord(r)
		return tx.AppendAudit(ctx, out)
	})
	return out, err
}

// summarize writes, every summaryEvery and once more at Stop, one record
// per address whose failed authentications were not recorded one by one.
func (l *auditLog) summarize(ctx context.Context) {
	defer close(l.summaryDone)
	t := time.NewTicker(l.summaryEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.writeSummary(ctx)
		case <-l.stopSummary:
			l.writeSummary(ctx)
			return
		}
	}
}

func (l *auditLog) writeSummary(ctx context.Context) {
	for _, sc := range l.failures.drain() {
		err := l.Append(ctx, store.AuditRecord{
			Time: l.now().UTC(), Action: "auth.failed", Target: sc.addr, Result: "suppressed", Detail: suppressedDetail(sc),
		})
		if err != nil {
			l.log.Error("audit: writing the summary of suppressed failed authentications", "addr", sc.addr, "count", sc.n, "err", err)
		}
	}
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
			l.writeFailures.WithLabelValues("records").Inc()
			l.log.Error("audit commit failed", "records", len(batch), "err", err)
		} else if l.sinceAnchor.Add(int64(len(batch))) >= l.anchorEvery {
			select {
			case l.anchorNow <- struct{}{}:
			default:
			}
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
			h, err := tx.ClaimAuditChain(ctx)
			if err != nil {
				return err
			}
			seq, head := h.Seq, h.Hash
			recs := make([]store.AuditRecord, len(batch))
			for i, p := range batch {
				rec := audit.Record(p.rec)
				rec.Chain = h.Chain
				r := l.key.Seal(head, seq+1, rec)
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

// errNoMigration starts every error of a refused migration.
var errNoMigration = errors.New("audit: the log cannot be moved to the keyed chain (no record was changed)")

// migrateAction is the action of the record MigrateAuditLog appends.
const migrateAction = "audit.migrate"

// MetaAuditChain is the meta name that marks a store whose audit log is
// the keyed chain (version 2). MigrateAuditLog writes it.
const MetaAuditChain = "audit.chain"

// MigrateAuditLog makes st's audit log the keyed chain, once, before
// anything appends to it: in one transaction holding the audit head's lock
// it checks whether the store is marked as keyed (MetaAuditChain); if not,
// it verifies every record against the unkeyed version 1 chain, re-seals
// each under key, marks the store, and appends an "audit.migrate" record
// naming how many records were re-chained and the old head hash. A version
// 1 log that does not verify is refused (the error names the record):
// the key must never vouch for records that may have been forged; so is a
// log holding an "audit.migrate" record, which means the marker was
// removed from a store migrated before. It
// returns how many records were re-chained (0 for a new or already keyed
// store). See package audit's documentation for the reasoning.
func MigrateAuditLog(ctx context.Context, st store.Store, key audit.Key, now time.Time) (int64, error) {
	var migrated int64
	err := st.InTx(ctx, func(tx store.Ops) error {
		migrated = 0
		headSeq, headHash, err := tx.AuditHead(ctx, audit.LegacyChain)
		if err != nil {
			return err
		}
		if _, err := tx.GetMeta(ctx, MetaAuditChain); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("audit chain marker: %w", err)
		}
		// Only the legacy chain can hold version 1 records; records in any
		// other chain were written by a keyed daemon.
		heads, err := tx.AuditHeads(ctx)
		if err != nil {
			return err
		}
		for _, h := range heads {
			if h.Chain != audit.LegacyChain && (h.Seq > 0 || h.Missing) {
				return fmt.Errorf("%w: chain %d holds records of the keyed log, yet the store's %q marker is gone: someone with the database removed it; restore the store from a backup", errNoMigration, h.Chain, MetaAuditChain)
			}
		}
		// A store migrated before holds its audit.migrate record.
		prior, err := tx.ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: audit.LegacyChain, Target: "audit"})
		if err != nil {
			return err
		}
		for _, r := range prior {
			if r.Action == migrateAction && r.TokenID == "system" {
				return fmt.Errorf("%w: record %d says it was moved already, yet the store's %q marker is gone: someone with the database removed it; restore the store from a backup", errNoMigration, r.Seq, MetaAuditChain)
			}
		}
		m := key.MigrateV1()
		var after int64
		for {
			recs, err := tx.ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: audit.LegacyChain, AfterSeq: after, Limit: 5000})
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				break
			}
			for i, r := range recs {
				if hmac.Equal(key.Chain(r.PrevHash, audit.Record(r)), r.Hash) {
					return fmt.Errorf("%w: record %d is sealed under the keyed chain already, yet the store's %q marker is gone: someone with the database removed it; restore the store from a backup", errNoMigration, r.Seq, MetaAuditChain)
				}
				r2, err := m.Next(audit.Record(r))
				if err != nil {
					return fmt.Errorf("%w: %w", errNoMigration, err)
				}
				recs[i] = store.AuditRecord(r2)
			}
			if err := tx.RehashAudit(ctx, recs...); err != nil {
				return err
			}
			after = recs[len(recs)-1].Seq
		}
		switch n := m.Count(); {
		case n != headSeq:
			return fmt.Errorf("%w: %w", errNoMigration,
				&audit.BrokenError{Seq: n + 1, Reason: fmt.Sprintf("version 1 chain: the head says %d records, the chain has %d (records removed)", headSeq, n)})
		case n > 0 && !bytes.Equal(m.HeadV1(), headHash):
			return fmt.Errorf("%w: %w", errNoMigration,
				&audit.BrokenError{Seq: n, Reason: "version 1 chain: it does not match the head hash (the newest records were rewritten)"})
		}
		if err := tx.PutMetaIfAbsent(ctx, MetaAuditChain, []byte("v2")); err != nil {
			return fmt.Errorf("audit chain marker: %w", err)
		}
		migrated = m.Count()
		if migrated == 0 {
			return nil
		}
		seq, head, err := tx.AuditHead(ctx, audit.LegacyChain)
		if err != nil {
			return err
		}
		rec := key.Seal(head, seq+1, audit.Record{Chain: audit.LegacyChain,
			Time: now, TokenID: "system", Action: migrateAction, Target: "audit", Result: "ok",
			Detail: fmt.Sprintf("re-chained records 1 to %d under the keyed hash; their version 1 head was %x", migrated, m.HeadV1()),
		})
		return tx.AppendAudit(ctx, store.AuditRecord(rec))
	})
	if err != nil {
		return 0, err
	}
	return migrated, nil
}
