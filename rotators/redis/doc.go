// Package redis is the built-in rotator for Redis ACL users (Redis 6 and
// later; tested against Redis 7). It rotates the password of one ACL user
// named by a db-credentials value:
//
//	{"engine":"redis","host":"10.0.0.5","port":6379,"username":"app","password":"…"}
//
// An empty username means the "default" user (what a bare AUTH password
// authenticates as). TLS follows the value's sslmode (see
// rotators.DBCredentials and the README, "TLS to rotation targets"):
// "disable" connects in plain text, "require" over TLS without checking the
// certificate (libpq's meaning), "verify-ca" and "verify-full" over TLS
// checked against sslrootcert (a PEM file; the system roots without it),
// verify-full also checking the name (tls_server_name or host). Without
// sslmode a loopback host gets disable and any other host verify-full;
// plaintext to a host that is not loopback is refused before connecting
// unless the value says "allow_plaintext": true. Redis does not negotiate
// TLS, so "allow" and "prefer" are refused.
//
// # Whom it talks to
//
// Every session checks ACL WHOAMI against the value's user before it
// changes anything (single-user: the user must be allowed +acl|whoami;
// admin: checked when the admin may run it). Single-user Set first logs in
// with a random wrong password and wants WRONGPASS: a nopass user (the
// out-of-the-box default user is one) takes any password, so a value
// naming it would "rotate" a password that guards nothing, and give up its
// nopass, locking its clients out; that fails with
// rotators.ErrWrongIdentity and nothing changes.
//
// # Rollback
//
// Rollback (rotators.Rollbacker), called by the engine when the pending
// password failed its test while the current one still works, removes the
// pending password Set added (ACL SETUSER <user> !<hash>, then ACL SAVE),
// which would otherwise stay a second valid password nobody stores. A hash
// the user no longer has counts as removed; a pending equal to the current
// password is never removed.
//
// # No outage window
//
// A Redis ACL user holds any number of passwords at once, so the rotation
// never has a moment when clients holding the old password are refused
// before the new one is stored:
//
//   - Set adds the pending password: ACL SETUSER <user> #<sha256 hex>.
//     Adding the same hash twice leaves one copy, so Set is idempotent.
//     With the admin strategy Set first checks (ACL GETUSER) that the user
//     exists, because ACL SETUSER would otherwise create it.
//   - Test logs in with the value (go-redis sends HELLO … AUTH user pass and
//     fails the connection when the server refuses it), confirms with ACL
//     WHOAMI that the session belongs to the value's user where the user may
//     run it, and runs the test command (config test_query, words separated
//     by spaces; default PING). The command must be one that only reads
//     (PING, ECHO, TIME, DBSIZE, GET, MGET, EXISTS, TYPE, TTL, HGET, LLEN,
//     SCARD, ZCARD and the like; see readOnlyCommandList): anything else is
//     refused with rotators.ErrTestQuery.
//   - Finish removes the previous password: ACL SETUSER <user> !<old hash>.
//     After Finish the previous credential is refused. Removing a hash the
//     user no longer has is treated as done, so Finish is idempotent too.
//     A previous value that names another user, or holds the same password
//     as the current one, is left alone.
//
// After each change (Set and Finish) the rotator runs ACL SAVE, so a Redis
// that keeps its users in an aclfile keeps the change across a restart; a
// Redis without one answers that it has no aclfile, which is fine. Users
// defined by "user" lines in redis.conf are not rewritten (that would take
// CONFIG REWRITE): keep rotated users in an aclfile or in memory.
//
// Emergency Finish instead runs ACL SETUSER <user> resetpass #<current
// hash> — one atomic command that drops every password of the user but the
// current one (and a nopass flag) — and then, unless KeepSessions,
// CLIENT KILL USER <user> SKIPME yes, which closes every open session of the
// user. Redis cannot tell which password a session authenticated with, so
// sessions that already use the new password are closed too and have to
// reconnect. The passwords are reset before the sessions are killed, so a
// killed client cannot log back in with the old password. SKIPME yes keeps
// the rotator's own connection alive when it is authenticated as that user
// (single-user strategy), so Finish gets its answer.
//
// # Strategies
//
//   - admin (recommended): SetRequest.Admin / FinishRequest.Admin is a
//     db-credentials value for an ACL admin; its host and port are the ones
//     connected to. It needs +acl|getuser +acl|setuser +acl|save, and
//     +client|kill for emergency rotations that end sessions:
//     ACL SETUSER rotary-admin on #<hash> resetkeys resetchannels -@all +acl|getuser +acl|setuser +acl|save +client|kill
//     Note that +acl|setuser lets a user grant itself anything, so the admin
//     credential is as powerful as an unrestricted Redis user.
//   - single-user: the user adds and removes its own passwords with the
//     current credential. Redis has no "change my own password" permission:
//     the user needs +acl|setuser +acl|save (and +client|kill for emergency
//     session termination), which amounts to ACL admin rights, so this only suits a
//     user that is already an administrator. When the user lacks it, Set
//     fails with an error that says so and suggests the admin strategy.
//   - alternating is refused with rotators.ErrUnsupported: two passwords per
//     user already give the overlap that alternating users provide
//     elsewhere.
//
// # Passwords never reach a server log or an error
//
// Passwords are sent to the server only as SHA-256 hashes (#hash to add,
// !hash to remove, both verbatim ACL forms). Plaintext travels only in the
// AUTH/HELLO handshake, which Redis itself redacts in SLOWLOG and MONITOR.
// That matters beyond logs: Redis echoes a failing ACL SETUSER modifier in
// its error ("Error in ACL SETUSER modifier '<…'"), which with a plaintext
// <password would put the password into an error message. Every argument
// (user names included) goes to the server as its own RESP bulk string, so
// no quoting is involved, and every error from go-redis is passed through
// sensitive.Sanitize with the passwords in play.
//
// # User names
//
// Redis refuses user names containing whitespace (space, \t, \n, \v, \f,
// \r) or NUL ("Usernames can't contain spaces or null characters"); the
// rotator refuses them up front with an error that says so. Everything else
// — quotes, backslashes, unicode, ;--, %_, names that look like ACL rules
// such as >x, #x, ~*, +@all or resetpass — is an ordinary name and works.
package redis
