package redis

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// SecretType is the only secret type this rotator rotates.
const SecretType = "db-credentials"

// DefaultTestCommand runs after logging in when the config names no
// test_query.
const DefaultTestCommand = "PING"

// Rotator rotates the password of a Redis ACL user. The zero value is ready
// to use and holds no state between calls.
type Rotator struct{}

var (
	_ rotators.Rotator         = Rotator{}
	_ rotators.ConfigValidator = Rotator{}
	_ rotators.Rollbacker      = Rotator{}
)

// errNoACLFile is the text Redis answers ACL SAVE with when it keeps its
// users in memory (and redis.conf) rather than in an aclfile.
const errNoACLFile = "not configured to use an ACL file"

// errNoSuchPassword is the text Redis answers ACL SETUSER !<hash> with when
// the user no longer has that password (Finish ran already).
const errNoSuchPassword = "password you are trying to remove from the user does not exist"

// config is the parsed rotation config.
type config struct {
	rotators.DBConfig
	testCommand []string
}

func parseConfig(raw json.RawMessage) (config, error) {
	c, err := rotators.ParseDBConfig(raw)
	if err != nil {
		return config{}, err
	}
	if c.Strategy == rotators.StrategyAlternating {
		return config{}, fmt.Errorf("config: strategy alternating: %w: a Redis ACL user holds several passwords at once, "+
			"so the admin and single-user strategies already keep the old password working until finish; use strategy admin", rotators.ErrUnsupported)
	}
	cmd := []string{DefaultTestCommand}
	if c.TestQuery != "" {
		if cmd = strings.Fields(c.TestQuery); len(cmd) == 0 {
			return config{}, errors.New(`config: test_query: a Redis command with its arguments separated by spaces, e.g. "GET app:health"`)
		}
		if !readOnlyCommands[strings.ToUpper(cmd[0])] {
			return config{}, fmt.Errorf("config: %w: %q is not one of the read-only commands the redis rotator runs (%s)",
				rotators.ErrTestQuery, cmd[0], readOnlyCommandList)
		}
	}
	return config{DBConfig: c, testCommand: cmd}, nil
}

// readOnlyCommands are the commands a test_query may run: they only read
// (one command per test_query; arguments are separate RESP strings, so
// nothing in them can add a second command).
var readOnlyCommands = map[string]bool{}

const readOnlyCommandList = "PING ECHO TIME DBSIZE GET MGET GETRANGE STRLEN EXISTS TYPE TTL PTTL " +
	"HGET HMGET HEXISTS HLEN HGETALL LLEN LINDEX LRANGE SCARD SISMEMBER SMEMBERS ZCARD ZSCORE ZRANGE XLEN"

func init() {
	for _, c := range strings.Fields(readOnlyCommandList) {
		readOnlyCommands[c] = true
	}
}

