package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// SecretType is the type of the secrets this rotator rotates.
const SecretType = "db-credentials"

// Rotator rotates PostgreSQL role passwords. The zero value is ready to
// use.
type Rotator struct {
	// Iterations is the PBKDF2 iteration count of the SCRAM-SHA-256
	// verifiers it sets (0: DefaultIterations, what PostgreSQL uses). More
	// iterations make a stolen verifier harder to brute-force and every
	// login (the application's and the rotator's own) slower.
	Iterations int
	// Pool bounds the pool of admin sessions kept per admin secret and
	// server (strategies admin and alternating; see rotators.AdminPools).
	// Zero fields take the defaults. Read once, at the first rotation.
	Pool rotators.PoolLimits

	poolsOnce sync.Once
	pools     *rotators.AdminPools[*session]
}

var (
	_ rotators.Rotator         = (*Rotator)(nil)
	_ rotators.ConfigValidator = (*Rotator)(nil)
	_ rotators.Rollbacker      = (*Rotator)(nil)
)

// New returns a Rotator with the default iteration count.
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
			// A connection a network cut left silent is given up on after
			// the connect timeout, as a new one would be.
			Alive: func(ctx context.Context, s *session) error { return s.alive(ctx) },
			Close: (*session).close,
			AuthFailed: func(err error) bool {
				return isAuthFailure(err) || errors.Is(err, rotators.ErrWrongIdentity)
			},
		})
	})
	return r.pools
}

// adminSession lends a session of the admin from the pool of the admin
// secret and server, opening one if none is free. Give it back with
// Release(err): a session on which something failed is closed.
func (r *Rotator) adminSession(ctx context.Context, cfg rotators.DBConfig, admin rotators.DBCredentials) (*rotators.Lease[*session], error) {
	cred := rotators.AdminCredential(admin)
	defer clear(cred)
	lease, err := r.adminPools().Acquire(ctx, rotators.AdminPoolKey(cfg, admin), cred, func(ctx context.Context) (*session, error) {
		return openSession(ctx, cfg, admin)
	})
	if err != nil && isAuthFailure(err) {
		return nil, &rotators.AdminRefusedError{Account: roleTarget(admin.Username), Server: hostPort(admin), Reason: authReason(err), Err: err}
	}
	return lease, err
}

func (r *Rotator) iterations() (int, error) {
	n := r.Iterations
	if n == 0 {
		return DefaultIterations, nil
	}
	if n < MinIterations || n > MaxIterations {
		return 0, fmt.Errorf("postgres: iterations %d: must be between %d and %d", n, MinIterations, MaxIterations)
	}
	return n, nil
}

// ValidateConfig checks a rotation config when it is saved.
func (r *Rotator) ValidateConfig(_ context.Context, secretType string, config json.RawMessage) error {
	if secretType != SecretType {
		return fmt.Errorf("postgres: rotates %s secrets, not %q", SecretType, secretType)
	}
	_, err := parseConfig(config)
	return err
}

func parseConfig(raw json.RawMessage) (rotators.DBConfig, error) {
	cfg, err := rotators.ParseDBConfig(raw)
	if err != nil {
		return cfg, fmt.Errorf("postgres: %w", err)
	}
	if cfg.AlternateUsername != "" {
		if err := checkRoleName(cfg.AlternateUsername); err != nil {
			return cfg, fmt.Errorf("postgres: config: alternate_username: %w", err)
		}
	}
	if err := rotators.CheckSQLTestQuery(cfg.TestQuery); err != nil {
		return cfg, fmt.Errorf("postgres: %w", err)
	}
	return cfg, nil
}

// parseValue reads a db-credentials value meant for PostgreSQL.
func parseValue(what string, v rotators.Value) (rotators.DBCredentials, error) {
	c, err := rotators.ParseDBCredentials(v)
	if err != nil {
		return c, fmt.Errorf("postgres: %s: %w", what, err)
	}
	if c.Engine != "" && c.Engine != "postgres" && c.Engine != "postgresql" {
		return c, fmt.Errorf("postgres: %s: engine is %q, not postgres", what, c.Engine)
	}
	if err := checkRoleName(c.Username); err != nil {
		return c, fmt.Errorf("postgres: %s: username: %w", what, err)
	}
	return c, nil
}

