// Package sqlops is store.Ops written once for both SQL backends
// (store/sqlite and store/postgres) over a small Dialect: how a backend
// encodes times and "no limit", translates its errors, spells the few
// clauses that differ (row locks, boolean conditions, the stage list,
// prefix and glob matches, the lock that serializes claimers), and runs
// the few operations whose SQL shares nothing (the claims, MarkDelivered's
// id list). Queries use ? placeholders; a backend whose driver wants
// another style rewrites them in its Querier (PostgreSQL: $1, $2, …).
//
// What stays in each backend: opening and pooling connections,
// migrations, transactions (IMMEDIATE on SQLite, READ COMMITTED with
// retries on PostgreSQL), SQLite's statement cache and its read and write
// pools, and the Dialect itself.
//
// Times are decoded from either representation (SQLite's INTEGER unix
// microseconds, PostgreSQL's timestamptz), always as UTC.
package sqlops

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlcol"
)

// Querier is what *sql.DB, *sql.Tx and a backend's wrappers of them have
// in common.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// DB is a backend's database outside any transaction.
type DB interface {
	// Reader is where plain reads go (SQLite: the read pool).
	Reader() Querier
	// Writer is where single-statement writes go (SQLite: the one write
	// connection, whose statement takes the write lock when it starts).
	Writer() Querier
	// Atomic runs fn in a new transaction and commits it when fn returns
	// nil; it rolls back and returns fn's error otherwise.
	Atomic(ctx context.Context, fn func(q Querier) error) error
}

// Dialect is what differs between the SQL backends.
type Dialect interface {
	// Time is a time's column value; Limit is a LIMIT value where n <= 0
	// means no limit.
	Time(t time.Time) any
	Limit(n int) any

	// Translate maps driver errors to store sentinels (sql.ErrNoRows to
	// store.ErrNotFound, unique violations to store.ErrConflict).
	Translate(err error) error
	// IsForeignKey reports a foreign-key violation.
	IsForeignKey(err error) bool

	// ForUpdate is the clause appended to a SELECT that must lock its rows
	// until the transaction ends (" FOR UPDATE"), or "" where a write
	// transaction already keeps every other writer out (SQLite).
	ForUpdate() string
	// SkipLocked is the clause appended to a SELECT that must lock its
	// rows and skip those other transactions hold (" FOR UPDATE SKIP
	// LOCKED"), or "" where a write transaction keeps every other writer
	// out (SQLite).
	SkipLocked() string
	// NewAuditChain is a query returning the number of a new writer chain
	// (at least store.AuditFirstWriterChain) that no concurrent
	// transaction is given too, or where one writer runs at a time
	// (SQLite), the one after the highest.
	NewAuditChain() string
	// StageList is the expression joining a version's stage names with
	// char(31), from the rows of secret_stages st.
	StageList() string
	// PrefixMatch is a condition on col matching names that start with
	// prefix (not empty), literally, served by col's index.
	PrefixMatch(col, prefix string) (cond string, args []any)
	// GlobMatch is a condition on col matching one of globs (not empty):
	// '*' any run of characters, '?' one, anything else itself,
	// case-sensitively.
	GlobMatch(col string, globs []string) (cond string, args []any)
	// IsTrue is the condition that boolean column col is true, spelled as
	// the column's partial indexes spell it.
	IsTrue(col string) string

	// The operations whose SQL shares nothing.

	// ClaimDueRotations leases due rotations in one statement on q and
	// returns the claimed rows (RotationCols); the caller sorts them.
	ClaimDueRotations(ctx context.Context, q Querier, p store.ClaimParams) (*sql.Rows, error)
	// ClaimOutbox leases undelivered events on q, where claimers are
	// serialized (ClaimLock); the caller sorts them. Its errors say
	// "claim outbox".
	ClaimOutbox(ctx context.Context, q Querier, p store.ClaimParams) ([]store.OutboxEvent, error)
	// ClaimHookDeliveries leases due pending deliveries on q, where
	// claimers are serialized, adding one to their attempts, and returns
	// the claimed rows (DeliveryCols); the caller sorts them.
	ClaimHookDeliveries(ctx context.Context, q Querier, p store.ClaimParams) (*sql.Rows, error)

	// ClaimLock is the statement that serializes the claimers of queue
	// ("outbox", "hook_deliveries") until the transaction ends, or ""
	// where every write statement serializes already (SQLite's one
	// writer): a claim then is one statement on the writer, or in the
	// caller's transaction, with no transaction of its own.
	ClaimLock(queue string) string
	// Int64In is a condition on col being one of ids; MaxInList is how
	// many ids one condition may hold (0: any number).
	Int64In(col string, ids []int64) (cond string, args []any)
	MaxInList() int

	// NotifySecretChanged tells the other daemons on the database that
	// secret name changed, recorded on q (sent after q's transaction
	// commits), or does nothing where one daemon owns the store (SQLite).
	NotifySecretChanged(ctx context.Context, q Querier, name string) error
}

// NotifySecretChanged implements store.Ops through the dialect.
func (o *Ops) NotifySecretChanged(ctx context.Context, name string) error {
	return o.d.NotifySecretChanged(ctx, o.w(), name)
}

// Ops implements store.Ops on a backend's database, or on one of its
// transactions.
type Ops struct {
	d  Dialect
	db DB
	tx Querier // nil outside a transaction
	q  *queries
}