// ValidateConfig checks a rotation config when it is saved. Whether the
// user may run ACL SETUSER (single-user) can only be known with the value,
// so Set reports that.
func (Rotator) ValidateConfig(_ context.Context, secretType string, raw json.RawMessage) error {
	if secretType != SecretType {
		return fmt.Errorf("redis: secret type %q: %w: the redis rotator rotates %s secrets", secretType, rotators.ErrUnsupported, SecretType)
	}
	if _, err := parseConfig(raw); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// creds is a parsed db-credentials value for Redis.
type creds struct {
	rotators.DBCredentials
	user string // the ACL user: Username, or "default" when it is empty
	pw   sensitive.Bytes
}

func (c creds) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// hash is the password as ACL SETUSER takes it after '#' or '!'.
func (c creds) hash() string { return passwordHash(c.pw) }

func parseValue(v rotators.Value, what string) (creds, error) {
	if len(v) == 0 {
		return creds{}, fmt.Errorf("%s value is missing", what)
	}
	c, err := rotators.ParseDBCredentials(v)
	if err != nil {
		return creds{}, fmt.Errorf("%s value: %w", what, err)
	}
	if c.Engine != "" && c.Engine != "redis" {
		return creds{}, fmt.Errorf("%s value: engine %q: the redis rotator needs engine \"redis\"", what, c.Engine)
	}
	user := c.Username
	if user == "" {
		user = "default"
	}
	if err := CheckUsername(user); err != nil {
		return creds{}, fmt.Errorf("%s value: %w", what, err)
	}
	if _, err := tlsConfig(c); err != nil {
		return creds{}, fmt.Errorf("%s value: %w", what, err)
	}
	return creds{DBCredentials: c, user: user, pw: sensitive.Bytes(c.Password)}, nil
}

// CheckUsername returns an error when Redis would refuse name as an ACL
// user name: Redis refuses names containing whitespace (C's isspace: space,
// \t, \n, \v, \f, \r) or NUL. The error says so and quotes the name.
// (Redis accepts an empty name, but in a db-credentials value an empty
// username means the "default" user and never reaches this check.)
func CheckUsername(name string) error {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case ' ', '\t', '\n', '\v', '\f', '\r', 0:
			return fmt.Errorf("user name %q: Redis refuses ACL user names containing spaces, other whitespace or NUL characters", name)
		}
	}
	return nil
}

// passwordHash is the lowercase hex SHA-256 of pw, the form Redis keeps and
// accepts after '#' (add) and '!' (remove).
func passwordHash(pw []byte) string {
	sum := sha256.Sum256(pw)
	return hex.EncodeToString(sum[:])
}

// The commands the rotator sends. Each element is one RESP bulk string:
// nothing is ever split or quoted, and no plaintext password appears.

func cmdGetUser(user string) []any { return []any{"ACL", "GETUSER", user} }

func cmdAddPassword(user, hash string) []any { return []any{"ACL", "SETUSER", user, "#" + hash} }

func cmdRemovePassword(user, hash string) []any { return []any{"ACL", "SETUSER", user, "!" + hash} }

func cmdResetPasswords(user, keepHash string) []any {
	return []any{"ACL", "SETUSER", user, "resetpass", "#" + keepHash}
}

func cmdSaveACL() []any { return []any{"ACL", "SAVE"} }

func cmdKillSessions(user string) []any {
	return []any{"CLIENT", "KILL", "USER", user, "SKIPME", "yes"}
}

// tlsConfig is the TLS config of c's sslmode (nil: plaintext). Redis has
// no TLS negotiation, so allow and prefer, which fall back to plaintext
// elsewhere, are refused: say disable, or a TLS mode.
func tlsConfig(c rotators.DBCredentials) (*tls.Config, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	switch mode {
	case rotators.SSLDisable:
		return nil, nil
	case rotators.SSLAllow, rotators.SSLPrefer:
		return nil, fmt.Errorf(`field "sslmode": %q: Redis does not negotiate TLS; use disable, require, verify-ca or verify-full`, c.SSLMode)
	}
	return c.TLSConfig()
}

