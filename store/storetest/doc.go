// Package storetest is the conformance suite every store.Store backend
// must pass: Run covers each method of store.Ops, the sentinel errors, the
// transaction rules of InTx, and the lease protocol under concurrency;
// RunConcurrentStores repeats the races across two stores opened on the
// same database, as two daemons would. Backends keep times to the
// microsecond (Precision), so comparisons truncate to it.
//
// Both run every test in each of Modes, as River's driver tests run every
// operation on the driver and on a transaction: once on the Store itself,
// once with each call made inside its own InTx through the transaction's
// store.Ops (the code paths a method takes when it joins the caller's
// transaction rather than opening its own).
//
// # The lease protocol
//
// Work that exactly one daemon may do at a time — a secret's rotation, an
// outbox event's delivery, a singleton housekeeping job — is taken with a
// lease: an owner name and an expiry time, both stored on the row. There
// is no lock manager and no consensus; the database row is the lease.
//
// Claims. ClaimDueRotations picks, in one statement, up to Limit rows that
// are enabled, due (NextDueAt <= Now) and free (no owner, or a lease whose
// expiry is <= Now), ordered by due time, and writes Owner and
// Now+LeaseFor into them. On PostgreSQL the candidate rows are selected
// FOR UPDATE SKIP LOCKED, so concurrent claimers skip each other's rows
// instead of waiting for them, and the UPDATE re-checks the condition on
// the row it locked; on SQLite the statement runs under the database's
// single write lock. Either way each due row goes to exactly one claimer.
// ClaimOutbox does the same for undelivered events ordered by ID.
// ClaimRotation takes one named rotation regardless of schedule (manual
// and emergency rotations) and fails with store.ErrConflict while another
// owner's lease is live; its own holder may claim it again, which renews.
// A Limit of zero or less claims a default batch of 100.
//
// Time. Every expiry is compared with the caller's Now, never the database
// clock, so a test can drive time and daemons must keep their clocks
// roughly in step (NTP); a lease should be several times longer than the
// clock skew plus the longest pause between renewals.
//
// Expiry and reclaim. A daemon that crashes simply stops renewing; once
// the expiry passes, the next claimer takes the row as if it were free.
// The engine resumes the rotation from its persisted step, which is why
// every step is idempotent. A lease that expired but was not yet taken is
// still the holder's: RenewRotationLease and ReleaseRotation only check
// that the owner matches, and fail with store.ErrLeaseLost once another
// owner has claimed the row (or it was released). A holder that gets
// ErrLeaseLost must stop touching the target and let the new owner finish.
//
// Only the lease methods write a lease. PutRotation ignores LeaseOwner and
// LeaseExpiresAt (a replace keeps the stored lease, an insert starts
// unleased), so a settings writer that read the row before another
// daemon's claim cannot undo it; GetRotationForUpdate locks the row for a
// read-modify-write inside InTx on PostgreSQL. ReclaimRotationLease (the
// housekeeping cleanup) clears a lease only if the named owner still holds
// it and it has expired, in one statement, so a renewal in between wins.
//
// Fencing. CheckRotationLease(secret, owner, now) succeeds only while
// owner holds a lease expiring after now. Called inside the transaction
// that commits a rotation step, it refuses the commit once the lease is
// gone (store.ErrLeaseLost rolls the transaction back), and on PostgreSQL
// it locks the row (FOR UPDATE), so another daemon's claim waits for the
// commit rather than slipping between check and commit.
//
// Named locks. TryLock(name, owner, now, until) takes a free or expired
// lock, or renews one the owner holds, in one upsert; it reports false
// while another owner's lock is live. Unlock removes the lock only if the
// owner holds it and is otherwise a no-op, so a deferred Unlock after the
// lock was lost is harmless.
//
// Audit appends to one chain serialize the same way: AuditHead(chain)
// inside InTx takes the PostgreSQL row lock on that chain's head row
// (SQLite's IMMEDIATE transaction already holds the write lock), so
// concurrent InTx{head -> append head+1} callers queue and the chain is
// gap-free. ClaimAuditChain instead hands concurrent transactions
// different chains (SKIP LOCKED): every chain is still gap-free, and on
// PostgreSQL one transaction holding its chain open does not hold up
// another's append (AuditChainsDoNotWait, with the negative control that
// asking for the held chain itself does wait).
package storetest