// queries are the statements that take a dialect's clause, built once so
// that a call does not concatenate them again.
type queries struct {
	getVersion, listVersions, listVersionsNoEnvelope, versionsNotOnKeyVersion string
	rotationForUpdate, checkRotationLease, earliestDue, auditHeadForUpdate    string
	claimAuditChain                                                           string
}

// New returns the operations of db outside any transaction.
func New(d Dialect, db DB) *Ops {
	versionCols, noEnvelope := versionColsWith(d, "v.envelope"), versionColsWith(d, "NULL")
	return &Ops{d: d, db: db, q: &queries{
		getVersion: `SELECT ` + versionCols + ` FROM secret_versions v
		WHERE v.secret = ? AND v.version = ?`,
		listVersions: `SELECT ` + versionCols + ` FROM secret_versions v
		WHERE v.secret = ? ORDER BY v.version`,
		listVersionsNoEnvelope: `SELECT ` + noEnvelope + ` FROM secret_versions v
		WHERE v.secret = ? ORDER BY v.version`,
		versionsNotOnKeyVersion: `SELECT ` + versionCols + ` FROM secret_versions v
		WHERE v.key_id = ? AND v.key_version <> ? AND (v.secret, v.version) > (?, ?)
		ORDER BY v.secret, v.version LIMIT ?`,
		rotationForUpdate: `SELECT ` + RotationCols + ` FROM rotations WHERE secret = ?` + d.ForUpdate(),
		checkRotationLease: `SELECT 1 FROM rotations
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> '' AND lease_expires_at > ?` + d.ForUpdate(),
		earliestDue: `SELECT next_due_at, lease_owner, lease_expires_at FROM rotations
		WHERE ` + d.IsTrue("enabled") + ` AND next_due_at IS NOT NULL ORDER BY next_due_at LIMIT 64`,
		auditHeadForUpdate: auditHeadQuery + d.ForUpdate(),
		claimAuditChain: `SELECT chain, seq, hash FROM audit_heads WHERE chain >= ?
		ORDER BY chain LIMIT 1` + d.SkipLocked(),
	}}
}

// WithTx returns o's operations inside transaction tx. It is a function
// rather than a method so that a Store embedding *Ops offers exactly
// store.Ops.
func WithTx(o *Ops, tx Querier) *Ops {
	c := *o
	c.tx = tx
	return &c
}

// r is where reads go.
func (o *Ops) r() Querier {
	if o.tx != nil {
		return o.tx
	}
	return o.db.Reader()
}

// w is where single-statement writes go.
func (o *Ops) w() Querier {
	if o.tx != nil {
		return o.tx
	}
	return o.db.Writer()
}

// atomic runs fn in the caller's transaction, or in a new one.
func (o *Ops) atomic(ctx context.Context, fn func(q Querier) error) error {
	if o.tx != nil {
		return fn(o.tx)
	}
	return o.db.Atomic(ctx, fn)
}

func (o *Ops) translate(err error) error { return o.d.Translate(err) }

// insert runs an INSERT that ends with ON CONFLICT DO NOTHING and reports
// store.ErrConflict when no row went in: a unique conflict then does not
// abort the caller's transaction (PostgreSQL would abort it on a raised
// error). Other errors are translated.
func (o *Ops) insert(ctx context.Context, q Querier, query string, args ...any) error {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return o.translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrConflict
	}
	return nil
}

func (o *Ops) count(ctx context.Context, table string) (int, error) {
	var n int
	if err := o.r().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, o.translate(err))
	}
	return n, nil
}

// serialized runs fn where claimers of queue serialize: in the caller's
// transaction or a new one, after the dialect's claim lock; or, when the
// dialect has none, as it is on the writer (a single statement).
// what names the operation in the lock's error.
func (o *Ops) serialized(ctx context.Context, queue, what string, fn func(q Querier) error) error {
	lock := o.d.ClaimLock(queue)
	if lock == "" {
		return fn(o.w())
	}
	return o.atomic(ctx, func(q Querier) error {
		if _, err := q.ExecContext(ctx, lock); err != nil {
			return fmt.Errorf("%s: lock: %w", what, o.translate(err))
		}
		return fn(q)
	})
}

// DefaultClaimLimit applies when ClaimParams.Limit is not positive.
const DefaultClaimLimit = 100

// ClaimLimit is the batch size of a claim.
func ClaimLimit(n int) int {
	if n <= 0 {
		return DefaultClaimLimit
	}
	return n
}

// Collect scans every row with the destinations dest returns.
func Collect[T any](d Dialect, rows *sql.Rows, what string, dest func(*T) []any) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(dest(&v)...); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, d.Translate(err))
	}
	return out, nil
}

// collectScalar scans a one-column result.
func collectScalar[T any](d Dialect, rows *sql.Rows, what string) ([]T, error) {
	return Collect(d, rows, what, func(v *T) []any { return []any{v} })
}

// Column scanners and argument helpers.
type (
	bcol       = sqlcol.Bytes
	nullString = sqlcol.NullString
	stagesCol  = sqlcol.Stages
	tcol       = sqlcol.Time
	ntcol      = sqlcol.NullTime
)

type jsonCol[T any] = sqlcol.JSON[T]

var (
	mustAffect = sqlcol.MustAffect
	aliasArg   = sqlcol.AliasArg
	jsonArg    = sqlcol.JSONArg
	secretJSON = sqlcol.SecretJSON
	bytesArg   = sqlcol.BytesArg
)

// tpa is an optional time's column value; nil is NULL.
func (o *Ops) tpa(t *time.Time) any {
	if t == nil {
		return nil
	}
	return o.d.Time(*t)
}