// Create makes the pending value: a new password for the current user,
// or for alternating the other user of the pair. It touches nothing
// outside the process.
func (r *Rotator) Create(_ context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	if req.Current.Len() == 0 {
		return rotators.CreateResponse{}, errors.New("postgres: the secret has no current value to rotate")
	}
	cur, err := parseValue("current value", req.Current)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	var prevUser string
	if req.Previous.Len() > 0 {
		if prev, err := rotators.ParseDBCredentials(req.Previous); err == nil {
			prevUser = prev.Username
		}
	}
	user := cfg.PendingUsername(cur.Username, prevUser)
	if err := checkRoleName(user); err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("postgres: pending user: %w", err)
	}
	pw, err := rotators.GeneratePassword(cfg.Password)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("postgres: %w", err)
	}
	v, err := rotators.WithCredentials(req.Current, user, pw)
	pw.Wipe()
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("postgres: %w", err)
	}
	return rotators.CreateResponse{Value: v}, nil
}

// Set makes the pending value work on the server. Running it again with
// the same pending value is harmless.
func (r *Rotator) Set(ctx context.Context, req rotators.SetRequest) (err error) {
	defer func() { err = scrub(err, req.Current, req.Pending, req.Admin) }()
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	iter, err := r.iterations()
	if err != nil {
		return err
	}
	cur, err := parseValue("current value", req.Current)
	if err != nil {
		return err
	}
	pend, err := parseValue("pending value", req.Pending)
	if err != nil {
		return err
	}
	verifier, err := ScramVerifier(sensitive.Bytes(pend.Password), iter)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	switch cfg.Strategy {
	case rotators.StrategySingleUser:
		if pend.Username != cur.Username {
			return fmt.Errorf("postgres: single-user: the pending user %q is not the current user %q", pend.Username, cur.Username)
		}
		return r.setSingleUser(ctx, cfg, cur, pend, verifier)
	case rotators.StrategyAdmin:
		if pend.Username != cur.Username {
			return fmt.Errorf("postgres: admin: the pending user %q is not the current user %q", pend.Username, cur.Username)
		}
		admin, err := parseAdmin(req.Admin)
		if err != nil {
			return err
		}
		lease, err := r.adminSession(ctx, cfg, admin)
		if err != nil {
			return fmt.Errorf("postgres: connect as the admin %q: %w", admin.Username, err)
		}
		_, err = lease.S.conn.ExecContext(ctx, alterPasswordSQL(pend.Username, verifier))
		lease.Release(err)
		if err != nil {
			return fmt.Errorf("postgres: change the password of %q: %w", pend.Username, err)
		}
		return nil
	case rotators.StrategyAlternating:
		if pend.Username == cur.Username {
			return fmt.Errorf("postgres: alternating: the pending user is the current user %q; want the other user of the pair", cur.Username)
		}
		if err := cfg.CheckPair(cur.Username, pend.Username); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		admin, err := parseAdmin(req.Admin)
		if err != nil {
			return err
		}
		return r.setAlternating(ctx, cfg, admin, cur.Username, pend.Username, verifier)
	}
	return fmt.Errorf("postgres: strategy %q: %w", cfg.Strategy, rotators.ErrUnsupported)
}

