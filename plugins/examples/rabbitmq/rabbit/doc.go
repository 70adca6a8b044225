// Package rabbit is the RabbitMQ rotator of the example rabbitmq plugin
// (plugins/examples/rabbitmq, which serves New() through plugins/sdk). It
// rotates the password of a RabbitMQ user through the management HTTP
// API; tested against RabbitMQ 3.10 with rabbitmq_management.
//
// # The secret
//
// A key-value secret (all fields strings):
//
//	{"username":"app","password":"…","host":"127.0.0.1","port":"5672",
//	 "management_url":"http://127.0.0.1:15672"}
//
// host and port are the AMQP listener Test logs in to; management_url is
// the management API (a path prefix behind a proxy is kept). Optional:
// vhost (the virtual host Test opens, default "/"), and for AMQP over TLS
// sslmode, sslrootcert and tls_server_name with the meanings of
// db-credentials (rotators.DBCredentials; allow and prefer are refused,
// AMQP does not negotiate TLS on one port). Without sslmode a loopback
// host gets plaintext and any other host verify-full. A password never
// travels in plaintext to a host that is not loopback: AMQP with sslmode
// disable, or an http management_url, to such a host fails every step
// with rotators.ErrPlaintext before anything is sent, unless the value
// says "allow_plaintext": "true". An https management_url is verified
// against sslrootcert (or the system roots) with the value's TLS mode
// (verify-full when AMQP is plaintext). Redirects are never followed.
//
// # Config
//
//	{"strategy":"admin","admin_secret":"rabbit/admin"}
//	{"strategy":"alternating","admin_secret":"rabbit/admin","alternate_username":"app_b"}
//
// plus password (rotators.PasswordPolicy) and connect_timeout (default
// 10s). Unknown fields are refused; errors name the field.
//
//   - admin: the admin secret has the same shape, for a user with the
//     administrator tag. Every step that changes something first asks
//     GET /api/whoami as the admin and wants its own name and the
//     administrator tag, and wants the admin value's management_url to be
//     the account's.
//   - alternating: two users take turns (the second is alternate_username,
//     default the first's name with "_b"); the inactive one gets the new
//     password and becomes current, so clients holding the previous value
//     keep working until the next rotation. On first use the second user
//     is created with the first user's tags, permissions and topic
//     permissions in every vhost (and a second user left without any
//     permissions by a crash gets them on the retried Set). The pending
//     user must be the other user of the pair (rotators.DBConfig.CheckPair).
//   - single-user is refused by ValidateConfig with rotators.ErrUnsupported:
//     only administrators may change passwords through the management API.
//
// # Steps
//
//   - Create: the current value with a new password (and for alternating
//     the other user's name). Touches nothing.
//   - Set: GET /api/users/NAME (it must exist, except the alternating user
//     created on first use), then PUT /api/users/NAME with password_hash
//     and the user's own tags. The hash is rabbit_password_hashing_sha256
//     computed here (4 random bytes of salt, base64(salt ‖ SHA-256(salt ‖
//     password))), so the plaintext never crosses the management API and
//     never reaches its logs. Idempotent: when the stored hash already is
//     the pending password's, nothing is sent. With admin, the old password
//     stops working here (a RabbitMQ user has one password); the pending
//     value is stored before Set, so one stored version always works.
//   - Test: an AMQP 0-9-1 connection (amqp091-go, PLAIN) with the value,
//     then an identity check: on a channel in confirm mode the rotator
//     publishes an empty message with user_id set to the value's user to
//     the default exchange under a routing key no queue has (dropped,
//     nothing stored). RabbitMQ validates user_id against the connection's
//     authenticated user and closes the channel with PRECONDITION_FAILED
//     when they differ: rotators.ErrWrongIdentity. A user that may not
//     publish to the default exchange gets ACCESS_REFUSED instead; the
//     login itself is then the proof (RabbitMQ has no session masquerade).
//   - Finish: nothing to do normally. In an emergency, alternating first
//     gives the previous user a random password nobody keeps (never when
//     its stored hash is the current password's); then, unless
//     KeepSessions, DELETE /api/connections/username/NAME closes every
//     open connection of the current user and, for alternating, of the
//     previous user. RabbitMQ answers this from its connection tracking,
//     not from the statistics, so it also closes a connection opened a
//     moment ago. Connections already using the new password are closed
//     too and must reconnect.
//   - Rollback (rotators.Rollbacker): when the pending user's stored hash
//     is the pending password's, alternating scrambles that user's password
//     and admin gives the user its current password back; otherwise
//     nothing (Set never ran, or Rollback did). Idempotent.
//
// # Identity
//
// Target (rotators.Targeter) binds a rotation to engine "rabbitmq", host,
// port and management_url (the server fields the admin value must share),
// username (alternating: the pair), vhost and the transport fields.
//
// # Secrets in errors
//
// Every error built from the management API's or the AMQP library's
// answers passes through sensitive.Sanitize with every password in play;
// the rotator's own messages name fields, users and hosts only. AMQP
// refusals are reported as "the server refused the credential". Note
// that RabbitMQ answers a refused AMQP login after about three seconds.
package rabbit
