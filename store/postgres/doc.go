// Package postgres is the store.Store backend for PostgreSQL (lib/pq),
// for production and for several daemons sharing one database.
//
// Schema. The tables live in the first schema of the connection's
// search_path (set it with a search_path DSN parameter to share a database
// between deployments or tests). Migrations are embedded .sql files
// applied at Open under a session-level advisory lock keyed on the schema
// name, each in its own transaction with its schema_migrations row, so two
// daemons starting together apply each migration once and Open is
// idempotent. Times are timestamptz, written truncated to the microsecond
// (PostgreSQL would round) and read back as UTC; durations are bigint
// nanoseconds; names use COLLATE "C" so ordering and cursors agree with
// the SQLite backend byte for byte and prefix LIKE scans use the btree.
//
// Transactions. InTx runs READ COMMITTED and retries fn (up to five
// times, with a short jittered backoff) when PostgreSQL reports a
// serialization failure (40001) or a deadlock (40P01). Inserts that may
// hit a unique constraint use ON CONFLICT DO NOTHING and report
// store.ErrConflict without raising, so a conflict does not abort the
// caller's transaction; other errors (foreign-key violations, which map
// to store.ErrNotFound) do abort it, as PostgreSQL always does.
//
// Concurrency. Claims of due rotations and outbox events select their rows
// FOR UPDATE SKIP LOCKED and update them in the same statement, so each
// row goes to exactly one claimer; see package storetest for the lease
// protocol. AuditHead inside InTx locks the one-row audit_head table
// (SELECT ... FOR UPDATE), which AppendAudit advances, so appenders that
// read the head and append head+1 serialize and the log stays gap-free.
//
// Code. The operations are written once for both SQL backends in
// store/internal/sqlops, with ? placeholders that this package's querier
// numbers ($1, $2, …); this package has the connection pool, transactions
// and their retries, migrations and PostgreSQL's dialect (dialect.go):
// timestamptz values, FOR UPDATE, LIKE matches, the claims with SKIP
// LOCKED and the windowed outbox claim, and the advisory claim locks.
//
// Known limit: outbox IDs come from an identity sequence, so they are
// allocated in insertion order but may become visible out of order when
// transactions commit concurrently. ClaimOutbox is unaffected; a reader
// paging with ListOutboxAfter may skip an event committed late with a
// lower ID, and should treat the outbox as at-least-once with a periodic
// full catch-up.
package postgres