// setSingleUser: the role logs in with its current password and changes
// its own password (PostgreSQL lets any role do so). First it makes sure
// the server checks that role's password (checkPasswordChecked): over a
// trusted connection any value naming any role would log in as that role
// and change its password. open checks that the session is the role's
// own. If the current password is refused, Set may already have run: when
// the pending one logs in, there is nothing left to do.
func (r *Rotator) setSingleUser(ctx context.Context, cfg rotators.DBConfig, cur, pend rotators.DBCredentials, verifier string) error {
	if err := checkPasswordChecked(ctx, cfg, cur); err != nil {
		return err
	}
	db, err := open(ctx, cfg, cur)
	if err != nil {
		if !isAuthFailure(err) {
			return fmt.Errorf("postgres: connect as %q: %w", cur.Username, err)
		}
		db2, err2 := open(ctx, cfg, pend)
		if err2 != nil {
			if isAuthFailure(err2) {
				return noWorkingCredential(cur, err2)
			}
			return fmt.Errorf("postgres: connect as %q: the current password is refused (%s) and the pending one could not be tried: %w", cur.Username, authReason(err), err2)
		}
		db2.Close()
		return nil // already set, by an earlier run of Set
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, alterPasswordSQL(pend.Username, verifier)); err != nil {
		return fmt.Errorf("postgres: change the password of %q: %w", pend.Username, err)
	}
	return nil
}

// checkPasswordChecked logs in as c's user with a random wrong password
// and wants the server to refuse it. A server that lets the login in
// (trust or peer authentication for that user and address) would let any
// value naming any role change that role's password: the rotator refuses
// with ErrWrongIdentity and changes nothing.
func checkPasswordChecked(ctx context.Context, cfg rotators.DBConfig, c rotators.DBCredentials) error {
	wrong, err := rotators.GeneratePassword(rotators.PasswordPolicy{Length: 32})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	probe := c
	probe.Password = "rotary-wrong-" + string(wrong.Reveal())
	wrong.Wipe()
	db, err := open(ctx, cfg, probe)
	switch {
	case err == nil:
		db.Close()
		return fmt.Errorf("postgres: %w: the server let %q in with a wrong password (trust or peer authentication in pg_hba.conf): "+
			"a password it does not check cannot be rotated, and any value naming another role would change that role's password; "+
			"make pg_hba.conf require scram-sha-256 for this user and address", rotators.ErrWrongIdentity, c.Username)
	case isAuthFailure(err):
		return nil
	default:
		return fmt.Errorf("postgres: connect as %q: %w", c.Username, err)
	}
}

