package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlops"
)

// dialect is SQLite's sqlops.Dialect.
type dialect struct{}

var _ sqlops.Dialect = dialect{}

// Time is unix microseconds.
func (dialect) Time(t time.Time) any { return t.UnixMicro() }

// Limit -1 is no limit.
func (dialect) Limit(n int) any {
	if n <= 0 {
		return -1
	}
	return n
}

func (dialect) Translate(err error) error   { return translate(err) }
func (dialect) IsForeignKey(err error) bool { return isFK(err) }

// ForUpdate is empty: the IMMEDIATE transaction holds the write lock.
func (dialect) ForUpdate() string { return "" }

// SkipLocked is empty: the IMMEDIATE transaction holds the write lock.
func (dialect) SkipLocked() string { return "" }

// NewAuditChain is the one after the highest writer chain: one writer at
// a time.
func (dialect) NewAuditChain() string {
	return `SELECT COALESCE(MAX(chain) + 1, 2) FROM audit_heads WHERE chain >= 2`
}

func (dialect) StageList() string { return `group_concat(st.stage, char(31))` }

// PrefixMatch is a byte range, so '%', '_' and '\' in names are literal
// and the primary key index serves the scan.
func (dialect) PrefixMatch(col, prefix string) (string, []any) {
	if end, ok := prefixEnd(prefix); ok {
		return col + " >= ? AND " + col + " < ?", []any{prefix, end}
	}
	return col + " >= ?", []any{prefix}
}

// GlobMatch uses GLOB, which has the same '*' and '?' and is
// case-sensitive; '[' would open a character class, so it is made literal.
func (dialect) GlobMatch(col string, globs []string) (string, []any) {
	or := make([]string, len(globs))
	args := make([]any, len(globs))
	for i, g := range globs {
		or[i] = col + " GLOB ?"
		args[i] = strings.ReplaceAll(g, "[", "[[]")
	}
	return "(" + strings.Join(or, " OR ") + ")", args
}

// prefixEnd returns the smallest string greater than every string that
// starts with p, in byte order; false when there is none.
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// pools is the Store's sqlops.DB: reads on the read pool, writes on the
// write connection, both through the statement caches.
type pools struct{ s *Store }

func (p pools) Reader() sqlops.Querier { return poolQuerier{p.s.rstmts} }
func (p pools) Writer() sqlops.Querier { return poolQuerier{p.s.wstmts} }

// Atomic runs fn in a new IMMEDIATE transaction.
func (p pools) Atomic(ctx context.Context, fn func(q sqlops.Querier) error) error {
	tx, err := p.s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer p.s.wstmts.preparePending(ctx)
	if err := fn(txQuerier{tx: tx, c: p.s.wstmts}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", translate(err))
	}
	return nil
}

// IsTrue compares with 1, as the partial indexes do (rotations_due_claim).
func (dialect) IsTrue(col string) string { return col + " = 1" }

// ClaimDueRotations is one UPDATE statement: it holds the write lock from
// its start, so two claimers (in this process or another) never see the
// same free row.
func (dialect) ClaimDueRotations(ctx context.Context, q sqlops.Querier, p store.ClaimParams) (*sql.Rows, error) {
	return q.QueryContext(ctx, `UPDATE rotations SET lease_owner = ?, lease_expires_at = ?
		WHERE secret IN (
			SELECT secret FROM rotations
			WHERE enabled = 1 AND next_due_at <= ?
				AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at <= ?)
			ORDER BY next_due_at, secret
			LIMIT ?)
		RETURNING `+sqlops.RotationCols,
		p.Owner, ta(p.Now.Add(p.LeaseFor)), ta(p.Now), ta(p.Now), sqlops.ClaimLimit(p.Limit))
}

// ClaimOutbox is one UPDATE statement; SQLite has one writer, so claims
// serialize. An event is claimable when free (or already this owner's)
// and no earlier undelivered event of its secret is leased by another
// owner; an earlier claimable one sorts first, so it is in the same batch.
func (dialect) ClaimOutbox(ctx context.Context, q sqlops.Querier, p store.ClaimParams) ([]store.OutboxEvent, error) {
	now := ta(p.Now)
	rows, err := q.QueryContext(ctx, `UPDATE outbox SET lease_owner = ?, lease_expires_at = ?
		WHERE id IN (
			SELECT o.id FROM outbox o
			WHERE o.delivered_at IS NULL
				AND (o.lease_owner = '' OR o.lease_owner = ? OR o.lease_expires_at IS NULL OR o.lease_expires_at <= ?)
				AND NOT EXISTS (SELECT 1 FROM outbox e
					WHERE e.secret = o.secret AND e.id < o.id AND e.delivered_at IS NULL
						AND e.lease_owner <> '' AND e.lease_owner <> ? AND e.lease_expires_at > ?)
			ORDER BY o.id
			LIMIT ?)
		RETURNING `+sqlops.OutboxCols,
		p.Owner, ta(p.Now.Add(p.LeaseFor)), p.Owner, now, p.Owner, now, sqlops.ClaimLimit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", translate(err))
	}
	return sqlops.Collect(dialect{}, rows, "claim outbox", sqlops.OutboxDest)
}

// ClaimLock is empty: every write statement takes the one write lock.
func (dialect) ClaimLock(string) string { return "" }

// Int64In is an IN list of placeholders.
func (dialect) Int64In(col string, ids []int64) (string, []any) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return col + " IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")", args
}

// MaxInList keeps IN lists short (the statement cache holds few lengths).
func (dialect) MaxInList() int { return 500 }

// ClaimHookDeliveries is one UPDATE statement, like ClaimOutbox. A
// delivery is claimed only when no pending delivery of an earlier event
// of the same hook and secret exists, leased or not.
func (dialect) ClaimHookDeliveries(ctx context.Context, q sqlops.Querier, p store.ClaimParams) (*sql.Rows, error) {
	now := ta(p.Now)
	return q.QueryContext(ctx, `UPDATE hook_deliveries
		SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ?
		WHERE (hook, event_id) IN (
			SELECT d.hook, d.event_id FROM hook_deliveries d
			WHERE d.state = 'pending' AND d.next_attempt_at <= ?
				AND (d.lease_owner = '' OR d.lease_expires_at IS NULL OR d.lease_expires_at <= ?)
				AND NOT EXISTS (SELECT 1 FROM hook_deliveries e
					WHERE e.hook = d.hook AND e.secret = d.secret AND e.state = 'pending' AND e.event_id < d.event_id)
			ORDER BY d.event_id, d.hook
			LIMIT ?)
		RETURNING `+sqlops.DeliveryCols,
		p.Owner, ta(p.Now.Add(p.LeaseFor)), now, now, now, sqlops.ClaimLimit(p.Limit))
}
