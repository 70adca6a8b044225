package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// SecretType is the type of the secrets this rotator rotates.
const SecretType = "db-credentials"

// Engine is the engine field of the values it rotates (MySQL and MariaDB).
const Engine = "mysql"

// Config is the rotation config: the common database rotator fields and
// the host part of the account.
type Config struct {
	rotators.DBConfig
	// AccountHost is the host part of the account, 'user'@'host' (for
	// example "%" or "10.0.%"). Empty: single-user changes the account the
	// server matched when the user logged in; admin and alternating look
	// the user up in mysql.user and use its only account, refusing a name
	// with several accounts.
	AccountHost string `json:"account_host,omitempty"`
}

// ParseConfig reads and checks a config. Unknown fields are refused and
// errors name the field.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			msg := err.Error()
			if strings.HasPrefix(msg, "json: unknown field ") {
				return c, fmt.Errorf("config: unknown field %s", strings.TrimPrefix(msg, "json: unknown field "))
			}
			return c, errors.New("config: not a valid JSON object")
		}
	}
	// The common fields get the common defaults and checks.
	common, err := json.Marshal(c.DBConfig)
	if err != nil {
		return c, errors.New("config: not a valid JSON object")
	}
	if c.DBConfig, err = rotators.ParseDBConfig(common); err != nil {
		return c, err
	}
	if c.AccountHost != "" {
		if err := checkName("config: account_host", c.AccountHost, maxHostChars); err != nil {
			return c, err
		}
	}
	if c.AlternateUsername != "" {
		if err := checkName("config: alternate_username", c.AlternateUsername, maxUserChars); err != nil {
			return c, err
		}
	}
	if err := rotators.CheckSQLTestQuery(c.TestQuery); err != nil {
		return c, err
	}
	return c, nil
}

// Rotator rotates the passwords of MySQL and MariaDB accounts. The zero
// value is ready to use.
type Rotator struct {
	// Pool bounds the pool of admin sessions kept per admin secret and
	// server (strategies admin and alternating; see rotators.AdminPools).
	// Zero fields take the defaults. Read once, at the first rotation.
	Pool rotators.PoolLimits

	poolsOnce sync.Once
	pools     *rotators.AdminPools[*session]
}

// New returns the rotator.
func New() *Rotator { return &Rotator{} }

// Close closes the pooled admin sessions (those lent to a running
// rotation when it gives them back). The rotator must not be used after.
// Idempotent.
func (r *Rotator) Close() error {
	return r.adminPools().Close()
}

func (r *Rotator) adminPools() *rotators.AdminPools[*session] {
	r.poolsOnce.Do(func() {
		r.pools = rotators.NewAdminPools(r.Pool, rotators.PoolDriver[*session]{
			Alive: func(ctx context.Context, s *session) error {
				// A connection a network cut left hanging is given up on
				// after the connect timeout, as a new one would be.
				ctx, cancel := context.WithTimeout(ctx, s.timeout)
				defer cancel()
				return s.conn.PingContext(ctx)
			},
			Close: (*session).close,
			AuthFailed: func(err error) bool {
				return isAccessDenied(err) || errors.Is(err, rotators.ErrAdminRefused) || errors.Is(err, rotators.ErrWrongIdentity)
			},
		})
	})
	return r.pools
}

var (
	_ rotators.Rotator         = (*Rotator)(nil)
	_ rotators.ConfigValidator = (*Rotator)(nil)
	_ rotators.Rollbacker      = (*Rotator)(nil)
)

// ValidateConfig checks config when it is saved.
func (*Rotator) ValidateConfig(_ context.Context, secretType string, config json.RawMessage) error {
	if secretType != SecretType {
		return fmt.Errorf("mysql rotator: secrets of type %s, not %q", SecretType, secretType)
	}
	_, err := ParseConfig(config)
	return err
}

// parseValue reads a db-credentials value for this engine.
func parseValue(what string, v rotators.Value) (rotators.DBCredentials, error) {
	if len(v) == 0 {
		return rotators.DBCredentials{}, fmt.Errorf("mysql: no %s value", what)
	}
	c, err := rotators.ParseDBCredentials(v)
	if err != nil {
		return c, fmt.Errorf("mysql: %s value: %w", what, err)
	}
	if c.Engine != "" && c.Engine != Engine {
		return c, fmt.Errorf("mysql: %s value: engine %q, want %q", what, c.Engine, Engine)
	}
	if err := checkName(what+" username", c.Username, maxUserChars); err != nil {
		return c, err
	}
	return c, nil
}