// setAlternating: the admin sets the other user's password, creating that
// user on first use with the first user's attributes and memberships, and
// on every run grants it any membership of the first user it lacks; all
// in one transaction, so a crash leaves either nothing or everything.
func (r *Rotator) setAlternating(ctx context.Context, cfg rotators.DBConfig, admin rotators.DBCredentials, first, second, verifier string) (err error) {
	lease, err := r.adminSession(ctx, cfg, admin)
	if err != nil {
		return fmt.Errorf("postgres: connect as the admin %q: %w", admin.Username, err)
	}
	defer func() { lease.Release(err) }()
	db := lease.S.conn
	var versionNum string
	if err := db.QueryRowContext(ctx, queryVersionNum).Scan(&versionNum); err != nil {
		return fmt.Errorf("postgres: server version: %w", err)
	}
	v16, _ := strconv.Atoi(versionNum)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var exists bool
	if err := tx.QueryRowContext(ctx, queryRoleExists, second).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: look up %q: %w", second, err)
	}
	if exists {
		if _, err := tx.ExecContext(ctx, alterPasswordSQL(second, verifier)); err != nil {
			return fmt.Errorf("postgres: change the password of %q: %w", second, err)
		}
	} else {
		var a roleAttrs
		err := tx.QueryRowContext(ctx, queryRoleAttrs, first).Scan(&a.Inherit, &a.ConnLimit, &a.ValidUntil)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("postgres: the current user %q does not exist", first)
		}
		if err != nil {
			return fmt.Errorf("postgres: read the attributes of %q: %w", first, err)
		}
		if _, err := tx.ExecContext(ctx, createRoleSQL(second, verifier, a)); err != nil {
			return fmt.Errorf("postgres: create the second user %q: %w", second, err)
		}
	}
	firstM, err := memberships(ctx, tx, first, v16 >= 160000)
	if err != nil {
		return err
	}
	secondM, err := memberships(ctx, tx, second, v16 >= 160000)
	if err != nil {
		return err
	}
	for _, m := range missingMemberships(firstM, secondM) {
		if _, err := tx.ExecContext(ctx, grantSQL(m, second)); err != nil {
			return fmt.Errorf("postgres: grant %q to %q (as %q has it): %w", m.Group, second, first, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

func memberships(ctx context.Context, tx *sql.Tx, role string, v16 bool) ([]membership, error) {
	q := queryMemberships
	if v16 {
		q = queryMemberships16
	}
	rows, err := tx.QueryContext(ctx, q, role)
	if err != nil {
		return nil, fmt.Errorf("postgres: read the memberships of %q: %w", role, err)
	}
	defer rows.Close()
	var out []membership
	for rows.Next() {
		m := membership{Options: v16}
		dest := []any{&m.Group, &m.Admin}
		if v16 {
			dest = append(dest, &m.Inherit, &m.Set)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("postgres: read the memberships of %q: %w", role, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read the memberships of %q: %w", role, err)
	}
	return out, nil
}

// Test logs in with the value over the network, runs the test query and
// checks the session belongs to the value's user.
func (r *Rotator) Test(ctx context.Context, req rotators.TestRequest) (err error) {
	defer func() { err = scrub(err, req.Value) }()
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	c, err := parseValue("value", req.Value)
	if err != nil {
		return err
	}
	db, err := open(ctx, cfg, c)
	if err != nil {
		return fmt.Errorf("postgres: log in as %q: %w", c.Username, err)
	}
	defer db.Close()
	q := cfg.TestQuery
	if strings.TrimSpace(q) == "" {
		q = "SELECT 1"
	}
	if err := runReadOnly(ctx, db, q); err != nil {
		return fmt.Errorf("postgres: the test query failed as %q: %w", c.Username, err)
	}
	return nil
}

// runReadOnly runs the test query in a READ ONLY transaction that is
// rolled back, through the extended protocol (Parse/Bind/Execute), in
// which PostgreSQL refuses more than one statement.
func runReadOnly(ctx context.Context, db *sql.DB, q string) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // the transaction only read
	stmt, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return err
	}
	defer stmt.Close()
	rows, err := stmt.QueryContext(ctx)
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

// Finish cleans up after the pending value became current. A normal
// rotation has nothing to clean up: single-user and admin already replaced
// the only password, and alternating keeps the previous user working for
// clients that still hold it. An emergency makes the previous credential
// useless (alternating: the previous user gets a random password stored
// nowhere) and, unless KeepSessions, ends the previous user's sessions.
func (r *Rotator) Finish(ctx context.Context, req rotators.FinishRequest) (err error) {
	if !req.Emergency {
		return nil
	}
	defer func() { err = scrub(err, req.Current, req.Previous, req.Admin) }()
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	cur, err := parseValue("current value", req.Current)
	if err != nil {
		return err
	}
	if req.Previous.Len() == 0 {
		return nil // nothing was current before: nothing to revoke
	}
	prev, err := parseValue("previous value", req.Previous)
	if err != nil {
		return err
	}
	switch cfg.Strategy {
	case rotators.StrategySingleUser:
		// Set already replaced the one password of the role. The role
		// itself, logged in with its new password, ends its other sessions
		// (a role may signal its own backends).
		req.Effects.Add(revoked(prev.Username))
		if req.KeepSessions {
			return nil
		}
		db, err := open(ctx, cfg, cur)
		if err != nil {
			return fmt.Errorf("postgres: connect as %q: %w", cur.Username, err)
		}
		defer db.Close()
		return terminate(ctx, db, prev.Username, req.Effects)
	case rotators.StrategyAdmin, rotators.StrategyAlternating:
		alternate := cfg.Strategy == rotators.StrategyAlternating && prev.Username != cur.Username
		if !alternate {
			// Set already replaced the role's only password.
			req.Effects.Add(revoked(prev.Username))
			if req.KeepSessions {
				return nil
			}
		}
		admin, err := parseAdmin(req.Admin)
		if err != nil {
			return err
		}
		lease, err := r.adminSession(ctx, cfg, admin)
		if err != nil {
			return fmt.Errorf("postgres: connect as the admin %q: %w", admin.Username, err)
		}
		defer func() { lease.Release(err) }()
		db := lease.S.conn
		if alternate {
			verifier, err := r.unknownPasswordVerifier()
			if err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
			if _, err := db.ExecContext(ctx, alterPasswordSQL(prev.Username, verifier)); err != nil {
				return fmt.Errorf("postgres: revoke the password of the previous user %q: %w", prev.Username, err)
			}
			req.Effects.Add(revoked(prev.Username))
		}
		if req.KeepSessions {
			return nil
		}
		if err := terminate(ctx, db, prev.Username, req.Effects); err != nil {
			return err
		}
		if alternate {
			// The current user's old password was a working credential
			// until Set replaced it (it was the version before previous);
			// sessions opened with it end too. PostgreSQL cannot tell which
			// password a session used, so new sessions reconnect.
			return terminate(ctx, db, cur.Username, req.Effects)
		}
		return nil
	}
	return fmt.Errorf("postgres: strategy %q: %w", cfg.Strategy, rotators.ErrUnsupported)
}

func revoked(role string) rotators.Effect {
	return rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: roleTarget(role)}
}

func roleTarget(role string) string { return "role " + strconv.Quote(role) }

// Rollback undoes Set of a pending value that failed its test while the
// current value still works. Single-user and admin have nothing to undo
// (the role's one password is still the current one, or Set never took).
// Alternating gave the other user of the pair the pending password, a
// working credential nobody will store once the pending version is
// dropped: the admin replaces it with a random password stored nowhere.
// A missing role (Set never created it) is fine.
func (r *Rotator) Rollback(ctx context.Context, req rotators.RollbackRequest) (err error) {
	defer func() { err = scrub(err, req.Current, req.Pending, req.Admin) }()
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if cfg.Strategy != rotators.StrategyAlternating {
		return nil
	}
	cur, err := parseValue("current value", req.Current)
	if err != nil {
		return err
	}
	pend, err := parseValue("pending value", req.Pending)
	if err != nil {
		return err
	}
	if pend.Username == cur.Username {
		return fmt.Errorf("postgres: alternating: the pending user is the current user %q; refusing to change the current password", cur.Username)
	}
	if err := cfg.CheckPair(cur.Username, pend.Username); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	admin, err := parseAdmin(req.Admin)
	if err != nil {
		return err
	}
	verifier, err := r.unknownPasswordVerifier()
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	lease, err := r.adminSession(ctx, cfg, admin)
	if err != nil {
		return fmt.Errorf("postgres: connect as the admin %q: %w", admin.Username, err)
	}
	_, err = lease.S.conn.ExecContext(ctx, alterPasswordSQL(pend.Username, verifier))
	lease.Release(err)
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "42704" { // undefined_object: Set never created the role
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres: revoke the pending password of %q: %w", pend.Username, err)
	}
	return nil
}

// rowQuerier is a *sql.DB or a *sql.Conn.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// terminate ends every other session of role and reports how many.
func terminate(ctx context.Context, db rowQuerier, role string, effects *rotators.Effects) error {
	var n int
	if err := db.QueryRowContext(ctx, queryTerminate, role).Scan(&n); err != nil {
		return fmt.Errorf("postgres: end the sessions of %q: %w", role, err)
	}
	effects.Add(rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: roleTarget(role), Count: n})
	return nil
}

// noWorkingCredential is the error of a login that refused both the
// current and the pending password of c's role.
func noWorkingCredential(c rotators.DBCredentials, err error) error {
	return &rotators.NoWorkingCredentialError{
		Account: roleTarget(c.Username),
		Server:  hostPort(c),
		Reason:  authReason(err),
		Err:     err,
	}
}

func hostPort(c rotators.DBCredentials) string {
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]"), strconv.Itoa(c.Port))
}

// authReason is the server's refusal in a few words, without the
// driver's prefix and code.
func authReason(err error) string {
	var pe *pq.Error
	if !errors.As(err, &pe) {
		return err.Error()
	}
	if pe.Code == "28P01" {
		return "password authentication failed"
	}
	return pe.Message
}

func parseAdmin(v rotators.Value) (rotators.DBCredentials, error) {
	if v.Len() == 0 {
		return rotators.DBCredentials{}, errors.New("postgres: the admin secret has no value")
	}
	return parseValue("admin value", v)
}

// testDialer, when set by a test, replaces the driver's dialer (to record
// every byte the rotator sends to the server).
var testDialer pq.Dialer

// open connects with c over TCP (a single connection, pinged so that a
// refused login is reported here) with the config's connect timeout,
// shortened to ctx's deadline, and checks that the session is c's user's
// own: current_user and session_user are both c.Username (a role whose
// settings SET ROLE at login, or a server that maps the name, is refused
// with ErrWrongIdentity).
func open(ctx context.Context, cfg rotators.DBConfig, c rotators.DBCredentials) (*sql.DB, error) {
	return openWith(ctx, cfg, c, testDialer)
}

// openWith is open through dialer (nil: the driver's own).
func openWith(ctx context.Context, cfg rotators.DBConfig, c rotators.DBCredentials, dialer pq.Dialer) (*sql.DB, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	pc := pqConfig(c, mode)
	if !rotators.Plaintext(mode) {
		tc, err := c.TLSConfig()
		if err != nil {
			return nil, err
		}
		key := c.TLSKey()
		if err := pq.RegisterTLSConfig(key, tc); err != nil {
			return nil, fmt.Errorf("TLS settings: %w", err)
		}
		pc.SSLMode = pq.SSLMode("pqgo-" + key)
	}
	timeout := cfg.Timeout()
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = max(left, time.Millisecond)
		}
	}
	pc.ConnectTimeout = timeout
	conn, err := pq.NewConnectorConfig(pc)
	if err != nil {
		return nil, err
	}
	if dialer != nil {
		conn.Dialer(dialer)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	var cur, sess string
	if err := db.QueryRowContext(ctx, queryWho).Scan(&cur, &sess); err != nil {
		db.Close()
		return nil, fmt.Errorf("current_user: %w", err)
	}
	if cur != c.Username || sess != c.Username {
		db.Close()
		return nil, fmt.Errorf("%w: logged in as %q, but the session is session_user %q, current_user %q "+
			"(a role setting or a server-side mapping changed it); refusing to act as another role", rotators.ErrWrongIdentity, c.Username, sess, cur)
	}
	return db, nil
}

