// Package sqlconn is a database/sql connector that opens every new
// connection with the current credential of a db-credentials secret, read
// through a rotary client's cache, so that a connection pool follows
// rotations without restarting and without dropping a connection.
//
//	db := sql.OpenDB(must(sqlconn.New(c, "app/db", "postgres")))
//
// # Logins
//
// Each Connect reads the secret with (*client.Client).Get (memory, kept
// fresh by the daemon's events) and logs in with it. When the database
// refuses the login as an authentication failure (PostgreSQL SQLSTATE
// 28P01 or 28000, MySQL error 1045), the cache may be behind: the
// connector reads the secret again (Refresh) and retries once. When
// that is refused too, a rotation is usually between its set step (the
// single-user strategy changes the password first) and its finish step
// (the new version becomes current): the connector waits for the event
// that makes a newer version current, at most WithRotationWait (default
// 10s, bounded by the caller's context), and retries with it; if another
// rotation changed the password again meanwhile, it waits for the next
// version the same way, until the wait is over. Any other error is
// returned as it is. With the alternating strategy the previous
// user keeps its password until the next rotation, so the first login
// works and nothing waits.
//
// Connections already open keep working: neither database ends a session
// when its user's password changes (an emergency rotation ends them on
// purpose, and database/sql then opens new ones through this connector).
//
// # Where it connects
//
// The connection settings are built field by field (lib/pq's pq.Config,
// go-sql-driver/mysql's mysql.Config): no connection string is parsed, so
// no character of a field can add a parameter, and nothing is read from
// PG* environment variables or a passfile. The value is checked as the
// rotators check it (rotators.ParseDBCredentials): a host name or IP
// address (no Unix socket, no host list), and no password in plaintext to
// a host that is not loopback unless the value says allow_plaintext.
// sslmode, sslrootcert, sslcert, sslkey and tls_server_name are honoured
// as the rotators honour them.
//
// Errors name the secret, the version and the user, never the password.
package sqlconn

