// Package mysql is the built-in rotator for MySQL 8 and MariaDB accounts
// (rotator name "mysql", secrets of type db-credentials with engine
// "mysql"). It talks to the server with go-sql-driver/mysql over TCP.
//
// # Accounts
//
// A MySQL account is 'user'@'host'; a value names only the user. With
// account_host set in the config that host is used. Otherwise
// single-user changes the account the server matched at login
// (CURRENT_USER()), and admin and alternating look the name up in
// mysql.user and use its only account; a name with several accounts is
// refused with an error listing their hosts, because changing one would
// leave the others working with the old password. Every login checks
// that CURRENT_USER() is the value's own user (and account_host), so an
// anonymous account (empty user name) or another host's account of the same
// name that happens to accept the login never passes Test.
//
// # Strategies
//
//   - single-user: Set logs in with the current value and runs, on
//     MariaDB, SET PASSWORD = '<verifier>' (no privilege needed); on MySQL
//     8, ALTER USER USER() IDENTIFIED BY '<password>'. If the current
//     password is refused and the pending one logs in, Set already ran
//     (a re-run after a crash) and it returns nil.
//   - admin: the admin value runs ALTER USER 'u'@'h' IDENTIFIED BY
//     PASSWORD '<verifier>' (CREATE USER privilege; SELECT on mysql.user
//     unless account_host is set).
//   - alternating: the admin runs CREATE USER IF NOT EXISTS for the other
//     user (on the current user's host), ALTER USER to set its password,
//     and replays SHOW GRANTS FOR the current user with the account
//     rewritten (grants.go explains the parsing). Grants are copied on
//     every Set, only ever added, never revoked; a crash part-way is
//     repaired by the re-run. The admin needs CREATE USER, SELECT ON
//     mysql.* (SHOW GRANTS FOR another user) and every copied privilege
//     WITH GRANT OPTION (ADMIN OPTION for roles).
//
// Finish does nothing after a normal rotation. In an emergency the old
// password is already dead for single-user and admin; for alternating the
// previous user gets a random password that is generated, hashed, sent
// and forgotten. Unless KeepSessions, every session of the previous user
// name (for alternating: of both user names, since the new current user's
// old password worked until Set replaced it) is then ended with KILL
// CONNECTION (ids from
// information_schema.PROCESSLIST). The process list does not say which
// password or which host's account a session used, so all sessions of
// that user name other than the rotator's own are ended — for
// single-user and admin that includes sessions already opened with the
// new password, which reconnect. single-user ends them as the user
// itself (no privilege needed); admin and alternating need PROCESS and
// CONNECTION ADMIN (or SUPER) on MariaDB 10.5+, CONNECTION_ADMIN on
// MySQL 8.
//
// # Passwords and the server's logs
//
// On MariaDB the password never reaches the server: statements carry the
// mysql_native_password verifier '*'+HEX(SHA1(SHA1(password))), computed
// here, so the general log, slow log, binary log and any error that
// echoes the statement hold only the verifier (which does not log in by
// itself). MySQL 8's caching_sha2_password has no client-computable
// verifier that ALTER USER accepts for an ordinary change, so there the
// plaintext is sent as a literal; MySQL rewrites it out of its logs. Every
// error is scrubbed of each password, its quoted forms and its verifier
// before it is returned.
//
// # Quoting
//
// Account names and verifiers are string literals built by quoteString,
// which follows the session's sql_mode (read at login): with
// NO_BACKSLASH_ESCAPES only the quote is doubled, otherwise backslash,
// quotes, NUL, newline, carriage return and Ctrl-Z are escaped. Names that
// are not valid UTF-8 or contain NUL are refused. Queries with values
// (mysql.user, PROCESSLIST) use server-side placeholders; connection
// settings are fields of go-sql-driver's Config, never a DSN string;
// multi-statements stay off.
//
// # Whom it talks to
//
// The value's host must be a DNS name or an IP address (rotators.CheckHost:
// no socket paths, no characters a DSN would read as more). Every login
// (the admin's too) checks CURRENT_USER() against the value's user, and
// single-user Set first logs in with a random wrong password and wants
// access denied (before the real login, so that FAILED_LOGIN_ATTEMPTS or
// max_password_errors counts reset at once): an account that takes any
// password, --skip-grant-tables, or an anonymous account shadowing the
// user fails with rotators.ErrWrongIdentity and nothing changes.
// Alternating acts only on the other user of the pair
// (rotators.DBConfig.CheckPair).
//
// # TLS
//
// From the value's sslmode (rotators.DBCredentials.Mode; MySQL's own
// spellings disabled, preferred, required, verify_identity are accepted):
// disable and allow connect in plaintext, prefer uses TLS when the server
// offers it, require encrypts without checking, verify-ca checks the chain
// against sslrootcert (a PEM file; the system roots without it) and
// verify-full the chain and the name (tls_server_name or host). The
// tls.Config goes into go-sql-driver's Config.TLS, never a global
// registry, with no fallback to plaintext. Without sslmode a loopback host
// gets disable and any other verify-full; plaintext to a host that is not
// loopback is refused before connecting unless "allow_plaintext": true.
//
// # Test query
//
// test_query (default SELECT 1) must be one statement starting with
// SELECT, WITH, VALUES, TABLE or SHOW that writes no file
// (rotators.CheckSQLTestQuery, at config save and every step: DDL would
// commit implicitly even inside a read-only transaction). It runs in
// START TRANSACTION READ ONLY, rolled back after, so a stored function
// that writes fails too.
//
// # Rollback
//
// Rollback (rotators.Rollbacker): after an alternating Set whose pending
// value failed its test, the admin gives the other user a random password
// stored nowhere (nothing to undo for single-user and admin).
//
// # Admin sessions are pooled
//
// Set, Finish and Rollback of the admin and alternating strategies run
// over a session lent by the Rotator's admin pool (rotators.AdminPools:
// one pool per admin secret and server, at most 8 sessions by default,
// Rotator.Pool). A session is opened with the admin value, its
// CURRENT_USER() checked as above, pinged before it is lent again, and
// closed when anything failed on it. The pool is dropped, and its sessions
// closed, when a rotation hands in another admin value than the one it was
// opened with (the admin secret was rotated) or when the admin's login is
// refused (access denied, or another account matched). So an admin
// rotation opens one connection, the test login with the new password; a
// single-user rotation opens three: the refused wrong-password probe, the
// user's login that sets, the test login. Close (the daemon calls it when
// it stops) closes every pool.
package mysql