// options returns the go-redis options for one short-lived connection as c:
// one connection, no retries (a retry could hide a refused login behind a
// second attempt), RESP2, no client-side extras, every wait bounded by the
// connect timeout and by ctx.
func options(c creds, timeout time.Duration) *goredis.Options {
	tc, _ := tlsConfig(c.DBCredentials) // checked by parseValue
	return &goredis.Options{
		Addr:                     c.addr(),
		Username:                 c.user,
		Password:                 string(c.pw.Reveal()),
		Protocol:                 2,
		DialTimeout:              timeout,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		PoolTimeout:              timeout,
		ContextTimeoutEnabled:    true,
		PoolSize:                 1,
		MaxRetries:               -1,
		DisableIdentity:          true,
		TLSConfig:                tc,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

func isRedisError(err error) bool {
	var re goredis.Error
	return errors.As(err, &re)
}

// session is one authenticated connection to the server.
type session struct {
	rdb     *goredis.Client
	as      creds
	secrets []sensitive.Bytes // scrubbed from every error
}

// dial opens a connection as c and authenticates: go-redis sends HELLO 2
// AUTH user pass (falling back to AUTH user pass) on the first command and
// fails the connection when the server refuses.
// errCredentialRefused: the server refused a login (WRONGPASS).
var errCredentialRefused = errors.New("the server refused the credential")

func dial(ctx context.Context, c creds, timeout time.Duration, secrets ...sensitive.Bytes) (*session, error) {
	s := &session{rdb: goredis.NewClient(options(c, timeout)), as: c, secrets: append(secrets, c.pw)}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// PING makes go-redis connect and authenticate. NOPERM means the
	// handshake succeeded and the user merely may not PING.
	if err := s.rdb.Ping(ctx).Err(); err != nil && !goredis.IsPermissionError(err) {
		s.close()
		if goredis.IsAuthError(err) {
			return nil, s.errorf("log in to %s as %q: %w: %w", c.addr(), c.user, errCredentialRefused, err)
		}
		return nil, s.errorf("connect to %s as %q: %w", c.addr(), c.user, err)
	}
	return s, nil
}

func (s *session) close() { _ = s.rdb.Close() }

func (s *session) do(ctx context.Context, args []any) *goredis.Cmd { return s.rdb.Do(ctx, args...) }

// errorf formats an error and removes every password in play from it.
func (s *session) errorf(format string, a ...any) error {
	return sensitive.Sanitize(fmt.Errorf(format, a...), s.secrets...)
}

// whoami returns the session's user; ok is false when the user may not run
// ACL WHOAMI.
func (s *session) whoami(ctx context.Context) (name string, ok bool, err error) {
	name, err = s.rdb.ACLWhoAmI(ctx).Result()
	if goredis.IsPermissionError(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return name, true, nil
}

// checkWho makes sure the session is want's: ACL WHOAMI answers want. When
// the user may not run ACL WHOAMI, required decides: single-user needs
// it (the user already holds ACL SETUSER), admin does not.
func (s *session) checkWho(ctx context.Context, want string, required bool) error {
	who, ok, err := s.whoami(ctx)
	switch {
	case err != nil:
		return s.errorf("ACL WHOAMI: %w", err)
	case !ok && required:
		return fmt.Errorf("%w: user %q may not run ACL WHOAMI, so the rotator cannot check whom the session belongs to; grant it +acl|whoami",
			rotators.ErrWrongIdentity, want)
	case ok && who != want:
		return fmt.Errorf("%w: logged in to %s as %q, but the session belongs to %q; refusing to change anything", rotators.ErrWrongIdentity, s.as.addr(), want, who)
	}
	return nil
}

// checkPasswordChecked logs in as c's user with a random wrong password
// and wants Redis to refuse it. A user that takes any password (nopass,
// as the default user has out of the box) would let a value naming it
// "rotate" a password that guards nothing, and give a single-user
// rotation ACL SETUSER rights on a user the value merely names:
// ErrWrongIdentity, nothing changed.
func checkPasswordChecked(ctx context.Context, c creds, timeout time.Duration) error {
	wrong, err := rotators.GeneratePassword(rotators.PasswordPolicy{Length: 32})
	if err != nil {
		return err
	}
	probe := c
	probe.pw = sensitive.Bytes("rotary-wrong-" + string(wrong.Reveal()))
	wrong.Wipe()
	rdb := goredis.NewClient(options(probe, timeout))
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = rdb.Ping(ctx).Err()
	switch {
	case err == nil || goredis.IsPermissionError(err):
		return fmt.Errorf("%w: %s let user %q in with a wrong password (nopass): a password it does not check cannot be rotated; "+
			"refusing to change anything", rotators.ErrWrongIdentity, c.addr(), c.user)
	case goredis.IsAuthError(err):
		return nil
	default:
		return sensitive.Sanitize(fmt.Errorf("connect to %s as %q: %w", c.addr(), c.user, err), probe.pw, c.pw)
	}
}

// Create generates the pending value: the current value with a new
// password. It touches nothing outside the process.
func (Rotator) Create(_ context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("redis: %w", err)
	}
	cur, err := parseValue(req.Current, "current")
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("redis: %w", err)
	}
	pw, err := rotators.GeneratePassword(cfg.Password)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("redis: %w", err)
	}
	v, err := rotators.WithCredentials(req.Current, cur.Username, pw)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("redis: %w", err)
	}
	return rotators.CreateResponse{Value: v}, nil
}

