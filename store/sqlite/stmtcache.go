package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the prepared statements kept per pool; queries past
// it (such as MarkDelivered's many IN-list lengths) run unprepared.
const maxCachedStmts = 256

// stmtCache keeps one prepared *sql.Stmt per query text for a pool.
// Parsing a statement is a third of a simple read's cost on this driver.
//
// The write pool has one connection, so a statement must never be
// prepared on it from inside a transaction (the transaction holds that
// connection): queries first seen inside a transaction run unprepared and
// are queued; the transaction's owner prepares them once it has ended.
type stmtCache struct {
	db *sql.DB

	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]struct{}
	closed  bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, pending: map[string]struct{}{}}
}

// lookup returns the cached statement, or nil.
func (c *stmtCache) lookup(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

// queue records q for preparePending.
func (c *stmtCache) queue(q string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(c.pending) < maxCachedStmts {
		c.pending[q] = struct{}{}
	}
}

// get returns a statement for q, preparing it on the pool if needed; nil
// when the cache is full or preparing failed (the caller then runs q
// unprepared and sees the error there). The caller must not hold one of
// the pool's connections.
func (c *stmtCache) get(ctx context.Context, q string) *sql.Stmt {
	c.mu.Lock()
	st, full := c.m[q], len(c.m) >= maxCachedStmts || c.closed
	c.mu.Unlock()
	if st != nil || full {
		return st
	}
	// Prepare without holding mu: it may wait for a connection.
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.m[q]; prev != nil || c.closed {
		st.Close()
		return prev
	}
	c.m[q] = st
	return st
}

// preparePending prepares the queries queued from inside transactions.
func (c *stmtCache) preparePending(ctx context.Context) {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	qs := make([]string, 0, len(c.pending))
	for q := range c.pending {
		qs = append(qs, q)
	}
	clear(c.pending)
	c.mu.Unlock()
	for _, q := range qs {
		if ctx.Err() != nil {
			return
		}
		c.get(ctx, q)
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// poolQuerier runs queries on a pool through its statement cache.
type poolQuerier struct{ c *stmtCache }

func (p poolQuerier) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := p.c.get(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.c.db.ExecContext(ctx, q, args...)
}

func (p poolQuerier) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := p.c.get(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.c.db.QueryContext(ctx, q, args...)
}

func (p poolQuerier) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := p.c.get(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.c.db.QueryRowContext(ctx, q, args...)
}

// txQuerier runs queries in a write transaction, using statements already
// prepared on the write connection and queueing the others.
type txQuerier struct {
	tx *sql.Tx
	c  *stmtCache
}

func (t txQuerier) stmt(ctx context.Context, q string) *sql.Stmt {
	if st := t.c.lookup(q); st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	t.c.queue(q)
	return nil
}

func (t txQuerier) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, q, args...)
}

func (t txQuerier) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, q, args...)
}

func (t txQuerier) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, q, args...)
}
