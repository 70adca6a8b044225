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
// protocol. The audit log is several chains, each with a row in
// audit_heads: ClaimAuditChain inside InTx locks the head of a writer
// chain no other transaction holds (FOR UPDATE SKIP LOCKED; a new chain
// numbered from the audit_chain_ids sequence when every one is held), so
// audit appenders of every daemon never wait for each other, and each
// chain stays gap-free; AuditHead inside InTx locks one chain's head.
//
// Code. The operations are written once for both SQL backends in
// store/internal/sqlops, with ? placeholders that this package's querier
// numbers ($1, $2, …); this package has the connection pool, transactions
// and their retries, migrations and PostgreSQL's dialect (dialect.go):
// timestamptz values, FOR UPDATE, LIKE matches, the claims with SKIP
// LOCKED and the windowed outbox claim, and the advisory claim locks.
//
// Change notifications. Daemons sharing a schema keep their read caches
// coherent with LISTEN/NOTIFY (notify.go). Every write of a secret calls
// NotifySecretChanged inside its transaction: pg_notify on the schema's
// channel (rotary_changes_ and 16 hex digits of md5(current_schema())),
// with the secret's name as payload, which PostgreSQL delivers when the
// transaction commits and drops if it rolls back. A Listener per daemon
// holds its own connection (lib/pq's pq.Listener, which reconnects with
// backoff) and hands each name to the read cache in commit order. After
// every (re)connection it resets its subscribers (the whole cache goes),
// since notices sent while it was away are lost. The fallback check: every
// MaxLag/4 (default 250 ms) the listener NOTIFYs a sequence number of its
// own through the pool; receiving it proves that every change committed
// before it was sent has been handled, because notices arrive in commit
// order. Current holds only while such a check came back within MaxLag
// and no loss has been seen, so a connection that dies silently (a
// half-open TCP connection) or a stalled listener makes the cache bypass
// itself within MaxLag, and a lost one at once. Costs: one pg_notify per
// write transaction, one tiny NOTIFY transaction per daemon every 250 ms,
// one connection per daemon. PostgreSQL serializes the commits of
// transactions that NOTIFY (a database-wide lock held through the commit
// record's flush), so concurrent secret writes commit one at a time; see
// BenchmarkCommitWithNotify. A listener that stops reading lets the
// server's notification queue (8 GB) fill, after which NOTIFYs fail.
//
// Known limit: outbox IDs come from an identity sequence, so they are
// allocated in insertion order but may become visible out of order when
// transactions commit concurrently. ClaimOutbox is unaffected; a reader
// paging with ListOutboxAfter may skip an event committed late with a
// lower ID, and should treat the outbox as at-least-once with a periodic
// full catch-up.
package postgres