// executor returns the credential that changes the user's passwords:
// the admin value (strategy admin) or the user's own current one.
func executor(cfg config, own rotators.Value, admin rotators.Value) (creds, error) {
	if cfg.Strategy == rotators.StrategyAdmin {
		return parseValue(admin, "admin")
	}
	return parseValue(own, "current")
}

// permissionError explains a NOPERM answer to an ACL or CLIENT command.
func permissionError(cfg config, as creds, command, grant string) error {
	if cfg.Strategy == rotators.StrategySingleUser {
		return fmt.Errorf("user %q may not run %s: the single-user strategy on Redis needs %s on the user itself "+
			"(which amounts to ACL admin rights); grant it or use strategy admin", as.user, command, grant)
	}
	return fmt.Errorf("admin user %q may not run %s: grant it %s", as.user, command, grant)
}

// persist writes the users to the server's aclfile (ACL SAVE), so that the
// change survives a restart of a Redis that keeps its users there. A Redis
// without an aclfile answers that it has none, which is fine.
func (s *session) persist(ctx context.Context, cfg config) error {
	err := s.do(ctx, cmdSaveACL()).Err()
	switch {
	case err == nil, isRedisError(err) && strings.Contains(err.Error(), errNoACLFile):
		return nil
	case goredis.IsPermissionError(err):
		return fmt.Errorf("%w (so that a Redis keeping its users in an aclfile keeps the change across a restart)",
			permissionError(cfg, s.as, "ACL SAVE", "+acl|save"))
	default:
		return s.errorf("ACL SAVE: %w", err)
	}
}

