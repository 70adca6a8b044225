package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/rotary-secrets/rotary/rotators"
)

// MySQL error numbers this package reacts to.
const (
	erAccessDenied = 1045 // ER_ACCESS_DENIED_ERROR: wrong user or password
	erNoSuchThread = 1094 // ER_NO_SUCH_THREAD: the session ended by itself
)

func isAccessDenied(err error) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && me.Number == erAccessDenied
}

// session is one dedicated connection and what it learned on connecting.
type session struct {
	db   *sql.DB
	conn *sql.Conn
	flavor
	version string
	current account // CURRENT_USER(): the account the server matched
	id      uint64  // CONNECTION_ID()
	timeout time.Duration
}

// driverConfig builds the connection settings for c. The DSN is never
// written as a string: every field is set on go-sql-driver's Config, so no
// character of the password or user name can change its meaning.
// MultiStatements stays off (one statement per call, no stacked queries)
// and placeholders are prepared server-side, never interpolated. TLS
// follows the value's sslmode (rotators.DBCredentials.Mode): disable and
// allow connect in plaintext, prefer uses TLS when the server offers it,
// require, verify-ca and verify-full always use it, with the CA of
// sslrootcert and the client certificate of sslcert/sslkey.
func driverConfig(c rotators.DBCredentials, timeout time.Duration) (*driver.Config, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	mc := driver.NewConfig()
	mc.User = c.Username
	mc.Passwd = c.Password
	mc.Net = "tcp"
	mc.Addr = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	mc.DBName = c.DBName
	mc.Timeout = timeout
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
	if testDial != nil {
		mc.DialFunc = testDial
	}
	return mc, nil
}

// testDial, when set by a test, opens the TCP connections (to count them).
var testDial func(ctx context.Context, network, addr string) (net.Conn, error)

// connect logs in with c over TCP and returns a session on one connection.
// Connecting and the first query are bounded by timeout as well as ctx.
func connect(ctx context.Context, c rotators.DBCredentials, timeout time.Duration) (*session, error) {
	mc, err := driverConfig(c, timeout)
	if err != nil {
		return nil, err
	}
	connector, err := driver.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql: connection settings: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := db.Conn(cctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql: connect to %s as %q: %w", mc.Addr, c.Username, err)
	}
	s := &session{db: db, conn: conn, timeout: timeout}
	var mode, cur string
	err = conn.QueryRowContext(cctx, "SELECT VERSION(), @@SESSION.sql_mode, CURRENT_USER(), CONNECTION_ID()").
		Scan(&s.version, &mode, &cur, &s.id)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("mysql: connect to %s as %q: %w", mc.Addr, c.Username, err)
	}
	s.MariaDB = strings.Contains(strings.ToLower(s.version), "mariadb")
	s.NoBackslashEscapes = strings.Contains(strings.ToUpper(mode), "NO_BACKSLASH_ESCAPES")
	if s.current, err = parseAccount(cur); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) close() {
	s.conn.Close()
	s.db.Close()
}

// exec runs one statement. what names it in errors; the statement text
// itself is never put in an error.
func (s *session) exec(ctx context.Context, what, query string, args ...any) error {
	if _, err := s.conn.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
	return nil
}

// checkIdentity makes sure the server matched the account the credential
// names: an anonymous account (empty user name) or another host's account
// of the same name could otherwise accept the login.
func (s *session) checkIdentity(user, host string) error {
	if s.current.User != user {
		return fmt.Errorf("mysql: %w: logged in as %q, but the server matched account %s (an anonymous or other account shadows it)", rotators.ErrWrongIdentity, user, s.current)
	}
	if host != "" && s.current.Host != host {
		return fmt.Errorf("mysql: %w: logged in as %q, but the server matched account %s, not host %q (account_host)", rotators.ErrWrongIdentity, user, s.current, host)
	}
	return nil
}

// accountsOf lists the hosts of user's accounts (needs SELECT on
// mysql.user). The comparison is exact: the column's collation ignores
// trailing spaces.
func (s *session) accountsOf(ctx context.Context, user string) ([]account, error) {
	rows, err := s.conn.QueryContext(ctx, "SELECT User, Host FROM mysql.user WHERE User = ?", user)
	if err != nil {
		return nil, fmt.Errorf("mysql: look up the accounts of %q (grant SELECT ON mysql.user to the admin, or set account_host): %w", user, err)
	}
	defer rows.Close()
	var out []account
	for rows.Next() {
		var a account
		if err := rows.Scan(&a.User, &a.Host); err != nil {
			return nil, fmt.Errorf("mysql: look up the accounts of %q: %w", user, err)
		}
		if a.User == user {
			out = append(out, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: look up the accounts of %q: %w", user, err)
	}
	return out, nil
}

// resolve returns user's account: on account_host when it is configured,
// otherwise the only account of that name. Several accounts are refused:
// changing one would leave the others' passwords as they were.
// ifMissing is returned when there is none (nil: an error).
func (s *session) resolve(ctx context.Context, user, accountHost string, ifMissing *account) (account, error) {
	if accountHost != "" {
		return account{User: user, Host: accountHost}, nil
	}
	accts, err := s.accountsOf(ctx, user)
	if err != nil {
		return account{}, err
	}
	switch len(accts) {
	case 1:
		return accts[0], nil
	case 0:
		if ifMissing != nil {
			return *ifMissing, nil
		}
		return account{}, fmt.Errorf("mysql: no account named %q", user)
	}
	hosts := make([]string, len(accts))
	for i, a := range accts {
		hosts[i] = strconv.Quote(a.Host)
	}
	return account{}, fmt.Errorf("mysql: %w named %q (hosts %s): set account_host in the rotation config to choose one",
		errAmbiguous, user, strings.Join(hosts, ", "))
}

// killSessions ends every session of user except this one. The process
// list names the user but not the account's host, so every session of
// that user name is ended. Without the PROCESS privilege the list shows
// only the session's own user's sessions, which is enough for a user
// ending its own.
func (s *session) killSessions(ctx context.Context, user string) (int, error) {
	rows, err := s.conn.QueryContext(ctx, "SELECT ID, USER FROM information_schema.PROCESSLIST WHERE USER = ?", user)
	if err != nil {
		return 0, fmt.Errorf("mysql: list the sessions of %q: %w", user, err)
	}
	var ids []uint64
	for rows.Next() {
		var id uint64
		var u string
		if err := rows.Scan(&id, &u); err != nil {
			rows.Close()
			return 0, fmt.Errorf("mysql: list the sessions of %q: %w", user, err)
		}
		if u == user && id != s.id {
			ids = append(ids, id)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("mysql: list the sessions of %q: %w", user, err)
	}
	n := 0
	for _, id := range ids {
		err := s.exec(ctx, fmt.Sprintf("end session %d of %q", id, user), killSQL(id))
		var me *driver.MySQLError
		switch {
		case err == nil:
			n++
		case errors.As(err, &me) && me.Number == erNoSuchThread:
		default:
			return n, err
		}
	}
	return n, nil
}
