package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlops"
)

// dialect is PostgreSQL's sqlops.Dialect.
type dialect struct{}

var _ sqlops.Dialect = dialect{}

// Time is UTC, truncated to microseconds (PostgreSQL would round).
func (dialect) Time(t time.Time) any { return ta(t) }

// Limit NULL is no limit.
func (dialect) Limit(n int) any { return lim(n) }

func (dialect) Translate(err error) error   { return translate(err) }
func (dialect) IsForeignKey(err error) bool { return isFK(err) }

// ForUpdate locks the selected rows until the transaction ends.
func (dialect) ForUpdate() string { return " FOR UPDATE" }

// SkipLocked locks the selected rows, skipping those others hold.
func (dialect) SkipLocked() string { return " FOR UPDATE SKIP LOCKED" }

// NewAuditChain draws from a sequence: never the same number twice.
func (dialect) NewAuditChain() string { return `SELECT nextval('audit_chain_ids')` }

func (dialect) StageList() string { return `string_agg(st.stage, chr(31) ORDER BY st.stage)` }

// PrefixMatch is a LIKE with '%', '_' and '\' escaped; with the "C"
// collation the primary key index serves it.
func (dialect) PrefixMatch(col, prefix string) (string, []any) {
	return col + ` LIKE ? ESCAPE '\'`, []any{likePrefix(prefix)}
}

// GlobMatch turns the globs into LIKE patterns ('*' → '%', '?' → '_',
// the rest escaped), passed as one array parameter.
func (dialect) GlobMatch(col string, globs []string) (string, []any) {
	likes := make([]string, len(globs))
	for i, g := range globs {
		likes[i] = likeGlob(g)
	}
	return col + ` LIKE ANY (?::text[])`, []any{pq.Array(likes)}
}