// Set adds the pending password to the user. Idempotent: adding a password
// the user already has changes nothing.
func (Rotator) Set(ctx context.Context, req rotators.SetRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	cur, err := parseValue(req.Current, "current")
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	pend, err := parseValue(req.Pending, "pending")
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if pend.user != cur.user {
		return fmt.Errorf("redis: the pending value is for user %q, the current one for %q; the redis rotator changes one user's passwords", pend.user, cur.user)
	}
	as, err := executor(cfg, req.Current, req.Admin)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	single := cfg.Strategy == rotators.StrategySingleUser
	if single {
		if err := checkPasswordChecked(ctx, as, cfg.Timeout()); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	s, err := dial(ctx, as, cfg.Timeout(), cur.pw, pend.pw)
	if err != nil {
		if single && errors.Is(err, errCredentialRefused) {
			return setBefore(ctx, cfg, as, cur, pend)
		}
		return fmt.Errorf("redis: %w", err)
	}
	defer s.close()
	if err := s.checkWho(ctx, as.user, single); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if cfg.Strategy == rotators.StrategyAdmin {
		// ACL SETUSER creates a missing user; a rotation must not.
		err := s.do(ctx, cmdGetUser(pend.user)).Err()
		switch {
		case errors.Is(err, goredis.Nil):
			return fmt.Errorf("redis: user %q does not exist on %s", pend.user, as.addr())
		case goredis.IsPermissionError(err):
			return fmt.Errorf("redis: %w", permissionError(cfg, as, "ACL GETUSER", "+acl|getuser"))
		case err != nil:
			return fmt.Errorf("redis: %w", s.errorf("ACL GETUSER: %w", err))
		}
	}
	if err := s.do(ctx, cmdAddPassword(pend.user, pend.hash())).Err(); err != nil {
		if goredis.IsPermissionError(err) {
			return fmt.Errorf("redis: %w", permissionError(cfg, as, "ACL SETUSER", "+acl|setuser"))
		}
		return fmt.Errorf("redis: %w", s.errorf("ACL SETUSER %q (add the new password): %w", pend.user, err))
	}
	if err := s.persist(ctx, cfg); err != nil {
		return fmt.Errorf("redis: new password added but not saved: %w", err)
	}
	return nil
}

// setBefore answers a single-user Set whose current password the server
// refused: when the pending one logs in as the user, Set ran before (a
// re-run after a crash, or a Finish that removed the old password) and
// there is nothing left to do; when it is refused too, nothing stored
// works and the rotation cannot go on until someone stores one that does.
func setBefore(ctx context.Context, cfg config, as, cur, pend creds) error {
	p := as
	p.pw = pend.pw
	s, err := dial(ctx, p, cfg.Timeout(), cur.pw, pend.pw)
	switch {
	case err == nil:
		defer s.close()
		if err := s.checkWho(ctx, pend.user, true); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	case errors.Is(err, errCredentialRefused):
		return &rotators.NoWorkingCredentialError{
			Account: "user " + strconv.Quote(cur.user), Server: as.addr(), Reason: "WRONGPASS", Err: err,
		}
	default:
		return fmt.Errorf("redis: %w", err)
	}
}

// Test logs in with the value and runs the test command.
func (Rotator) Test(ctx context.Context, req rotators.TestRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	v, err := parseValue(req.Value, "tested")
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	s, err := dial(ctx, v, cfg.Timeout())
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer s.close()
	// The handshake refused bad credentials already; WHOAMI guards against
	// a session that answers as someone else (a refused AUTH leaves a Redis
	// connection authenticated as "default"). Users that may not run it are
	// common and are not held against the credential.
	if err := s.checkWho(ctx, v.user, false); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	args := make([]any, len(cfg.testCommand))
	for i, a := range cfg.testCommand {
		args[i] = a
	}
	if err := s.do(ctx, args).Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("redis: %w", s.errorf("test command %s: %w", cfg.testCommand[0], err))
	}
	return nil
}