// scrub removes every form of the given passwords from err.
func scrub(err error, passwords ...string) error {
	if err == nil {
		return nil
	}
	var vals []sensitive.Bytes
	for _, p := range passwords {
		for _, f := range secretForms([]byte(p)) {
			vals = append(vals, sensitive.Bytes(f))
		}
	}
	return sensitive.Sanitize(err, vals...)
}

// passwordsIn returns the passwords of the values that parse, for scrub.
func passwordsIn(vs ...rotators.Value) []string {
	var out []string
	for _, v := range vs {
		if len(v) == 0 {
			continue
		}
		var c struct {
			Password string `json:"password"`
		}
		if json.Unmarshal(v.Reveal(), &c) == nil && c.Password != "" {
			out = append(out, c.Password)
		}
	}
	return out
}

// Create generates the pending value: the current value with a new
// password and, for alternating, the other user's name. It touches nothing.
func (*Rotator) Create(_ context.Context, req rotators.CreateRequest) (_ rotators.CreateResponse, err error) {
	defer func() { err = scrub(err, passwordsIn(req.Current, req.Previous)...) }()
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	cur, err := parseValue("current", req.Current)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	prevUser := ""
	if len(req.Previous) > 0 {
		if prev, err := rotators.ParseDBCredentials(req.Previous); err == nil {
			prevUser = prev.Username
		}
	}
	user := cfg.PendingUsername(cur.Username, prevUser)
	if err := checkName("pending username", user, maxUserChars); err != nil {
		return rotators.CreateResponse{}, err
	}
	if cfg.Strategy == rotators.StrategyAlternating && user == cur.Username {
		return rotators.CreateResponse{}, fmt.Errorf("mysql: alternating needs two users, but both are %q", user)
	}
	pw, err := rotators.GeneratePassword(cfg.Password)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("mysql: %w", err)
	}
	v, err := rotators.WithCredentials(req.Current, user, pw)
	pw.Wipe()
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("mysql: %w", err)
	}
	return rotators.CreateResponse{Value: v}, nil
}

// Set makes the pending value work. It is idempotent.
func (r *Rotator) Set(ctx context.Context, req rotators.SetRequest) (err error) {
	defer func() { err = scrub(err, passwordsIn(req.Current, req.Pending, req.Admin)...) }()
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	cur, err := parseValue("current", req.Current)
	if err != nil {
		return err
	}
	pend, err := parseValue("pending", req.Pending)
	if err != nil {
		return err
	}
	switch cfg.Strategy {
	case rotators.StrategySingleUser:
		return setOwn(ctx, cfg, cur, pend)
	case rotators.StrategyAdmin:
		if pend.Username != cur.Username {
			return fmt.Errorf("mysql: strategy admin: pending user %q is not the current user %q", pend.Username, cur.Username)
		}
		return r.setByAdmin(ctx, cfg, req.Admin, pend)
	case rotators.StrategyAlternating:
		if pend.Username == cur.Username {
			return fmt.Errorf("mysql: alternating: pending user %q is the current user", pend.Username)
		}
		if err := cfg.CheckPair(cur.Username, pend.Username); err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
		return r.setAlternate(ctx, cfg, req.Admin, cur, pend)
	}
	return fmt.Errorf("mysql: strategy %q: %w", cfg.Strategy, rotators.ErrUnsupported)
}

// setOwn: the user changes its own password. First it makes sure the
// server checks that user's password (checkPasswordChecked); then every
// login checks CURRENT_USER(). When the current password is refused, Set
// may already have run (a re-run after a crash): if the pending password
// logs in as the user, there is nothing left to do.
func setOwn(ctx context.Context, cfg Config, cur, pend rotators.DBCredentials) error {
	if pend.Username != cur.Username {
		return fmt.Errorf("mysql: strategy single-user: pending user %q is not the current user %q", pend.Username, cur.Username)
	}
	if err := checkPasswordChecked(ctx, cfg, cur); err != nil {
		return err
	}
	s, err := connect(ctx, cur, cfg.Timeout())
	if err != nil {
		if !isAccessDenied(err) {
			return err
		}
		s2, err2 := connect(ctx, pend, cfg.Timeout())
		if err2 == nil {
			defer s2.close()
			if s2.checkIdentity(pend.Username, cfg.AccountHost) == nil {
				return nil // already set
			}
		} else if isAccessDenied(err2) {
			return &rotators.NoWorkingCredentialError{
				Account: userTarget(cur.Username),
				Server:  net.JoinHostPort(cur.Host, strconv.Itoa(cur.Port)),
				Reason:  "access denied",
				Err:     err2,
			}
		}
		return err
	}
	defer s.close()
	if err := s.checkIdentity(cur.Username, cfg.AccountHost); err != nil {
		return err
	}
	return s.exec(ctx, fmt.Sprintf("change the password of %s", s.current), setOwnPasswordSQL(s.flavor, []byte(pend.Password)))
}