import (
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Drivers New accepts.
const (
	Postgres = "postgres"
	MySQL    = "mysql"
)

// Defaults.
const (
	DefaultRotationWait   = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// Login describes one login attempt, for WithLoginHook. It holds no
// password.
type Login struct {
	Secret   string
	Version  int64 // the version whose credential was used
	Username string
	// Attempt is 1 for the first login of a Connect, 2 after a refresh,
	// 3 after waiting for a rotation to finish.
	Attempt int
	// Start is when the credential was taken from the cache, End when
	// the login ended.
	Start, End time.Time
	// Err is nil when the login worked.
	Err error
	// AuthFailure reports that the database refused the credential.
	AuthFailure bool
}

type options struct {
	wait    time.Duration
	timeout time.Duration
	hook    func(Login)
	appName string
}

// Option configures a connector.
type Option func(*options)

// WithRotationWait bounds how long a login refused after a refresh waits
// for a newer version to become current (default DefaultRotationWait; 0
// does not wait).
func WithRotationWait(d time.Duration) Option { return func(o *options) { o.wait = max(d, 0) } }

// WithConnectTimeout bounds each login (default DefaultConnectTimeout).
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithLoginHook calls fn after every login attempt (for metrics and
// tests). fn must be quick and safe for concurrent use.
func WithLoginHook(fn func(Login)) Option { return func(o *options) { o.hook = fn } }

// WithApplicationName sets PostgreSQL's application_name (default
// "rotary-sqlconn"); MySQL ignores it.
func WithApplicationName(name string) Option { return func(o *options) { o.appName = name } }

// connector is the driver.Connector New returns.
type connector struct {
	c      *client.Client
	secret string
	driver string
	opts   options

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event of the secret
	stop    func()
}

var (
	_ driver.Connector           = (*connector)(nil)
	_ interface{ Close() error } = (*connector)(nil)
)

// New returns a connector for secret, a db-credentials secret, with driver
// "postgres" (lib/pq) or "mysql" (go-sql-driver/mysql). Use it with
// sql.OpenDB; DB.Close closes it. c must stay open as long as the pool.
func New(c *client.Client, secret, driverName string, opts ...Option) (driver.Connector, error) {
	if c == nil {
		return nil, errors.New("sqlconn: no client")
	}
	if secret == "" {
		return nil, errors.New("sqlconn: no secret name")
	}
	switch driverName {
	case Postgres, MySQL:
	default:
		return nil, fmt.Errorf("sqlconn: driver %q: use %q or %q", driverName, Postgres, MySQL)
	}
	k := &connector{c: c, secret: secret, driver: driverName, changed: make(chan struct{}),
		opts: options{wait: DefaultRotationWait, timeout: DefaultConnectTimeout, appName: "rotary-sqlconn"}}
	for _, o := range opts {
		o(&k.opts)
	}
	stop, err := c.Watch(secret, func(client.Event) {
		k.mu.Lock()
		close(k.changed)
		k.changed = make(chan struct{})
		k.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlconn: %w", err)
	}
	k.stop = stop
	return k, nil
}

// Driver returns the underlying driver.
func (k *connector) Driver() driver.Driver {
	if k.driver == MySQL {
		return &mysql.MySQLDriver{}
	}
	return &pq.Driver{}
}

// Close stops following the secret's events (sql.DB.Close calls it).
func (k *connector) Close() error {
	k.stop()
	return nil
}

// Connect opens one connection with the current credential (see the
// package comment for the retries).
func (k *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cur, read, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := k.login(ctx, cur, read, 1)
	if err == nil || !isAuthFailure(err) {
		return conn, err
	}
	// The cache may be behind the database: read the secret again.
	if _, _ = k.c.Refresh(ctx, k.secret); ctx.Err() != nil {
		return nil, err
	}
	if cur, read, err = k.current(ctx); err != nil {
		return nil, err
	}
	first := cur.Version
	conn, err = k.login(ctx, cur, read, 2)
	if err == nil || !isAuthFailure(err) || k.opts.wait <= 0 {
		return conn, err
	}
	// A rotation may be between changing the password and making the new
	// version current: wait for it. If the newer version is refused too
	// (another rotation changed the password again meanwhile), wait for
	// the next one, until the wait is over.
	authErr := err
	deadline := time.NewTimer(k.opts.wait)
	defer deadline.Stop()
	for attempt := 3; ; {
		k.mu.Lock()
		ch := k.changed
		k.mu.Unlock()
		if cur, read, err = k.current(ctx); err != nil {
			return nil, err
		}
		if cur.Version > first {
			first = cur.Version
			conn, err = k.login(ctx, cur, read, attempt)
			if err == nil || !isAuthFailure(err) {
				return conn, err
			}
			authErr = err
			attempt++
			continue
		}
		sensitive.Bytes(cur.Value).Wipe()
		select {
		case <-ch:
		case <-deadline.C:
			return nil, authErr
		case <-ctx.Done():
			return nil, authErr
		}
	}
}

// current reads the secret from the cache, and says when it asked.
func (k *connector) current(ctx context.Context) (client.Current, time.Time, error) {
	read := time.Now()
	cur, err := k.c.Get(ctx, k.secret)
	if err != nil {
		return cur, read, fmt.Errorf("sqlconn: read secret %q: %w", k.secret, err)
	}
	return cur, read, nil
}

// login logs in once with cur (and wipes cur's value).
func (k *connector) login(ctx context.Context, cur client.Current, read time.Time, attempt int) (driver.Conn, error) {
	defer sensitive.Bytes(cur.Value).Wipe()
	start := read
	cred, err := rotators.ParseDBCredentials(sensitive.Bytes(cur.Value))
	if err != nil {
		return nil, fmt.Errorf("sqlconn: secret %q version %d: %w", k.secret, cur.Version, err)
	}
	if cred.Engine != "" && cred.Engine != k.driver {
		return nil, fmt.Errorf("sqlconn: secret %q version %d: engine %q, but the connector is for %q", k.secret, cur.Version, cred.Engine, k.driver)
	}
	pw := sensitive.Bytes(cred.Password)
	var dc driver.Connector
	if k.driver == MySQL {
		dc, err = k.mysqlConnector(cred)
	} else {
		dc, err = k.pqConnector(cred)
	}
	var conn driver.Conn
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, k.opts.timeout)
		conn, err = dc.Connect(cctx)
		cancel()
	}
	auth := err != nil && isAuthFailure(err)
	if err != nil {
		err = &loginError{msg: sensitive.SanitizeString(fmt.Sprintf("sqlconn: secret %q version %d: log in as %q: %v", k.secret, cur.Version, cred.Username, err), pw), auth: auth}
	}
	if k.opts.hook != nil {
		k.opts.hook(Login{Secret: k.secret, Version: cur.Version, Username: cred.Username, Attempt: attempt,
			Start: start, End: time.Now(), Err: err, AuthFailure: auth})
	}
	return conn, err
}

// loginError is a failed login, its text already free of the password.
type loginError struct {
	msg  string
	auth bool
}

func (e *loginError) Error() string { return e.msg }

// ErrAuth matches (errors.Is) a login the database refused as an
// authentication failure.
var ErrAuth = errors.New("authentication failed")

func (e *loginError) Is(target error) bool { return target == ErrAuth && e.auth }

func (k *connector) pqConnector(c rotators.DBCredentials) (driver.Connector, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	pc := pq.Config{
		Host:               strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]"),
		Port:               uint16(c.Port),
		Database:           cmp.Or(c.DBName, "postgres"),
		User:               c.Username,
		Password:           c.Password,
		SSLMode:            pq.SSLMode(mode),
		ApplicationName:    k.opts.appName,
		ClientEncoding:     "UTF8",
		Datestyle:          "ISO, MDY",
		MinProtocolVersion: pq.ProtocolVersion30,
		MaxProtocolVersion: pq.ProtocolVersion30,
		ConnectTimeout:     k.opts.timeout,
	}
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
	return pq.NewConnectorConfig(pc)
}

func (k *connector) mysqlConnector(c rotators.DBCredentials) (driver.Connector, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	mc := mysql.NewConfig()
	mc.User = c.Username
	mc.Passwd = c.Password
	mc.Net = "tcp"
	mc.Addr = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]"), strconv.Itoa(c.Port))
	mc.DBName = c.DBName
	mc.Timeout = k.opts.timeout
	switch mode {
	case rotators.SSLDisable, rotators.SSLAllow:
		mc.TLSConfig = "false"
	case rotators.SSLPrefer:
		mc.TLSConfig = "preferred"
	default:
		if mc.TLS, err = c.TLSConfig(); err != nil {
			return nil, err
		}
		mc.AllowFallbackToPlaintext = false
	}
	mc.MultiStatements = false
	mc.InterpolateParams = false
	return mysql.NewConnector(mc)
}

// isAuthFailure reports whether err is the database refusing the
// credential: PostgreSQL invalid_password (28P01) or
// invalid_authorization_specification (28000), MySQL access denied (1045).
func isAuthFailure(err error) bool {
	var le *loginError
	if errors.As(err, &le) {
		return le.auth
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		return pe.Code == "28P01" || pe.Code == "28000"
	}
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1045
}
