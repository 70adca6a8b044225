// Package postgres is the built-in rotator for PostgreSQL role passwords
// (secret type db-credentials, engine "postgres"), over lib/pq.
//
// # Passwords never reach the server
//
// Set computes the role's SCRAM-SHA-256 verifier in the process
// (ScramVerifier: PBKDF2-HMAC-SHA-256 with a fresh 16-byte salt and 4096
// iterations, as PostgreSQL computes it, RFC 5802/7677) and sends
//
//	ALTER ROLE "name" PASSWORD 'SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>'
//
// PostgreSQL recognises a verifier and stores it as it is, so the
// plaintext is in no statement, no log_statement line, no
// pg_stat_statements entry and no error the server echoes. Role names are
// quoted with pq.QuoteIdentifier (and refused when PostgreSQL would not
// take them literally: NUL bytes, over 63 bytes), the verifier with
// pq.QuoteLiteral, and every other value is a bound parameter. Passwords
// go to the driver in its config struct, never in a connection string.
// Every error is scrubbed of every password the request carries.
//
// The verifier costs 4096 PBKDF2 rounds of CPU on every Set, and every
// login (the rotator's and the application's) costs the client the same
// again; Rotator.Iterations raises it (never lowers it below PostgreSQL's
// 4096).
//
// # Strategies
//
//   - single-user: the role logs in with its current password and changes
//     its own (PostgreSQL allows any role that). If the current password is
//     refused but the pending one logs in, an earlier Set already ran and
//     there is nothing to do: Set is idempotent.
//   - admin: the admin secret's role (CREATEROLE, and on PostgreSQL 16+
//     ADMIN OPTION on the role) changes the role's password.
//   - alternating: two roles, the secret's user and (by default) user_b.
//     The admin changes the password of the role that is not current, so
//     clients holding the previous value keep working. On first use the
//     rotator creates the second role, in one transaction with its password:
//     LOGIN, the first role's INHERIT/NOINHERIT, CONNECTION LIMIT and VALID
//     UNTIL, and every role membership the first has (pg_auth_members,
//     with the same ADMIN option, and on 16+ the same INHERIT and SET
//     options). Every later Set grants the second role any membership of
//     the first that it lacks (never revoking), in the same transaction as
//     the password change. Privileges granted on objects directly to the
//     first role are not copied: grant them to a group role both users are
//     members of (the usual PostgreSQL pattern: CREATE ROLE app_rw NOLOGIN;
//     GRANT … TO app_rw; GRANT app_rw TO app), and both always match.
//     Other attributes (CREATEDB, REPLICATION, BYPASSRLS, per-role
//     settings) are not copied either.
//
// # Test
//
// Test logs in over TCP as the value's user with its password, runs the
// config's test_query (default SELECT 1) and the identity check below.
// dbname defaults to "postgres". The test query must be one read-only
// statement (rotators.CheckSQLTestQuery refuses anything else when the
// config is saved and at every step: DDL, DML, a second statement after
// ';', SELECT INTO); it runs through the extended protocol (Parse/Bind/
// Execute, where PostgreSQL itself refuses a second statement) inside BEGIN
// READ ONLY, rolled back after, so a data-modifying CTE or a function that
// writes fails too. Functions with effects outside the transaction
// (pg_terminate_backend, dblink) run with the user's own privileges.
//
// # Whom it talks to
//
// Every connection is built field by field in a pq.Config (no connection
// string is parsed, nothing is read from PG* environment variables, a
// service file or a passfile), to the value's host (a DNS name or an IP
// address; Unix socket paths and host lists are refused), and after login
// it checks that current_user and session_user are both the value's user:
// a role whose settings SET ROLE at login, or a server that maps the name
// to another role, fails with rotators.ErrWrongIdentity before anything
// changes. Single-user Set first logs in with a random wrong password and
// wants it refused: over a connection pg_hba.conf trusts, any value naming
// any role (a superuser) would otherwise log in as it and change its
// password. Alternating Set only acts on the other user of the pair
// (rotators.DBConfig.CheckPair).
//
// # TLS
//
// sslmode, sslrootcert, sslcert, sslkey and tls_server_name of the value
// (see rotators.DBCredentials and the README, "TLS to rotation targets").
// Without sslmode a loopback host gets disable and any other host
// verify-full; plaintext modes (disable, allow, prefer) to a host that is
// not loopback are refused before connecting unless allow_plaintext is
// true. TLS modes use a tls.Config the rotator builds (the CA of
// sslrootcert or the system roots, TLS 1.2 at least), registered with
// pq.RegisterTLSConfig under a name derived from the settings and file
// contents.
//
// # Rollback
//
// Rollback (rotators.Rollbacker), called by the engine when the pending
// value failed its test and the current one still works: alternating gave
// the other user the pending password, so the admin replaces it with a
// random one stored nowhere; the other strategies have nothing to undo.
//
// # Emergency
//
// Finish of an emergency rotation makes the previous credential useless
// and ends its sessions (unless KeepSessions) with pg_terminate_backend
// over pg_stat_activity.usename:
//
//   - single-user: Set already replaced the role's only password. The role
//     itself, logged in with its new password, ends its other sessions.
//     PostgreSQL cannot tell which password a session used, so every other
//     session of the role ends; clients reconnect with the new value.
//   - admin: as single-user, but the admin ends the sessions (it needs
//     pg_signal_backend or membership in the role).
//   - alternating: the admin also sets a random 64-character password that
//     is stored nowhere on the previous user, then ends the sessions of
//     both users: the new current user's old password (the version before
//     previous) was a working credential until Set replaced it.
//
// # Admin sessions are pooled
//
// Set, Finish and Rollback of the admin and alternating strategies run
// over a session lent by the Rotator's admin pool (rotators.AdminPools:
// one pool per admin secret and server, at most 8 sessions by default,
// Rotator.Pool). A session is one pinned connection (a broken one fails
// instead of being silently replaced by an unchecked login), opened with
// the admin value and its identity checked as above, pinged before it is
// lent again (within the connect timeout: lib/pq itself would wait forever
// for an answer on a connection a network cut left silent, so the session
// sets deadlines on its TCP connection, then the context's deadline for
// the statements), and closed when anything failed on it. The pool is dropped,
// and its sessions closed, when a rotation hands in another admin value
// than the one it was opened with (the admin secret was rotated) or when
// the admin's login is refused (28P01, 28000, or another session user).
// So an admin rotation opens one connection, the test login with the new
// password, which no pool can avoid; a single-user rotation opens three:
// the refused wrong-password probe, the role's login that sets, the test
// login. Close (the daemon calls it when it stops) closes every pool.
//
// Every connection has the config's connect timeout (shortened to the
// context's deadline) and every statement honours the context (lib/pq
// sends a cancel request).
package postgres