// checkPasswordChecked logs in as c's user with a random wrong password
// and wants the server to refuse it (before the real login, so that a
// server counting consecutive failures, FAILED_LOGIN_ATTEMPTS or
// max_password_errors, resets the count at once). A server that lets it in
// (an account without a password check, --skip-grant-tables, an anonymous
// account shadowing the user) would let the login act as an account the
// rotation was not meant to touch: ErrWrongIdentity, nothing changed.
func checkPasswordChecked(ctx context.Context, cfg Config, c rotators.DBCredentials) error {
	wrong, err := rotators.GeneratePassword(rotators.PasswordPolicy{Length: 32})
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	probe := c
	probe.Password = "rotary-wrong-" + string(wrong.Reveal())
	wrong.Wipe()
	s, err := connect(ctx, probe, cfg.Timeout())
	switch {
	case err == nil:
		s.close()
		return fmt.Errorf("mysql: %w: the server let %q in with a wrong password (as %s): a password it does not check cannot be rotated; "+
			"refusing to change anything", rotators.ErrWrongIdentity, c.Username, s.current)
	case isAccessDenied(err):
		return nil
	default:
		return err
	}
}

// adminSession lends a session of the admin from the pool of the admin
// secret and server (see rotators.AdminPools), opening one if none is
// free: a login with the admin value that checks that the server matched
// the admin's own account. Give it back with Release(err): a session on
// which something failed is closed.
func (r *Rotator) adminSession(ctx context.Context, cfg Config, admin rotators.Value) (*rotators.Lease[*session], error) {
	adm, err := parseValue("admin", admin)
	if err != nil {
		return nil, fmt.Errorf("%w (strategy %s needs the admin secret %q)", err, cfg.Strategy, cfg.AdminSecret)
	}
	cred := rotators.AdminCredential(adm)
	defer clear(cred)
	return r.adminPools().Acquire(ctx, rotators.AdminPoolKey(cfg.DBConfig, adm), cred, func(ctx context.Context) (*session, error) {
		s, err := connect(ctx, adm, cfg.Timeout())
		if isAccessDenied(err) {
			return nil, &rotators.AdminRefusedError{
				Account: userTarget(adm.Username), Server: net.JoinHostPort(adm.Host, strconv.Itoa(adm.Port)), Reason: "access denied", Err: err,
			}
		}
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		if err := s.checkIdentity(adm.Username, ""); err != nil {
			s.close()
			return nil, fmt.Errorf("admin: %w", err)
		}
		return s, nil
	})
}

// setByAdmin: the admin changes the user's password (ALTER USER, which
// needs CREATE USER; finding the account needs SELECT on mysql.user unless
// account_host is set).
func (r *Rotator) setByAdmin(ctx context.Context, cfg Config, admin rotators.Value, pend rotators.DBCredentials) (err error) {
	lease, err := r.adminSession(ctx, cfg, admin)
	if err != nil {
		return err
	}
	defer func() { lease.Release(err) }()
	s := lease.S
	acct, err := s.resolve(ctx, pend.Username, cfg.AccountHost, nil)
	if err != nil {
		return err
	}
	return s.exec(ctx, fmt.Sprintf("change the password of %s", acct), alterPasswordSQL(s.flavor, acct, []byte(pend.Password)))
}