// Finish removes the previous password; in an emergency it removes every
// password but the current one and, unless KeepSessions, closes the user's
// sessions.
func (Rotator) Finish(ctx context.Context, req rotators.FinishRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	cur, err := parseValue(req.Current, "current")
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	var prev creds
	havePrev := len(req.Previous) > 0
	if havePrev {
		if prev, err = parseValue(req.Previous, "previous"); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	if req.Emergency && havePrev && prev.user != cur.user {
		return fmt.Errorf("redis: the previous value is for user %q, the current one for %q: "+
			"the redis rotator resets only %q; change %q's password by hand", prev.user, cur.user, cur.user, prev.user)
	}
	if !req.Emergency && (!havePrev || prev.user != cur.user || prev.hash() == cur.hash()) {
		return nil // nothing of the previous value to remove from this user
	}
	as, err := executor(cfg, req.Current, req.Admin)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	secrets := []sensitive.Bytes{cur.pw}
	if havePrev {
		secrets = append(secrets, prev.pw)
	}
	s, err := dial(ctx, as, cfg.Timeout(), secrets...)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer s.close()
	if err := s.checkWho(ctx, as.user, cfg.Strategy == rotators.StrategySingleUser); err != nil {
		return fmt.Errorf("redis: %w", err)
	}

	if !req.Emergency {
		err := s.do(ctx, cmdRemovePassword(cur.user, prev.hash())).Err()
		switch {
		case err == nil, isRedisError(err) && strings.Contains(err.Error(), errNoSuchPassword):
			// Removed now, or by an earlier Finish; save either way, as the
			// earlier Finish may have failed to.
			if err := s.persist(ctx, cfg); err != nil {
				return fmt.Errorf("redis: old password removed but not saved: %w", err)
			}
			return nil
		case goredis.IsPermissionError(err):
			return fmt.Errorf("redis: %w", permissionError(cfg, as, "ACL SETUSER", "+acl|setuser"))
		default:
			return fmt.Errorf("redis: %w", s.errorf("ACL SETUSER %q (remove the old password): %w", cur.user, err))
		}
	}

	// Emergency: first make every other password useless (one atomic
	// command), then end the sessions, so a killed client cannot log back
	// in with an old password.
	if err := s.do(ctx, cmdResetPasswords(cur.user, cur.hash())).Err(); err != nil {
		if goredis.IsPermissionError(err) {
			return fmt.Errorf("redis: %w", permissionError(cfg, as, "ACL SETUSER", "+acl|setuser"))
		}
		return fmt.Errorf("redis: %w", s.errorf("ACL SETUSER %q resetpass (keep only the current password): %w", cur.user, err))
	}
	target := "user " + strconv.Quote(cur.user)
	req.Effects.Add(rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: target})
	if err := s.persist(ctx, cfg); err != nil {
		return fmt.Errorf("redis: old passwords removed but not saved: %w", err)
	}
	if req.KeepSessions {
		return nil
	}
	// SKIPME yes spares this connection when it is authenticated as the
	// same user (single-user), so the answer still arrives. The answer is
	// the number of sessions closed.
	n, err := s.do(ctx, cmdKillSessions(cur.user)).Int()
	if err == nil {
		req.Effects.Add(rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: target, Count: n})
	}
	if err != nil {
		if goredis.IsPermissionError(err) {
			return fmt.Errorf("redis: old passwords removed, but sessions stay open: %w",
				permissionError(cfg, as, "CLIENT KILL", "+client|kill"))
		}
		return fmt.Errorf("redis: old passwords removed, but sessions stay open: %w",
			s.errorf("CLIENT KILL USER %q: %w", cur.user, err))
	}
	return nil
}

// Rollback removes the pending password Set added, after the pending
// value failed its test while the current one still works: otherwise it
// would stay a second valid password of the user that nobody stores.
// Idempotent: a password the user no longer has counts as removed. It
// never removes the current password.
func (Rotator) Rollback(ctx context.Context, req rotators.RollbackRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	cur, err := parseValue(req.Current, "current")
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	pend, err := parseValue(req.Pending, "pending")
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if pend.user != cur.user {
		return fmt.Errorf("redis: the pending value is for user %q, the current one for %q; the redis rotator changes one user's passwords", pend.user, cur.user)
	}
	if pend.hash() == cur.hash() {
		return nil // removing it would remove the current password
	}
	as, err := executor(cfg, req.Current, req.Admin)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	s, err := dial(ctx, as, cfg.Timeout(), cur.pw, pend.pw)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer s.close()
	if err := s.checkWho(ctx, as.user, cfg.Strategy == rotators.StrategySingleUser); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	err = s.do(ctx, cmdRemovePassword(pend.user, pend.hash())).Err()
	switch {
	case err == nil, isRedisError(err) && strings.Contains(err.Error(), errNoSuchPassword):
		if err := s.persist(ctx, cfg); err != nil {
			return fmt.Errorf("redis: pending password removed but not saved: %w", err)
		}
		return nil
	case goredis.IsPermissionError(err):
		return fmt.Errorf("redis: %w", permissionError(cfg, as, "ACL SETUSER", "+acl|setuser"))
	default:
		return fmt.Errorf("redis: %w", s.errorf("ACL SETUSER %q (remove the pending password): %w", pend.user, err))
	}
}