// likeGlob is the LIKE pattern (default escape character '\') of a glob:
// '*' matches any run, '?' one character, anything else itself.
func likeGlob(g string) string {
	var b strings.Builder
	for _, c := range g {
		switch c {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// likePrefix is a LIKE pattern (escape character '\') matching strings
// that start with p.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// pool is the Store's sqlops.DB: the connection pool, reads and writes
// alike.
type pool struct {
	db *sql.DB
	n  *notifier
}

func (p pool) Reader() sqlops.Querier { return dbQuerier(p) }
func (p pool) Writer() sqlops.Querier { return dbQuerier(p) }

// Atomic runs fn in a new READ COMMITTED transaction.
func (p pool) Atomic(ctx context.Context, fn func(q sqlops.Querier) error) error {
	tx, err := p.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	if err := fn(txQuerier{tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit: %w", translate(err))
	}
	return nil
}

// dbQuerier and txQuerier run queries written with ? placeholders on the
// pool or in a transaction, numbering the placeholders for PostgreSQL.
// In a transaction of InTx, changes collects the secrets the transaction
// changed, whose notices go out after its commit (notifier.go).
type (
	dbQuerier struct {
		db *sql.DB
		n  *notifier
	}
	txQuerier struct {
		tx      *sql.Tx
		changes *[]change
	}
)

func (q dbQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.db.ExecContext(ctx, rebind(query), args...)
}

func (q dbQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.db.QueryContext(ctx, rebind(query), args...)
}

func (q dbQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.db.QueryRowContext(ctx, rebind(query), args...)
}

func (q txQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.tx.ExecContext(ctx, rebind(query), args...)
}

func (q txQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.tx.QueryContext(ctx, rebind(query), args...)
}

func (q txQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.tx.QueryRowContext(ctx, rebind(query), args...)
}

// maxRebound bounds the rewritten queries kept; past it (many distinct
// glob counts) queries are rewritten on every call.
const maxRebound = 512

var rebound struct {
	sync.RWMutex
	m map[string]string
}

// rebind numbers the ? placeholders of q outside quoted literals ($1, $2,
// …). A query without ? (one written for PostgreSQL alone) is returned
// as it is.
func rebind(q string) string {
	if strings.IndexByte(q, '?') < 0 {
		return q
	}
	rebound.RLock()
	r, ok := rebound.m[q]
	rebound.RUnlock()
	if ok {
		return r
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '\'':
			quoted = !quoted
			b.WriteByte(c)
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	r = b.String()
	rebound.Lock()
	if rebound.m == nil {
		rebound.m = map[string]string{}
	}
	if len(rebound.m) < maxRebound {
		rebound.m[q] = r
	}
	rebound.Unlock()
	return r
}

// IsTrue is the column itself, as the partial indexes have it
// (rotations_due_claim).
func (dialect) IsTrue(col string) string { return col }

// ClaimDueRotations selects the due rows FOR UPDATE SKIP LOCKED:
// concurrent claimers skip rows another claimer has locked, and the UPDATE
// re-checks the locked rows' latest version, so each due rotation goes to
// exactly one claimer.
func (dialect) ClaimDueRotations(ctx context.Context, q sqlops.Querier, p store.ClaimParams) (*sql.Rows, error) {
	return q.QueryContext(ctx, `WITH due AS (
			SELECT secret FROM rotations
			WHERE enabled AND next_due_at <= $3
				AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at <= $3)
			ORDER BY next_due_at, secret
			LIMIT $4
			FOR UPDATE SKIP LOCKED)
		UPDATE rotations r SET lease_owner = $1, lease_expires_at = $2
		FROM due WHERE r.secret = due.secret
		RETURNING `+prefixed("r", sqlops.RotationCols),
		p.Owner, ta(p.Now.Add(p.LeaseFor)), ta(p.Now), sqlops.ClaimLimit(p.Limit))
}

// prefixed qualifies a column list with a table alias.
func prefixed(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// ClaimOutbox picks the claimable events among a window of the oldest
// undelivered ones. An event is claimable when free (or already this
// owner's) and no earlier undelivered event of its secret is leased by
// another owner; an earlier claimable one sorts first, so it is in the
// same batch.
//
// The window is read in id order from the partial index: without it the
// planner may filter the whole backlog before the LIMIT (a claim then
// costs time in proportion to the backlog; BENCHMARKS.md, relay
// throughput). When the window was full and held fewer claimable events
// than asked for (other owners lease its head), it is doubled and the
// claim tried again; claims are serialized by the advisory lock
// (ClaimLock).
func (dialect) ClaimOutbox(ctx context.Context, q sqlops.Querier, p store.ClaimParams) ([]store.OutboxEvent, error) {
	limit := sqlops.ClaimLimit(p.Limit)
	var es []store.OutboxEvent
	for window := max(4*limit, 64); ; window *= 2 {
		rows, err := q.QueryContext(ctx, `WITH head AS MATERIALIZED (
				SELECT id, secret, lease_owner, lease_expires_at FROM outbox
				WHERE delivered_at IS NULL
				ORDER BY id
				LIMIT $5),
			free AS (
				SELECT h.id FROM head h
				WHERE (h.lease_owner = '' OR h.lease_owner = $1 OR h.lease_expires_at IS NULL OR h.lease_expires_at <= $3)
					AND NOT EXISTS (SELECT 1 FROM outbox e
						WHERE e.secret = h.secret AND e.id < h.id AND e.delivered_at IS NULL
							AND e.lease_owner <> '' AND e.lease_owner <> $1 AND e.lease_expires_at > $3)
				ORDER BY h.id
				LIMIT $4)
			UPDATE outbox o SET lease_owner = $1, lease_expires_at = $2
			FROM free WHERE o.id = free.id
			RETURNING `+prefixed("o", sqlops.OutboxCols),
			p.Owner, ta(p.Now.Add(p.LeaseFor)), ta(p.Now), limit, window)
		if err != nil {
			return nil, fmt.Errorf("claim outbox: %w", translate(err))
		}
		got, err := sqlops.Collect(dialect{}, rows, "claim outbox", sqlops.OutboxDest)
		if err != nil {
			return nil, err
		}
		es = append(es, got...)
		if len(es) >= limit {
			return es, nil
		}
		// Fewer than asked: done unless the window was full.
		var full bool
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) >= $1 FROM (SELECT 1 FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1) w`,
			window).Scan(&full); err != nil {
			return nil, fmt.Errorf("claim outbox: %w", translate(err))
		}
		if !full {
			return es, nil
		}
		limit -= len(got)
	}
}

// ClaimLock takes an advisory transaction lock per queue and schema: with
// READ COMMITTED, two claimers running at once would each see the other's
// earlier events as free and split a secret's events between them.
func (dialect) ClaimLock(queue string) string {
	return `SELECT pg_advisory_xact_lock(hashtextextended('rotary.claim.` + queue + `.' || current_schema(), 0))`
}

// Int64In is one array parameter.
func (dialect) Int64In(col string, ids []int64) (string, []any) {
	return col + " = ANY(?)", []any{pq.Int64Array(ids)}
}

// MaxInList is 0: one array holds any number of ids.
func (dialect) MaxInList() int { return 0 }

// ClaimHookDeliveries locks the claimable rows (FOR UPDATE OF d) and
// updates them in one statement, under the advisory lock (ClaimLock). A
// delivery is claimed only when no pending delivery of an earlier event
// of the same hook and secret exists, leased or not.
func (dialect) ClaimHookDeliveries(ctx context.Context, q sqlops.Querier, p store.ClaimParams) (*sql.Rows, error) {
	return q.QueryContext(ctx, `WITH free AS (
			SELECT d.hook, d.event_id FROM hook_deliveries d
			WHERE d.state = 'pending' AND d.next_attempt_at <= $3
				AND (d.lease_owner = '' OR d.lease_expires_at IS NULL OR d.lease_expires_at <= $3)
				AND NOT EXISTS (SELECT 1 FROM hook_deliveries e
					WHERE e.hook = d.hook AND e.secret = d.secret AND e.state = 'pending' AND e.event_id < d.event_id)
			ORDER BY d.event_id, d.hook
			LIMIT $4
			FOR UPDATE OF d)
		UPDATE hook_deliveries d SET lease_owner = $1, lease_expires_at = $2, attempts = d.attempts + 1, updated_at = $3
		FROM free WHERE d.hook = free.hook AND d.event_id = free.event_id
		RETURNING `+prefixed("d", sqlops.DeliveryCols),
		p.Owner, ta(p.Now.Add(p.LeaseFor)), ta(p.Now), sqlops.ClaimLimit(p.Limit))
}