// setAlternate: the admin gives the other user of the pair the pending
// password, creating it on first use on the current user's host, and
// copies the current user's grants to it (see copyGrants).
func (r *Rotator) setAlternate(ctx context.Context, cfg Config, admin rotators.Value, cur, pend rotators.DBCredentials) (err error) {
	lease, err := r.adminSession(ctx, cfg, admin)
	if err != nil {
		return err
	}
	defer func() { lease.Release(err) }()
	s := lease.S
	from, err := s.resolve(ctx, cur.Username, cfg.AccountHost, nil)
	if err != nil {
		return err
	}
	to, err := s.resolve(ctx, pend.Username, cfg.AccountHost, &account{User: pend.Username, Host: from.Host})
	if err != nil {
		return err
	}
	pw := []byte(pend.Password)
	if err := s.exec(ctx, fmt.Sprintf("create user %s", to), createUserSQL(s.flavor, to, pw)); err != nil {
		return err
	}
	if err := s.exec(ctx, fmt.Sprintf("change the password of %s", to), alterPasswordSQL(s.flavor, to, pw)); err != nil {
		return err
	}
	return s.copyGrants(ctx, from, to)
}

// copyGrants replays from's grants for to. It runs on every alternating
// Set, so a copy cut short by a crash is completed by the re-run, and a
// grant given to the active user later reaches the other one at the next
// rotation. It only adds: a grant the other user has and from lacks is
// left alone. The admin needs SELECT on the mysql database (SHOW GRANTS
// FOR another user) and each copied privilege WITH GRANT OPTION.
func (s *session) copyGrants(ctx context.Context, from, to account) error {
	rows, err := s.conn.QueryContext(ctx, showGrantsSQL(s.flavor, from))
	if err != nil {
		return fmt.Errorf("mysql: read the grants of %s (the admin needs SELECT ON mysql.*): %w", from, err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			rows.Close()
			return fmt.Errorf("mysql: read the grants of %s: %w", from, err)
		}
		lines = append(lines, l)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return fmt.Errorf("mysql: read the grants of %s: %w", from, err)
	}
	for i, l := range lines {
		stmt, action, err := rewriteGrant(l, from, to, s.flavor)
		if err != nil {
			return fmt.Errorf("mysql: copy grant %d of %s to %s: %w", i+1, from, to, err)
		}
		if action == grantSkip {
			continue
		}
		if err := s.exec(ctx, fmt.Sprintf("copy grant %d of %s to %s", i+1, from, to), stmt); err != nil {
			return err
		}
	}
	return nil
}

// Test logs in with the value over TCP, checks that the server matched
// the value's own account, and runs the test query.
func (*Rotator) Test(ctx context.Context, req rotators.TestRequest) (err error) {
	defer func() { err = scrub(err, passwordsIn(req.Value)...) }()
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	c, err := parseValue("tested", req.Value)
	if err != nil {
		return err
	}
	s, err := connect(ctx, c, cfg.Timeout())
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.checkIdentity(c.Username, cfg.AccountHost); err != nil {
		return err
	}
	q := cfg.TestQuery
	if q == "" {
		q = "SELECT 1"
	}
	if err := s.runReadOnly(ctx, q); err != nil {
		return fmt.Errorf("mysql: test query: %w", err)
	}
	return nil
}

// runReadOnly runs the test query in START TRANSACTION READ ONLY, rolled
// back after, on a connection without multiStatements (the server runs
// one statement per call). CheckSQLTestQuery has refused statements that
// commit implicitly (DDL) or write files before it gets here.
func (s *session) runReadOnly(ctx context.Context, q string) error {
	tx, err := s.conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // the transaction only read
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	for rows.Next() {
		// Read every row: an error may come with any of them.
	}
	err = rows.Err()
	rows.Close()
	return err
}

// Rollback undoes Set of a pending value that failed its test while the
// current value still works. Single-user and admin have nothing to undo.
// Alternating gave the other user the pending password, a working
// credential nobody will store: the admin replaces it with a random
// password stored nowhere. A missing account (Set never created it) is
// fine.
func (r *Rotator) Rollback(ctx context.Context, req rotators.RollbackRequest) (err error) {
	defer func() { err = scrub(err, passwordsIn(req.Current, req.Pending, req.Admin)...) }()
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	if cfg.Strategy != rotators.StrategyAlternating {
		return nil
	}
	cur, err := parseValue("current", req.Current)
	if err != nil {
		return err
	}
	pend, err := parseValue("pending", req.Pending)
	if err != nil {
		return err
	}
	if pend.Username == cur.Username {
		return fmt.Errorf("mysql: alternating: pending user %q is the current user; refusing to change the current password", pend.Username)
	}
	if err := cfg.CheckPair(cur.Username, pend.Username); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	lease, err := r.adminSession(ctx, cfg, req.Admin)
	if err != nil {
		return err
	}
	defer func() { lease.Release(err) }()
	s := lease.S
	acct := account{User: pend.Username, Host: cfg.AccountHost}
	if cfg.AccountHost == "" {
		accts, err := s.accountsOf(ctx, pend.Username)
		if err != nil {
			return err
		}
		if len(accts) == 0 {
			return nil // Set never created it
		}
		if len(accts) > 1 {
			return fmt.Errorf("mysql: %w named %q: set account_host", errAmbiguous, pend.Username)
		}
		acct = accts[0]
	}
	pw, err := rotators.GeneratePassword(cfg.Password)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	err = s.exec(ctx, fmt.Sprintf("rollback: revoke the pending password of %s", acct), alterPasswordSQL(s.flavor, acct, pw.Reveal()))
	err = scrub(err, string(pw.Reveal()))
	pw.Wipe()
	return err
}

