package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/client/sqlconn"
)

// sqlconnRotations is how many rotations each strategy goes through while
// the pool runs (the 30). A PostgreSQL rotation through the
// race-built daemon takes about 2.5s here while the pool logs in a few
// hundred times a second, so each subtest takes about 80s; the two run in
// parallel.
const sqlconnRotations = 30

// loginLog records every login the connector tries.
type loginLog struct {
	mu     sync.Mutex
	logins []sqlconn.Login
}

func (l *loginLog) add(x sqlconn.Login) {
	l.mu.Lock()
	l.logins = append(l.logins, x)
	l.mu.Unlock()
}

func (l *loginLog) all() []sqlconn.Login {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sqlconn.Login(nil), l.logins...)
}

// poolLoad runs queries on db from 20 goroutines until stop is called; it
// returns the number of queries that worked and the errors of the others.
func poolLoad(db *sql.DB, query string) (stop func() (ok int64, errs []error)) {
	var (
		n    atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	for range 20 {
		wg.Go(func() {
			for ctx.Err() == nil {
				qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
				var s string
				err := db.QueryRowContext(qctx, query).Scan(&s)
				qcancel()
				switch {
				case err == nil:
					n.Add(1)
				case ctx.Err() != nil:
				default:
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	return func() (int64, []error) {
		cancel()
		wg.Wait()
		return n.Load(), errs
	}
}

// TestSQLConnPostgresPoolAcrossRotations runs a pool of 20 connections
// through sqlconn, with connections renewed every 50ms, while a real
// PostgreSQL role is rotated again and again with the single-user and the
// alternating strategy. No query fails; retried logins are counted and
// bounded; once the client has learned of a rotation no login uses an
// older version; the old password is refused (negative control: the
// server does check passwords for this role).
func TestSQLConnPostgresPoolAcrossRotations(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startDev(t)
	for _, strategy := range []string{"single-user", "alternating"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			c := s.root(t)
			user, pw0, name := pgRotation(t, c, db, "e2e_sqlc_", "sqlc", strategy)

			cc := newCacheClient(t, s, client.WithPollInterval(0))
			if err := cc.WaitConnected(bg(t)); err != nil {
				t.Fatal(err)
			}
			// known[v] is when the client learned that version v is current.
			var knownMu sync.Mutex
			known := map[int64]time.Time{}
			stopWatch, err := cc.Watch(name, func(e client.Event) {
				if e.Event == "rotated" {
					knownMu.Lock()
					known[e.Version] = time.Now()
					knownMu.Unlock()
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stopWatch()
			var logins loginLog
			// The wait for a rotation between set and finish is 30s, not the
			// default 10s, for a suite that runs beside it on 2 cores.
			conn, err := sqlconn.New(cc, name, "postgres", sqlconn.WithLoginHook(logins.add), sqlconn.WithRotationWait(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			pool := sql.OpenDB(conn)
			defer pool.Close()
			pool.SetMaxOpenConns(20)
			pool.SetMaxIdleConns(20)
			pool.SetConnMaxLifetime(50 * time.Millisecond)
			if err := pool.Ping(); err != nil {
				t.Fatal(err)
			}

			stop := poolLoad(pool, "SELECT current_user")
			passwords := []string{pw0}
			start := time.Now()
			for i := range sqlconnRotations {
				version := int64(i + 2)
				out := c.ok("rotate", name, "--wait")
				if !strings.Contains(out, fmt.Sprintf("version %d is current", version)) {
					stop()
					t.Fatalf("rotation %d: %q", i+1, out)
				}
				_, pw := pgCurrent(c, name)
				passwords = append(passwords, pw)
				waitFor(t, 30*time.Second, fmt.Sprintf("the client to learn of version %d", version), func() bool {
					knownMu.Lock()
					defer knownMu.Unlock()
					return !known[version].IsZero()
				})
				// The next rotation comes once the pool has logged in with
				// this version, as rotations hours apart would: back to
				// back, a single-user rotation could change the password
				// again before a connector that waited for this version
				// has used it (the connector waits for one rotation, not
				// for a series of them).
				waitFor(t, 30*time.Second, fmt.Sprintf("a login with version %d", version), func() bool {
					for _, l := range logins.all() {
						if l.Version == version && l.Err == nil {
							return true
						}
					}
					return false
				})
			}
			// Let the pool renew its connections with the last version.
			last := int64(sqlconnRotations + 1)
			waitFor(t, 30*time.Second, "logins with the last version", func() bool {
				for _, l := range logins.all() {
					if l.Version == last && l.Err == nil {
						return true
					}
				}
				return false
			})
			ok, errs := stop()
			elapsed := time.Since(start)

			all := logins.all()
			var retried, refused, good int
			perVersion := map[int64]int{}
			for _, l := range all {
				if l.Attempt > 1 {
					retried++
				}
				if l.AuthFailure {
					refused++
				}
				if l.Err == nil {
					good++
					perVersion[l.Version]++
				}
				// The load's own end cancels logins in flight: not a failure.
				canceled := l.Err != nil && (errors.Is(l.Err, context.Canceled) || strings.Contains(l.Err.Error(), "operation was canceled"))
				if l.Err != nil && !l.AuthFailure && !canceled {
					t.Errorf("a login failed for another reason than the credential: %v", l.Err)
				}
				// No login starts with a version older than one the
				// client already knew to be current.
				knownMu.Lock()
				for v, at := range known {
					if l.Start.After(at) && l.Version < v {
						t.Errorf("a login at %v used version %d, but version %d was current since %v",
							l.Start.Format(time.StampMicro), l.Version, v, at.Format(time.StampMicro))
					}
				}
				knownMu.Unlock()
			}
			t.Logf("%s: %d rotations in %v, %d queries, %d failed; %d logins (%d worked), %d refused, %d retried; logins per version %v",
				strategy, sqlconnRotations, elapsed.Round(time.Millisecond), ok, len(errs), len(all), good, refused, retried, perVersion)
			if len(errs) > 0 {
				t.Errorf("%d queries failed, want none; first: %v", len(errs), errs[0])
			}
			if ok < 1000 {
				t.Errorf("only %d queries ran", ok)
			}
			// Connections were really renewed across the rotations.
			if len(perVersion) < sqlconnRotations/2 {
				t.Errorf("logins used only %d distinct versions over %d rotations: the pool did not renew its connections", len(perVersion), sqlconnRotations)
			}
			// Bounded: at most two extra logins per Connect, and a
			// retry only follows a refused login.
			if retried > 2*refused {
				t.Errorf("%d retried logins for %d refused ones", retried, refused)
			}
			if strategy == "alternating" && refused > 0 {
				// The previous user keeps its password until the next
				// rotation: a login with a version the client still
				// knew as current is never refused.
				t.Logf("alternating: %d logins refused and retried", refused)
			}
			for _, l := range all {
				if l.Err != nil {
					for _, pw := range passwords {
						if strings.Contains(l.Err.Error(), pw) {
							t.Fatalf("a login error shows a password")
						}
					}
				}
			}
			// Negative controls: passwords rotated away are refused.
			lastUser, lastPw := pgCurrent(c, name)
			mustLogin(t, "current", lastUser, lastPw)
			if strategy == "single-user" {
				mustRefuse(t, "original", user, pw0)
				mustRefuse(t, "previous", user, passwords[len(passwords)-2])
			} else {
				// Version N-2 was the same user as N, with an older password.
				mustRefuse(t, "two versions old", lastUser, passwords[len(passwords)-3])
			}
		})
	}
}

// TestSQLConnMySQL: the same connector against MariaDB. A password changed
// behind the cache's back (as a rotation whose event has not arrived yet)
// is refused with error 1045; the connector refreshes, retries once and
// the query works; across rotations a pool keeps working.
func TestSQLConnMySQL(t *testing.T) {
	t.Parallel()
	root := mrMySQLRoot(t)
	s := startDev(t)
	c := s.root(t)
	user := "sqlc_" + randHex(4)
	pw0 := mrNewPassword()
	cred := mrMySQLUser(t, root, user, pw0, nil)
	name := "sqlc/mysql-" + user
	mrCreateCred(c, name, cred)
	mrSetRotation(c, name, "mysql", map[string]any{"strategy": "single-user"})

	cc := newCacheClient(t, s, client.WithPollInterval(0), client.WithoutEvents())
	var logins loginLog
	conn, err := sqlconn.New(cc, name, "mysql", sqlconn.WithLoginHook(logins.add), sqlconn.WithRotationWait(0))
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(conn)
	defer pool.Close()
	pool.SetMaxIdleConns(0) // every query logs in
	var who string
	if err := pool.QueryRow("SELECT CURRENT_USER()").Scan(&who); err != nil || !strings.HasPrefix(who, user+"@") {
		t.Fatalf("first query: %q, %v", who, err)
	}
	// Without events the cache does not know of the rotation: the old
	// password is refused, the connector refreshes and retries.
	c.ok("rotate", name, "--wait")
	newCred, _ := mrCurrent(c, name)
	mrMySQLMustRefuse(t, "old (negative control)", cred)
	if err := pool.QueryRow("SELECT CURRENT_USER()").Scan(&who); err != nil || !strings.HasPrefix(who, user+"@") {
		t.Fatalf("query after the rotation: %q, %v", who, err)
	}
	all := logins.all()
	if n := len(all); n != 3 || !all[1].AuthFailure || all[1].Version != 1 || all[2].Attempt != 2 || all[2].Version != 2 || all[2].Err != nil {
		t.Fatalf("logins = %+v, want: v1 ok, v1 refused, v2 ok on the retry", all)
	}
	if strings.Contains(all[1].Err.Error(), pw0) || !errors.Is(all[1].Err, sqlconn.ErrAuth) {
		t.Fatalf("refused login error %q: shows the password or is not ErrAuth", all[1].Err)
	}

	// A pool across rotations, with events: no query fails.
	cc2 := newCacheClient(t, s, client.WithPollInterval(0))
	if err := cc2.WaitConnected(bg(t)); err != nil {
		t.Fatal(err)
	}
	conn2, err := sqlconn.New(cc2, name, "mysql")
	if err != nil {
		t.Fatal(err)
	}
	pool2 := sql.OpenDB(conn2)
	defer pool2.Close()
	pool2.SetMaxOpenConns(20)
	pool2.SetConnMaxLifetime(50 * time.Millisecond)
	stop := poolLoad(pool2, "SELECT CURRENT_USER()")
	for range 5 {
		c.ok("rotate", name, "--wait")
	}
	ok, errs := stop()
	if len(errs) > 0 || ok == 0 {
		t.Fatalf("%d queries worked, %d failed; first: %v", ok, len(errs), errs)
	}
	mrMySQLMustRefuse(t, "rotated away", newCred)
}

// sqlconn refuses a value that is not for its driver, with an error that
// names the secret and not the password.
func TestSQLConnBadValue(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("sqlc/bad")
	canary := "Canary-" + randHex(8)
	c.ok("secret", "create", name, "--type", "db-credentials", "--value",
		`{"engine":"mysql","host":"127.0.0.1","port":3306,"username":"u","dbname":"test","password":"`+canary+`"}`)
	cc := newCacheClient(t, s)
	conn, err := sqlconn.New(cc, name, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(conn)
	defer pool.Close()
	err = pool.Ping()
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "engine") || strings.Contains(err.Error(), canary) {
		t.Fatalf("Ping = %v; want an error naming the secret and the engine, without the password", err)
	}
	if _, err := sqlconn.New(cc, name, "sqlite"); err == nil || !strings.Contains(err.Error(), "sqlite") {
		t.Fatalf("New(sqlite) = %v", err)
	}
}
