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
// coherent with LISTEN/NOTIFY (notify.go, notifier.go). Every write of a
// secret calls NotifySecretChanged inside its transaction, which upserts
// the secret's row in secret_changes with the transaction's id
// (pg_current_xact_id()) and remembers the name; after the commit, InTx
// hands the names to the store's notifier, and waits (at most 250 ms)
// until they were sent. The notifier sends one NOTIFY per batch on the
// schema's channel (rotary_changes_ and 16 hex digits of
// md5(current_schema())), on a connection of its own: whatever
// committed while the previous NOTIFY was on its way goes in the next,
// as "!c xid:name xid:name …", or as "!many" when that would reach
// PostgreSQL's 8000-byte payload limit. The notice used to be a
// pg_notify inside the writing transaction, but PostgreSQL serializes
// the commits of notifying transactions (a server-wide lock held through
// the commit record's flush: 3,230 plain commits/s against 711–787 with
// pg_notify in pgbench on the 2-vCPU VM; see BENCHMARKS.md), so every
// secret write of every daemon committed one at a time. Now only the
// notifiers' small transactions take that lock.
//
// A Listener per daemon holds its own connection (lib/pq's pq.Listener,
// which reconnects with backoff) and hands each name to the read cache;
// a lone name without "!" (a daemon before batching) is one change.
// After every (re)connection it resets its subscribers (the whole cache
// goes), since notices sent while it was away are lost. Two checks
// bound what notices can miss. (1) A daemon that dies between its commit
// and its notice, or a notice that is late: every MaxLag/4 (default
// 250 ms) the listener reads a snapshot (pg_current_snapshot()) and then
// the secret_changes rows of the transactions that may have committed
// since its previous snapshot (ids at or past its xmax, or in progress
// then) and hands over those no notice brought (it keeps the newest
// id handed over per name). Whatever the second statement does not see
// committed after the first one's snapshot, so the next check finds it;
// the first snapshot is read before the reset of each (re)connection for
// the same reason. A check started at t vouches for every change
// committed before t. (2) A connection that dies silently (a half-open
// TCP connection) or a stalled listener: every MaxLag/4 the listener
// NOTIFYs a sequence number of its own through the pool; receiving it
// proves that every notice sent before has arrived. Current holds only
// while a check and a notice of its own both came back within MaxLag and
// no loss has been seen, so a cache never answers with a change
// committed more than MaxLag ago missing, and a lost connection bypasses
// it at once. Costs: one upserted row per changed secret per write
// transaction; one NOTIFY transaction per batch per daemon; two small
// queries and one tiny NOTIFY transaction per daemon every 250 ms; two
// connections per daemon (listener, notifier). secret_changes keeps one
// row per secret name ever written (purged names included). A listener
// that stops reading lets the server's notification queue (8 GB) fill,
// after which NOTIFYs fail (and the checks take over).
//
// Known limit: outbox IDs come from an identity sequence, so they are
// allocated in insertion order but may become visible out of order when
// transactions commit concurrently. ClaimOutbox is unaffected; a reader
// paging with ListOutboxAfter may skip an event committed late with a
// lower ID, and should treat the outbox as at-least-once with a periodic
// full catch-up.
package postgres