// Finish cleans up after the pending value became current. A normal
// rotation leaves nothing to clean on MySQL. An emergency makes the
// previous credential useless (single-user and admin: Set already
// changed the one password; alternating: the previous user gets a random
// password that is stored nowhere) and, unless KeepSessions, ends the
// previous user's sessions.
func (r *Rotator) Finish(ctx context.Context, req rotators.FinishRequest) (err error) {
	defer func() { err = scrub(err, passwordsIn(req.Current, req.Previous, req.Admin)...) }()
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	if !req.Emergency {
		return nil
	}
	cur, err := parseValue("current", req.Current)
	if err != nil {
		return err
	}
	prevUser := cur.Username
	if len(req.Previous) > 0 {
		prev, err := parseValue("previous", req.Previous)
		if err != nil {
			return err
		}
		prevUser = prev.Username
	}
	switch cfg.Strategy {
	case rotators.StrategySingleUser:
		if len(req.Previous) > 0 { // Set replaced the user's one password
			req.Effects.Add(revoked(prevUser))
		}
		if req.KeepSessions {
			return nil
		}
		// The user ends its own other sessions, which needs no privilege.
		s, err := connect(ctx, cur, cfg.Timeout())
		if err != nil {
			return err
		}
		defer s.close()
		if err := s.checkIdentity(cur.Username, cfg.AccountHost); err != nil {
			return err
		}
		return killSessions(ctx, s, cur.Username, req.Effects)
	case rotators.StrategyAdmin, rotators.StrategyAlternating:
	default:
		return fmt.Errorf("mysql: strategy %q: %w", cfg.Strategy, rotators.ErrUnsupported)
	}
	scramble := cfg.Strategy == rotators.StrategyAlternating && prevUser != cur.Username
	if !scramble && len(req.Previous) > 0 {
		req.Effects.Add(revoked(prevUser)) // Set replaced its one password
	}
	if !scramble && req.KeepSessions {
		return nil
	}
	lease, err := r.adminSession(ctx, cfg, req.Admin)
	if err != nil {
		return err
	}
	defer func() { lease.Release(err) }()
	s := lease.S
	if scramble {
		acct, err := s.resolve(ctx, prevUser, cfg.AccountHost, nil)
		if err != nil {
			return err
		}
		pw, err := rotators.GeneratePassword(cfg.Password)
		if err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
		err = s.exec(ctx, fmt.Sprintf("change the password of %s", acct), alterPasswordSQL(s.flavor, acct, pw.Reveal()))
		err = scrub(err, string(pw.Reveal()))
		pw.Wipe()
		if err != nil {
			return err
		}
		req.Effects.Add(revoked(prevUser))
	}
	if req.KeepSessions {
		return nil
	}
	if err = killSessions(ctx, s, prevUser, req.Effects); err != nil {
		return err
	}
	if scramble {
		// The current user's old password was a working credential until
		// Set replaced it; its sessions end too (the process list does not
		// say which password a session used, so new ones reconnect).
		err = killSessions(ctx, s, cur.Username, req.Effects)
	}
	return err
}

// killSessions ends every other session of user and reports how many
// (those ended before a failure too).
func killSessions(ctx context.Context, s *session, user string, effects *rotators.Effects) error {
	n, err := s.killSessions(ctx, user)
	if err == nil || n > 0 {
		effects.Add(rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: userTarget(user), Count: n})
	}
	return err
}

func revoked(user string) rotators.Effect {
	return rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: userTarget(user)}
}

func userTarget(user string) string { return "user " + strconv.Quote(user) }