// session is one admin connection, pinned: a broken connection fails the
// calls on it (and the pool closes it) instead of being replaced behind
// the pool's back by a login that neither it nor the identity check saw.
//
// lib/pq answers a cancelled context by asking the server to cancel the
// statement and then still waits for the server's answer, so on a
// connection that a network cut left open but silent a call would wait
// forever. The session keeps its TCP connection and sets deadlines on it:
// the connect timeout for the ping before a reuse, then the context's
// deadline (none without one) for the rotation's statements.
type session struct {
	db      *sql.DB
	conn    *sql.Conn
	nc      net.Conn      // the TCP (or TLS-carrying) connection under conn
	timeout time.Duration // the config's connect timeout: bounds the ping before a reuse
}

// openSession opens a session with c (open, then pins its connection).
func openSession(ctx context.Context, cfg rotators.DBConfig, c rotators.DBCredentials) (*session, error) {
	d := &captureDialer{base: testDialer}
	db, err := openWith(ctx, cfg, c, d)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &session{db: db, conn: conn, nc: d.first(), timeout: cfg.Timeout()}
	if s.nc == nil {
		s.close()
		return nil, errors.New("postgres: the driver opened no connection")
	}
	s.lend(ctx)
	return s, nil
}

// alive pings the session within the connect timeout, then lends it
// until ctx's deadline.
func (s *session) alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	if err := s.nc.SetDeadline(dl); err != nil {
		return err
	}
	if err := s.conn.PingContext(ctx); err != nil {
		return err
	}
	s.lend(ctx)
	return nil
}

