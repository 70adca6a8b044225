// Package rotation is the engine that drives a rotator through its four
// steps, durably, for one secret at a time.
//
// # The step machine
//
// A rotation is a run record (store.RotationRun) whose Step field says
// where it stands. Each step's outcome is committed before the next
// starts, so a crash at any instant leaves a run that can be resumed:
//
//	create   nothing durable yet. The rotator makes the pending value; the
//	         value is stored as version N+1 with stage pending, and the run
//	         moves to "set", in ONE transaction. Nothing has touched the
//	         target before that commit.
//	set      the pending value may or may not be on the target. Fresh from
//	         create, the engine calls Set. Resumed after a crash, it first
//	         Tests pending: if the target accepts it, Set already ran and
//	         the run rolls forward to test; if not, Set runs again (Set is
//	         idempotent). Then the run moves to "test".
//	test     Set completed. The engine Tests pending (a few tries, for
//	         servers that take a moment). If pending keeps failing but
//	         current works, the run rolls back: the pending stage is
//	         dropped and the run ends rolled_back. If neither works the run
//	         goes back to "set" so the next attempt sets again (the test
//	         step's history entry says failed, never ok).
//	finish   pending works. One store transaction moves the stages
//	         (pending → current, current → previous), writes the rotated
//	         event and the audit record, updates the rotation state, and
//	         moves the run to "cleanup".
//	cleanup  the rotator's Finish: drop the old Redis password, and in an
//	         emergency change the other alternating user and end the old
//	         credential's sessions. Then the run ends succeeded. What
//	         Finish reports it did beyond the rotation
//	         (FinishRequest.Effects: sessions ended with their count, the
//	         credential made useless) is committed with that end, in the
//	         run's options JSON ("effects"; RunEffects reads it), so
//	         `rotate --wait`, the history and the API show it. Names of
//	         accounts only, never a value.
//
// Each step computes a transition (the run's next step or its end, and
// what it does to the secret: store the pending version, move the stages,
// drop pending) without touching the run; one commit (attempt.commit)
// persists it with the step's history entry, the events and the audit
// records, in one transaction that may be retried. The attempt sees the
// new run only once that transaction has committed. A step that fails
// before it has a transition leaves the run at its step and records a
// failed history entry.
//
// Invariant: at every instant at least one stored version is a working
// credential and the store knows which. Before set, current works; between
// set and finish, pending is stored (durable since create) and the resume
// rule finds which works; after finish, current is the tested value.
//
// # One rotation per secret
//
// A rotation holds the secret's lease (store.ClaimRotation /
// ClaimDueRotations), renewed while it runs. A daemon that dies loses the
// lease when it expires, and whoever claims the secret next resumes the
// unfinished run from its step. A hand-written new current version
// (secret put) overtakes the run: secrets clears the pending stage, and
// Engine.Put ends the run as abandoned in the same transaction. The
// engine driving it finds at its next step, or inside its next commit,
// that its pending version is no longer the pending stage and stops,
// recording the step as abandoned (never ok). Only this package writes
// runs.
//
// # Fencing
//
// A lease is only as good as its last renewal. A running rotation renews
// its lease every LeaseFor/6 and remembers until when the lease is known
// valid: the expiry it last wrote (by the claim or a renewal) minus a
// safety margin, Config.LeaseMargin (default LeaseFor/3; 40s of the
// default 2m lease). The margin covers clock skew between daemons and the
// time a call to the target takes to stop.
//
//   - Once that instant passes without a successful renewal (the store is
//     unreachable, or renewals fail for any other reason), the run's
//     context is cancelled with ErrLeaseLapsed, so a rotator call in
//     flight is aborted, and the run stops. A renewal refused with
//     store.ErrLeaseLost (another daemon took the secret) stops it at once.
//   - Before every call into the rotator (create, set, test, rollback,
//     cleanup) the engine checks that the lease is still known valid, so a
//     run never touches the target once its lease may have lapsed.
//   - Every durable step commit (the create transaction, each step move,
//     finish, rollback, cleanup, the failure record, the run's creation)
//     checks inside its transaction that this daemon still holds an
//     unexpired lease (store.CheckRotationLease; on PostgreSQL it locks the
//     rotation row, so another daemon's claim waits for the commit). A
//     daemon that lost the lease can never commit a step; its transaction
//     rolls back with store.ErrLeaseLost and it writes nothing more (no
//     history entry, no failure record): the lease's new owner resumes the
//     run from its last committed step.
//
// Leases change only through claim, renew, release and the housekeeping
// reclaim (a compare-and-swap on owner and expiry); PutRotation never
// writes them, and read-modify-writes of the rotation row use
// GetRotationForUpdate inside a transaction, so settings changes and run
// state updates cannot undo a claim, a renewal or each other.
//
// # Target binding
//
// A rotation may only touch the account it was configured for. When its
// settings are saved (Configure, `rotary rotation set`, which needs rotate
// on the secret and read on the admin secret), the engine asks the
// rotator (rotators.Targeter) for the identity of the account the current
// value names: engine, host, port, database and user, and for the
// alternating strategy the other user of the pair. The identity is stored
// with the settings (store.Rotation.Target); the admin value must name the
// same server. Changing the identity is a deliberate settings change
// (Settings.Rebind, `rotary rotation set --rebind`; without it Configure
// refuses with ErrRebindNeeded), and the rotation.set audit record says
// old → new (identity fields are never secret).
//
// Before every step that sends anything to the rotator (create, set, test,
// cleanup) the engine recomputes the identity of every value it is about
// to send (current, pending, the admin value's server) and compares it
// with the stored one. Any difference fails the attempt with an error
// naming the field, e.g.
//
//	target mismatch: field "username" is "postgres" in the pending version, the rotation is bound to "app"
//
// and nothing is sent. So a token that may write the secret cannot point
// the admin credential at another account, or send a new password to
// another host, by putting a value naming them. A previous version naming
// another account (the secret was moved and rebound, or a value for
// another account was put and replaced) is withheld from the rotator
// rather than sent, even in an emergency: what it names is not the
// rotation's to clean up or revoke. Settings saved before binding existed
// have no stored identity: such a rotation refuses to run (ErrNotBound)
// until `rotary rotation set` runs again. Rotators that touch no account
// (random) have no identity.
//
// # Rotator panics
//
// Every rotator call runs under recover: a panic fails that attempt with
// ErrRotatorPanicked ("rotator panicked"), whatever started it (API,
// schedule, resume). The panic value is never shown (it may hold a
// credential); the stack is logged.
//
// # Failures
//
// A failed attempt keeps its run (unless rolled back) and records the
// sanitized error as the rotation's last_error, with the rotation_failed
// event and an audit record. The next attempt is due after a capped
// exponential backoff with jitter; after FailingAfter consecutive failures
// the secret is marked failing and retried at the slower FailingInterval.
// A success clears the failure state: finish does, and so does a cleanup
// that succeeds on retry after failing (its failure was recorded after
// finish), so a stale retry time never starts a rotation nobody asked for.
// Errors pass through sensitive.Sanitize with every value the engine holds,
// so no password reaches the store, the logs or the API.
//
// Each layer of a failure's message names itself once: the engine the
// step ("set: …"), the rotator its engine ("postgres: …"), and the
// caller's error (FailedError) the secret and the next try, e.g.
// "prod/app-db: set: postgres: connect as \"app\": …; next try at
// 09:13:10 UTC (in 10m)". A failure the operator must fix by hand says
// the fix instead of the layers: when the rotator reports that neither
// the current nor the pending credential logs in
// (rotators.NoWorkingCredentialError, a password changed behind
// rotary's back), the message is that sentence plus `store the working
// one with "rotary secret put NAME"`, stored as last_error as well.
package rotation
