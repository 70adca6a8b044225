package rotation

// Group commit of rotations: the one-transaction commits of concurrent
// scheduled offline rotations (driveOffline) share transactions, as the
// API's audited reads do, so that a burst of due rotations is not bound
// by one commit (and one fsync, one WAL flush) per rotation.

import (
	"context"
	"sync"

	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// maxBatch bounds the commits that share one transaction.
const maxBatch = 64

// batcher runs commits (functions of a transaction) together: a commit
// that arrives while a batch is being committed waits for the next one,
// which takes every commit queued by then. No commit waits for company:
// one that arrives when nothing is committing starts at once.
type batcher struct {
	st store.Store

	mu      sync.Mutex
	queue   []*batchItem
	running bool
	// batches and items count the shared transactions and the commits in
	// them (for tests).
	batches, items int
}

type batchItem struct {
	fn   func(tx store.Ops) error
	done chan error
}

// commit runs fn in a transaction, shared with other commits when some are
// queued. fn may run more than once (a shared transaction that fails is
// committed again commit by commit, and PostgreSQL retries transactions),
// so it must change nothing outside the transaction. It returns fn's
// error, or the transaction's.
func (b *batcher) commit(ctx context.Context, fn func(tx store.Ops) error) error {
	if b.st.Dialect() != "sqlite" {
		// PostgreSQL runs separate transactions in parallel, and the
		// statements of one transaction one after another on one
		// connection: a profile of 1,000 due rotations showed it waiting
		// on the daemon's next statement, not on commits. Shared
		// transactions only help SQLite's one writer.
		return secrets.RetryConflict(ctx, func() error { return b.st.InTx(ctx, fn) })
	}
	it := &batchItem{fn: fn, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, it)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	if lead {
		b.lead(context.WithoutCancel(ctx))
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		// The batch goes on without this caller; its outcome is lost to
		// it, as for any transaction whose caller went away mid-commit.
		return ctx.Err()
	}
}

// lead commits one batch; if more commits queued meanwhile, another
// goroutine leads the next, so that no caller waits for more than its
// own batch.
func (b *batcher) lead(ctx context.Context) {
	b.mu.Lock()
	n := min(len(b.queue), maxBatch)
	items := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.batches++
	b.items += n
	b.mu.Unlock()
	b.run(ctx, items)
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.running = false
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.lead(ctx)
}

func (b *batcher) run(ctx context.Context, items []*batchItem) {
	if len(items) > 1 {
		err := b.st.InTx(ctx, func(tx store.Ops) error {
			for _, it := range items {
				if err := it.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			for _, it := range items {
				it.done <- nil
			}
			return
		}
		// One of them failed (a lost lease, a version-number race with
		// another daemon): each on its own, so that one commit's failure
		// is not the others'.
	}
	for _, it := range items {
		it.done <- secrets.RetryConflict(ctx, func() error { return b.st.InTx(ctx, it.fn) })
	}
}

// stats returns how many shared transactions ran and how many commits
// they held.
func (b *batcher) stats() (batches, items int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batches, b.items
}