// lend bounds every read and write on the session by ctx's deadline.
func (s *session) lend(ctx context.Context) {
	dl, _ := ctx.Deadline() // zero: no deadline
	_ = s.nc.SetDeadline(dl)
}

// captureDialer dials like base (nil: a plain net.Dialer) and remembers
// the first connection (later ones are the driver's cancel requests).
type captureDialer struct {
	base pq.Dialer
	mu   sync.Mutex
	conn net.Conn
}

func (d *captureDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *captureDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *captureDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	var err error
	switch b := d.base.(type) {
	case nil:
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
	case pq.DialerContext:
		c, err = b.DialContext(ctx, network, address)
	default:
		c, err = b.Dial(network, address)
	}
	if err == nil {
		d.mu.Lock()
		if d.conn == nil {
			d.conn = c
		}
		d.mu.Unlock()
	}
	return c, err
}

func (d *captureDialer) first() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

func (s *session) close() {
	s.conn.Close()
	s.db.Close()
}

// pqConfig is the driver config for c, built field by field: no
// connection string is parsed, so no character of any field can add a
// parameter (options, a second host, a password), and nothing from the
// daemon's environment (PGHOSTADDR, PGOPTIONS, PGSERVICE, PGSSLROOTCERT,
// a passfile) changes where it connects or what the session runs. The
// password is in the struct, never in a string a parse error could quote.
// TLS modes are set by open; mode here is a plaintext one or a
// placeholder.
func pqConfig(c rotators.DBCredentials, mode string) pq.Config {
	return pq.Config{
		Host:               strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]"),
		Port:               uint16(c.Port),
		Database:           dbName(c),
		User:               c.Username,
		Password:           c.Password,
		SSLMode:            pq.SSLMode(mode),
		ApplicationName:    "rotary",
		ClientEncoding:     "UTF8",
		Datestyle:          "ISO, MDY",
		MinProtocolVersion: pq.ProtocolVersion30,
		MaxProtocolVersion: pq.ProtocolVersion30,
	}
}

func dbName(c rotators.DBCredentials) string {
	if c.DBName == "" {
		return "postgres"
	}
	return c.DBName
}

// isAuthFailure reports whether err is the server refusing the credential
// (invalid_password or invalid_authorization_specification).
func isAuthFailure(err error) bool {
	var pe *pq.Error
	if errors.As(err, &pe) {
		return pe.Code == "28P01" || pe.Code == "28000"
	}
	return false
}

// scrub removes every password the request carries from err's text.
func scrub(err error, values ...rotators.Value) error {
	if err == nil {
		return nil
	}
	var secrets []sensitive.Bytes
	for _, v := range values {
		if v.Len() == 0 {
			continue
		}
		secrets = append(secrets, v)
		if c, perr := rotators.ParseDBCredentials(v); perr == nil {
			secrets = append(secrets, sensitive.Bytes(c.Password))
		}
	}
	return sensitive.Sanitize(err, secrets...)
}

// unknownPasswordVerifier returns the SCRAM verifier of a random password
// that is wiped at once and stored nowhere: setting it locks a user out
// without dropping it (the previous user of an alternating pair after an
// emergency, a pending user whose rotation rolled back).
func (r *Rotator) unknownPasswordVerifier() (string, error) {
	iter, err := r.iterations()
	if err != nil {
		return "", err
	}
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{Length: 64})
	if err != nil {
		return "", err
	}
	defer pw.Wipe()
	return ScramVerifier(pw, iter)
}
