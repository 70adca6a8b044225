package e2e

// End-to-end rotations of real MariaDB/MySQL accounts and Redis ACL users
// through the built binary: every check of a credential is a real login
// with go-sql-driver/mysql or go-redis over TCP, and every refusal is
// checked to be the server's own authentication error (MariaDB error
// 1045, Redis WRONGPASS), so that a refusal cannot be a network error and
// a Redis login cannot silently land on the password-less default user.
//
// Helpers in this file are prefixed "mr" so that they cannot clash with
// other files of package e2e.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/client"
)

// mrHostileSymbols is a password alphabet for the rotation config that
// holds every character that needs quoting somewhere: SQL quotes and
// backslash, JSON's quote and backslash, HTML-escaped <>&.
const mrHostileSymbols = `-_.~^,:;!#$%&*+=?@'"\<>/`

// mrWantSteps are the steps of a successful run, in order.
var mrWantSteps = []string{"create", "set", "test", "finish", "cleanup"}

// mrCred is the part of a db-credentials value the tests look at.
type mrCred struct {
	Engine   string `json:"engine"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	DBName   string `json:"dbname,omitempty"`
}

func (c mrCred) json() string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		panic(err)
	}
	return strings.TrimRight(buf.String(), "\n")
}

// mrNewPassword is an initial password set by the test (not by rotary).
func mrNewPassword() string { return "Mr-" + randHex(16) + "-x" }

func mrHostPort(env, def string) (string, int) {
	addr := os.Getenv(env)
	if addr == "" {
		addr = def
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(fmt.Sprintf("%s %q: %v", env, addr, err))
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		panic(fmt.Sprintf("%s %q: %v", env, addr, err))
	}
	return h, n
}

// mrCreateCred stores value as a new db-credentials secret (through
// standard input, so the password is not on a command line).
func mrCreateCred(c cli, name string, v mrCred) {
	c.t.Helper()
	c.withStdin([]byte(v.json())).ok("secret", "create", name, "--type", "db-credentials", "--value-stdin")
}

// mrCurrent reads the current value of a db-credentials secret.
func mrCurrent(c cli, name string) (mrCred, int64) {
	c.t.Helper()
	sv := okJSON[client.SecretValue](c, "secret", "get", name)
	var v mrCred
	if err := json.Unmarshal([]byte(sv.Value), &v); err != nil {
		c.t.Fatalf("secret get %s: the value is not db-credentials JSON: %v", name, err)
	}
	if v.Password == "" || v.Username == "" && v.Engine != "redis" {
		c.t.Fatalf("secret get %s: the value has no username or password", name)
	}
	if got := c.ok("secret", "get", name, "--field", "password"); got != v.Password {
		c.t.Fatalf("secret get %s --field password differs from the password field of the value", name)
	}
	return v, sv.Version
}

// mrSetRotation configures a manual-only rotation.
func mrSetRotation(c cli, name, rotator string, cfg map[string]any) {
	c.t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ok("rotation", "set", name, "--rotator", rotator, "--schedule", "none", "--config-json", string(b))
}

// mrRotate runs "rotate NAME --wait [flags]" and checks the new current
// version is the next one and its password is new.
func mrRotate(c cli, name string, before mrCred, beforeVersion int64, flags ...string) (mrCred, int64) {
	c.t.Helper()
	out := c.ok(append([]string{"rotate", name, "--wait"}, flags...)...)
	if !strings.Contains(out, "rotated "+name) {
		c.t.Errorf("rotate %s %v printed %q, want \"rotated %s: ...\"", name, flags, out, name)
	}
	v, ver := mrCurrent(c, name)
	if ver != beforeVersion+1 {
		c.t.Fatalf("after rotate %s %v the current version is %d, want %d", name, flags, ver, beforeVersion+1)
	}
	if v.Password == before.Password {
		c.t.Fatalf("after rotate %s %v the password did not change", name, flags)
	}
	if v.Host != before.Host || v.Port != before.Port || v.Engine != before.Engine || v.DBName != before.DBName {
		c.t.Errorf("rotate %s %v changed fields other than username and password: engine/host/port/dbname %q %q %d %q, want %q %q %d %q",
			name, flags, v.Engine, v.Host, v.Port, v.DBName, before.Engine, before.Host, before.Port, before.DBName)
	}
	if got := c.ok("secret", "get", name, "--stage", "previous", "--field", "password"); got != before.Password {
		c.t.Errorf("after rotate %s %v the previous stage does not hold the password that was current before", name, flags)
	}
	return v, ver
}

// mrCheckHistory checks that the secret's runs are, newest first, the
// given triggers, each succeeded with every step ok and pending versions
// counting down from lastVersion.
func mrCheckHistory(t *testing.T, c cli, name string, lastVersion int64, triggers ...string) {
	t.Helper()
	h := okJSON[client.RunList](c, "rotation", "history", name)
	if len(h.Runs) != len(triggers) {
		t.Fatalf("rotation history %s: %d runs, want %d (%+v)", name, len(h.Runs), len(triggers), h.Runs)
	}
	for i, r := range h.Runs {
		if r.Trigger != triggers[i] || r.State != "succeeded" || r.Error != "" || r.Secret != name {
			t.Errorf("run %d of %s: secret %q trigger %q state %q error %q, want %s succeeded without error",
				i, name, r.Secret, r.Trigger, r.State, r.Error, triggers[i])
		}
		if want := lastVersion - int64(i); r.PendingVersion != want {
			t.Errorf("run %d of %s: pending_version %d, want %d", i, name, r.PendingVersion, want)
		}
		if r.EndedAt == nil || r.EndedAt.Before(r.StartedAt) {
			t.Errorf("run %d of %s: started %v, ended %v", i, name, r.StartedAt, r.EndedAt)
		}
		var steps []string
		for _, s := range r.Steps {
			steps = append(steps, s.Step)
			if s.Result != "ok" || s.Error != "" {
				t.Errorf("run %d of %s: step %s result %q error %q, want ok", i, name, s.Step, s.Result, s.Error)
			}
		}
		if strings.Join(steps, " ") != strings.Join(mrWantSteps, " ") {
			t.Errorf("run %d of %s: steps %v, want %v", i, name, steps, mrWantSteps)
		}
	}
}

// mrForms are the ways a password could appear in text: as is, inside a
// JSON string (with and without HTML escaping) and inside a Go %q.
func mrForms(pw string) []string {
	forms := []string{pw}
	b, _ := json.Marshal(pw)
	forms = append(forms, string(b[1:len(b)-1]))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(pw)
	s := strings.TrimSpace(buf.String())
	forms = append(forms, s[1:len(s)-1])
	q := strconv.Quote(pw)
	forms = append(forms, q[1:len(q)-1])
	return forms
}

// mrSecretPassword is one stored password and where it came from.
type mrSecretPassword struct {
	where string
	pw    string
}

// mrCanary reads the password of every version of every named secret
// (plus extra, labelled passwords) and checks none of them appears in the
// daemon's output, in any secret's rotation history or settings, in the
// audit log or in /metrics.
func mrCanary(t *testing.T, s *server, c cli, names []string, extra ...mrSecretPassword) {
	t.Helper()
	pws := append([]mrSecretPassword(nil), extra...)
	for _, name := range names {
		d := okJSON[client.Secret](c, "secret", "describe", name)
		if len(d.Versions) == 0 {
			t.Fatalf("describe %s: no versions", name)
		}
		for _, v := range d.Versions {
			n := strconv.FormatInt(v.Version, 10)
			pw := c.ok("secret", "get", name, "--version", n, "--field", "password")
			if len(pw) < 12 {
				t.Fatalf("secret get %s --version %s --field password: %d characters, want a password", name, n, len(pw))
			}
			pws = append(pws, mrSecretPassword{where: name + " version " + n, pw: pw})
		}
	}
	sources := map[string]string{"audit list -o json": c.ok("audit", "list", "-o", "json")}
	for _, name := range names {
		sources["rotation history "+name+" -o json"] = c.ok("rotation", "history", name, "-o", "json")
		// Secrets without a rotation (the admin secrets) have no settings
		// to show.
		if out, _, code := c.run("rotation", "show", name, "-o", "json"); code == 0 {
			sources["rotation show "+name+" -o json"] = out
		}
		sources["secret describe "+name+" -o json"] = c.ok("secret", "describe", name, "-o", "json")
	}
	sources["status -o json"] = c.ok("status", "-o", "json")
	resp, err := http.Get(s.addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("GET /metrics: %d, %d bytes", resp.StatusCode, len(body))
	}
	sources["/metrics"] = string(body)
	// Read the logs last: the reads above are logged too.
	logs := s.logs.String()
	sources["daemon output"] = logs
	for _, name := range names {
		if !strings.Contains(logs, name) && !strings.Contains(sources["audit list -o json"], name) {
			t.Errorf("neither the daemon output nor the audit log mentions %s: is the canary looking at the right text?", name)
		}
	}
	for where, text := range sources {
		for _, p := range pws {
			for _, f := range mrForms(p.pw) {
				if strings.Contains(text, f) {
					t.Errorf("%s contains the password of %s", where, p.where)
					break
				}
			}
		}
	}
}

// ---------------------------------------------------------------- MySQL

func mrMySQLAddr() (string, int) { return mrHostPort("ROTARY_TEST_MYSQL_ADDR", "127.0.0.1:3306") }

func mrMySQLConfig(user, pw string) *driver.Config {
	h, p := mrMySQLAddr()
	mc := driver.NewConfig()
	mc.User, mc.Passwd, mc.Net = user, pw, "tcp"
	mc.Addr = net.JoinHostPort(h, strconv.Itoa(p))
	mc.Timeout = 5 * time.Second
	mc.Logger = &driver.NopLogger{} // refused logins and killed sessions are expected
	return mc
}

// mrMySQLRoot connects as the server's administrator (root, no password,
// unless ROTARY_TEST_MYSQL_USER/PASSWORD say otherwise) and waits up to
// 30 s for an answer. It fails, never skips, when there is none.
func mrMySQLRoot(t *testing.T) *sql.DB {
	t.Helper()
	user := os.Getenv("ROTARY_TEST_MYSQL_USER")
	if user == "" {
		user = "root"
	}
	mc := mrMySQLConfig(user, os.Getenv("ROTARY_TEST_MYSQL_PASSWORD"))
	mc.InterpolateParams = true // the driver quotes the ? in account names
	connector, err := driver.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MariaDB/MySQL at %s does not answer (run scripts/services.sh or set ROTARY_TEST_MYSQL_ADDR): %v", mc.Addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := db.Exec("CREATE DATABASE IF NOT EXISTS test"); err != nil {
		t.Fatalf("create database test: %v", err)
	}
	return db
}

// mrMySQLUser creates user@'%' with password pw, SELECT on test.* and
// grants (each with one ? for the user), and drops it and alsoDrop when
// the test ends.
func mrMySQLUser(t *testing.T, root *sql.DB, user, pw string, grants []string, alsoDrop ...string) mrCred {
	t.Helper()
	t.Cleanup(func() {
		for _, u := range append([]string{user}, alsoDrop...) {
			if _, err := root.Exec("DROP USER IF EXISTS ?@'%'", u); err != nil {
				t.Errorf("drop user %q: %v", u, err)
			}
		}
	})
	if _, err := root.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", user, pw); err != nil {
		t.Fatalf("create user %q: %v", user, err)
	}
	for _, g := range append([]string{"GRANT SELECT ON test.* TO ?@'%'"}, grants...) {
		if _, err := root.Exec(g, user); err != nil {
			t.Fatalf("%s for %q: %v", g, user, err)
		}
	}
	h, p := mrMySQLAddr()
	return mrCred{Engine: "mysql", Host: h, Port: p, Username: user, Password: pw, DBName: "test"}
}

// mrMySQLLogin logs in over TCP and returns the user part of
// CURRENT_USER(), the account the server really matched.
func mrMySQLLogin(user, pw string) (string, error) {
	connector, err := driver.NewConnector(mrMySQLConfig(user, pw))
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cur string
	if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err != nil {
		return "", err
	}
	i := strings.LastIndex(cur, "@")
	if i < 0 {
		return "", fmt.Errorf("CURRENT_USER() = %q: no @", cur)
	}
	return cur[:i], nil
}

func mrMySQLMustLogin(t *testing.T, what string, v mrCred, wantUser string) {
	t.Helper()
	got, err := mrMySQLLogin(v.Username, v.Password)
	if err != nil {
		t.Fatalf("%s: login as %q refused: %v", what, v.Username, err)
	}
	if got != wantUser {
		t.Fatalf("%s: CURRENT_USER() is %q, want %q", what, got, wantUser)
	}
}

// mrMySQLMustRefuse checks the server refuses the login with "access
// denied" (1045), not some other error.
func mrMySQLMustRefuse(t *testing.T, what string, v mrCred) {
	t.Helper()
	got, err := mrMySQLLogin(v.Username, v.Password)
	if err == nil {
		t.Errorf("%s: the password of %q still logs in (as %q)", what, v.Username, got)
		return
	}
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 1045 {
		t.Errorf("%s: login as %q failed with %v, want access denied (1045)", what, v.Username, err)
	}
}

// mrSQLSession is one open session, held on a single connection.
type mrSQLSession struct {
	db   *sql.DB
	conn *sql.Conn
	dead bool
}

func mrMySQLSession(t *testing.T, v mrCred, wantUser string) *mrSQLSession {
	t.Helper()
	connector, err := driver.NewConnector(mrMySQLConfig(v.Username, v.Password))
	if err != nil {
		t.Fatal(err)
	}
	s := &mrSQLSession{db: sql.OpenDB(connector)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.conn, err = s.db.Conn(ctx)
	if err != nil {
		s.db.Close()
		t.Fatalf("open a session as %q: %v", v.Username, err)
	}
	t.Cleanup(func() { s.conn.Close(); s.db.Close() })
	var cur string
	if err := s.conn.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err != nil || !strings.HasPrefix(cur, wantUser+"@") {
		t.Fatalf("session as %q: CURRENT_USER() = %q, %v; want %s@…", v.Username, cur, err, wantUser)
	}
	return s
}

// alive runs a query on the session's own connection; once it failed it
// stays dead.
func (s *mrSQLSession) alive() bool {
	if s.dead {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := s.conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		s.dead = true
	}
	return !s.dead
}

// mrMySQLAdminGrants are the least privileges rotators/mysql/doc.go names
// for each strategy's admin on MariaDB: CREATE USER (ALTER USER), SELECT
// on mysql.user (find the account), PROCESS and CONNECTION ADMIN (see and
// end another user's sessions in an emergency); alternating also needs
// SELECT ON mysql.* (SHOW GRANTS FOR another user) and the copied
// privileges WITH GRANT OPTION.
var mrMySQLAdminGrants = map[string][]string{
	"admin": {
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO ?@'%'",
		"GRANT SELECT ON mysql.user TO ?@'%'",
	},
	"alternating": {
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO ?@'%'",
		"GRANT SELECT ON mysql.* TO ?@'%'",
		"GRANT SELECT ON test.* TO ?@'%' WITH GRANT OPTION",
	},
}

// TestMRMySQLRotation rotates a real MariaDB account with each strategy:
// a manual rotation, an emergency rotation that ends the old credential's
// session, and an emergency rotation with --keep-sessions.
func TestMRMySQLRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		strategy string
		user     string // base name; a random suffix is added
		symbols  bool   // a password alphabet full of quoting characters
		store    string
	}{
		{strategy: "single-user", user: "mr_su_", store: "sqlite"},
		{strategy: "admin", user: "mr_o'q`b\\s ;--%_ü_", symbols: true, store: "postgres"},
		{strategy: "alternating", user: `mr_alt"q\_`, store: "sqlite"},
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			t.Parallel()
			var s *server
			if tc.store == "postgres" {
				s = startPostgres(t)
			} else {
				s = startDev(t)
			}
			c := s.root(t)
			root := mrMySQLRoot(t)
			user := tc.user + randHex(4)
			alt := user + "_b"
			v1 := mrMySQLUser(t, root, user, mrNewPassword(), nil, alt)
			name := uniq("mr-mysql") + "/" + tc.strategy
			mrCreateCred(c, name, v1)
			mrMySQLMustLogin(t, "the initial value", v1, user)

			cfg := map[string]any{"strategy": tc.strategy}
			names := []string{name}
			if grants := mrMySQLAdminGrants[tc.strategy]; grants != nil {
				adm := mrMySQLUser(t, root, "mr_adm_"+randHex(4), mrNewPassword(), grants)
				admName := name + "-admin"
				mrCreateCred(c, admName, adm)
				cfg["admin_secret"] = admName
				names = append(names, admName)
			}
			pwLen := 32
			if tc.symbols {
				pwLen = 40
				cfg["password"] = map[string]any{"length": pwLen, "symbols": mrHostileSymbols}
			}
			mrSetRotation(c, name, "mysql", cfg)

			// 1. Manual rotation.
			v2, ver := mrRotate(c, name, v1, 1)
			if len(v2.Password) != pwLen {
				t.Errorf("the generated password has %d characters, want %d", len(v2.Password), pwLen)
			}
			if tc.strategy == "alternating" {
				if v2.Username != alt {
					t.Fatalf("after an alternating rotation the current value names %q, want the other user %q", v2.Username, alt)
				}
				mrMySQLMustLogin(t, "new value", v2, alt)
				mrMySQLMustLogin(t, "previous value (alternating keeps it)", v1, user)
			} else {
				if v2.Username != user {
					t.Fatalf("the current value names %q, want %q", v2.Username, user)
				}
				mrMySQLMustLogin(t, "new value", v2, user)
				mrMySQLMustRefuse(t, "old value after a manual rotation", v1)
			}

			// 2. Emergency: every old credential refused, the session of
			// the compromised (current) credential ended.
			sess := mrMySQLSession(t, v2, v2.Username)
			if !sess.alive() {
				t.Fatal("the session opened before the emergency does not answer")
			}
			v3, ver := mrRotate(c, name, v2, ver, "--emergency")
			if v3.Username != user {
				t.Fatalf("after the emergency rotation the value names %q, want %q", v3.Username, user)
			}
			mrMySQLMustLogin(t, "value after the emergency", v3, user)
			mrMySQLMustRefuse(t, "first value after the emergency", v1)
			mrMySQLMustRefuse(t, "value current before the emergency", v2)
			waitFor(t, 15*time.Second, "the emergency rotation to end the old credential's session", func() bool { return !sess.alive() })

			// 3. Emergency with --keep-sessions: credentials refused, the
			// open session survives.
			kept := mrMySQLSession(t, v3, user)
			v4, ver := mrRotate(c, name, v3, ver, "--emergency", "--keep-sessions")
			wantUser := user
			if tc.strategy == "alternating" {
				wantUser = alt
			}
			if v4.Username != wantUser {
				t.Fatalf("after the second emergency rotation the value names %q, want %q", v4.Username, wantUser)
			}
			mrMySQLMustLogin(t, "value after the --keep-sessions emergency", v4, wantUser)
			for i, old := range []mrCred{v1, v2, v3} {
				mrMySQLMustRefuse(t, fmt.Sprintf("version %d after the --keep-sessions emergency", i+1), old)
			}
			for i := 0; i < 3; i++ {
				if !kept.alive() {
					t.Fatal("--keep-sessions: the open session was ended")
				}
			}

			mrCheckHistory(t, c, name, ver, "emergency", "emergency", "manual")
			mrCanary(t, s, c, names)
		})
	}
}

// ---------------------------------------------------------------- Redis

func mrRedisAddr() string {
	h, p := mrHostPort("ROTARY_TEST_REDIS_ADDR", "127.0.0.1:6379")
	return net.JoinHostPort(h, strconv.Itoa(p))
}

func mrRedisClient(user, pw string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr: mrRedisAddr(), Username: user, Password: pw,
		Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1, DialTimeout: 5 * time.Second,
	})
}

// mrRedisRoot is a client of the default user (no password on the test
// machine). It waits up to 30 s and fails, never skips, when Redis is down.
func mrRedisRoot(t *testing.T) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: mrRedisAddr(), Protocol: 2, DisableIdentity: true, PoolSize: 4})
	t.Cleanup(func() { rdb.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return rdb
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis at %s does not answer (run scripts/services.sh or set ROTARY_TEST_REDIS_ADDR): %v", mrRedisAddr(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mrRedisUser creates an ACL user with password pw (sent as its SHA-256)
// and rules, and deletes it when the test ends.
func mrRedisUser(t *testing.T, rdb *goredis.Client, name, pw string, rules []string) mrCred {
	t.Helper()
	sum := sha256.Sum256([]byte(pw))
	args := append([]string{"reset", "on", "#" + hex.EncodeToString(sum[:])}, rules...)
	if err := rdb.ACLSetUser(context.Background(), name, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %q: %v", name, err)
	}
	t.Cleanup(func() {
		if err := rdb.ACLDelUser(context.Background(), name).Err(); err != nil {
			t.Errorf("ACL DELUSER %q: %v", name, err)
		}
	})
	h, p := mrHostPort("ROTARY_TEST_REDIS_ADDR", "127.0.0.1:6379")
	return mrCred{Engine: "redis", Host: h, Port: p, Username: name, Password: pw}
}

// mrRedisLogin authenticates (HELLO 2 AUTH user pass) and returns ACL
// WHOAMI; go-redis fails the connection when AUTH is refused.
func mrRedisLogin(v mrCred) (string, error) {
	rdb := mrRedisClient(v.Username, v.Password)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rdb.ACLWhoAmI(ctx).Result()
}

func mrRedisMustLogin(t *testing.T, what string, v mrCred) {
	t.Helper()
	who, err := mrRedisLogin(v)
	if err != nil {
		t.Fatalf("%s: login as %q refused: %v", what, v.Username, err)
	}
	if who != v.Username {
		t.Fatalf("%s: ACL WHOAMI = %q, want %q", what, who, v.Username)
	}
}

// mrRedisMustRefuse checks AUTH itself is refused (WRONGPASS): a client
// that carried on as "default" would answer WHOAMI instead.
func mrRedisMustRefuse(t *testing.T, what string, v mrCred) {
	t.Helper()
	who, err := mrRedisLogin(v)
	if err == nil {
		t.Errorf("%s: the password of %q still authenticates (ACL WHOAMI = %q)", what, v.Username, who)
		return
	}
	if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("%s: login as %q failed with %v, want a WRONGPASS authentication error", what, v.Username, err)
	}
}

// mrRedisSession is one authenticated connection held open.
type mrRedisSession struct {
	rdb  *goredis.Client
	conn *goredis.Conn
	dead bool
}

func mrRedisOpen(t *testing.T, v mrCred) *mrRedisSession {
	t.Helper()
	s := &mrRedisSession{rdb: mrRedisClient(v.Username, v.Password)}
	s.conn = s.rdb.Conn()
	t.Cleanup(func() { s.conn.Close(); s.rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if who, err := s.conn.ACLWhoAmI(ctx).Result(); err != nil || who != v.Username {
		t.Fatalf("session as %q: ACL WHOAMI = %q, %v", v.Username, who, err)
	}
	return s
}

func (s *mrRedisSession) alive() bool {
	if s.dead {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.conn.Ping(ctx).Err() != nil {
		s.dead = true
	}
	return !s.dead
}

// Rules of the rotated users: log in, use their keys, ask who they are;
// single-user also needs to change its own passwords and end sessions.
var (
	mrRedisAppRules   = []string{"~mr:*", "resetchannels", "-@all", "+@read", "+@write", "+ping", "+acl|whoami"}
	mrRedisSelfRules  = []string{"+acl|setuser", "+acl|save", "+client|kill"}
	mrRedisAdminRules = []string{"resetkeys", "resetchannels", "-@all", "+acl|getuser", "+acl|setuser", "+acl|save", "+client|kill"}
)

// TestMRRedisRotation rotates a real Redis ACL user with the strategies
// the redis rotator supports (admin, single-user).
func TestMRRedisRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		strategy string
		user     string
		symbols  bool
		store    string
	}{
		{strategy: "admin", user: `mr'q"\;--%_ü~*>x_`, symbols: true, store: "postgres"},
		{strategy: "single-user", user: "mr_su_", store: "sqlite"},
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			t.Parallel()
			var s *server
			if tc.store == "postgres" {
				s = startPostgres(t)
			} else {
				s = startDev(t)
			}
			c := s.root(t)
			rdb := mrRedisRoot(t)
			rules := mrRedisAppRules
			if tc.strategy == "single-user" {
				rules = append(append([]string(nil), mrRedisAppRules...), mrRedisSelfRules...)
			}
			v1 := mrRedisUser(t, rdb, tc.user+randHex(4), mrNewPassword(), rules)
			name := uniq("mr-redis") + "/" + tc.strategy
			mrCreateCred(c, name, v1)
			mrRedisMustLogin(t, "the initial value", v1)
			// The negative control: a wrong password is refused by AUTH.
			mrRedisMustRefuse(t, "a wrong password", mrCred{Username: v1.Username, Password: mrNewPassword()})

			cfg := map[string]any{"strategy": tc.strategy}
			names := []string{name}
			if tc.strategy == "admin" {
				adm := mrRedisUser(t, rdb, "mr_adm_"+randHex(4), mrNewPassword(), mrRedisAdminRules)
				admName := name + "-admin"
				mrCreateCred(c, admName, adm)
				cfg["admin_secret"] = admName
				names = append(names, admName)
			}
			pwLen := 32
			if tc.symbols {
				pwLen = 40
				cfg["password"] = map[string]any{"length": pwLen, "symbols": mrHostileSymbols}
			}
			mrSetRotation(c, name, "redis", cfg)

			// 1. Manual rotation: the old password is removed in cleanup.
			v2, ver := mrRotate(c, name, v1, 1)
			if len(v2.Password) != pwLen {
				t.Errorf("the generated password has %d characters, want %d", len(v2.Password), pwLen)
			}
			if v2.Username != v1.Username {
				t.Fatalf("the current value names %q, want %q", v2.Username, v1.Username)
			}
			mrRedisMustLogin(t, "new value", v2)
			mrRedisMustRefuse(t, "old value after a manual rotation", v1)

			// 2. Emergency: old refused, the open session ended.
			sess := mrRedisOpen(t, v2)
			v3, ver := mrRotate(c, name, v2, ver, "--emergency")
			mrRedisMustLogin(t, "value after the emergency", v3)
			mrRedisMustRefuse(t, "first value after the emergency", v1)
			mrRedisMustRefuse(t, "value current before the emergency", v2)
			waitFor(t, 15*time.Second, "the emergency rotation to end the old credential's session", func() bool { return !sess.alive() })

			// 3. Emergency with --keep-sessions.
			kept := mrRedisOpen(t, v3)
			v4, ver := mrRotate(c, name, v3, ver, "--emergency", "--keep-sessions")
			mrRedisMustLogin(t, "value after the --keep-sessions emergency", v4)
			for i, old := range []mrCred{v1, v2, v3} {
				mrRedisMustRefuse(t, fmt.Sprintf("version %d after the --keep-sessions emergency", i+1), old)
			}
			for i := 0; i < 3; i++ {
				if !kept.alive() {
					t.Fatal("--keep-sessions: the open session was ended")
				}
			}

			mrCheckHistory(t, c, name, ver, "emergency", "emergency", "manual")
			mrCanary(t, s, c, names)
		})
	}
}

// ------------------------------------------------------------- failures

// TestMRRotationFailure points single-user rotations at accounts whose
// stored password is wrong: the rotation fails cleanly, says why without
// a password, and leaves the stored value and the account as they were.
func TestMRRotationFailure(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		root := mrMySQLRoot(t)
		rdb := mrRedisRoot(t)

		mysqlReal := mrMySQLUser(t, root, "mr_fail_"+randHex(4), mrNewPassword(), nil)
		redisReal := mrRedisUser(t, rdb, "mr_fail_"+randHex(4), mrNewPassword(), append(append([]string(nil), mrRedisAppRules...), mrRedisSelfRules...))
		var names []string
		var extra []mrSecretPassword
		for _, tc := range []struct {
			rotator string
			real    mrCred
			login   func(*testing.T, string, mrCred)
			refuse  func(*testing.T, string, mrCred)
		}{
			{"mysql", mysqlReal, func(t *testing.T, what string, v mrCred) { mrMySQLMustLogin(t, what, v, v.Username) }, mrMySQLMustRefuse},
			{"redis", redisReal, mrRedisMustLogin, mrRedisMustRefuse},
		} {
			wrong := tc.real
			wrong.Password = mrNewPassword()
			tc.refuse(t, tc.rotator+": the wrong password (negative control)", wrong)
			name := uniq("mr-fail") + "/" + tc.rotator
			names = append(names, name)
			extra = append(extra, mrSecretPassword{where: tc.rotator + " account's real password", pw: tc.real.Password})
			mrCreateCred(c, name, wrong)
			stored := c.ok("secret", "get", name)
			mrSetRotation(c, name, tc.rotator, map[string]any{"strategy": "single-user"})

			errOut := c.fail(exitFailure, []string{"rotation failed"}, "rotate", name, "--wait")
			pws := []string{wrong.Password, tc.real.Password}
			if out, _, code := c.run("secret", "get", name, "--stage", "pending", "--field", "password"); code == 0 && out != "" {
				pws = append(pws, out) // the stored pending value, if the failed run kept it
			}
			show := okJSON[client.RotationShow](c, "rotation", "show", name)
			if show.LastError == "" {
				t.Errorf("%s: rotation show has no last_error after a failed rotation", tc.rotator)
			}
			for _, pw := range pws {
				for _, f := range mrForms(pw) {
					if strings.Contains(errOut, f) {
						t.Errorf("%s: the rotate error contains a password", tc.rotator)
					}
					if strings.Contains(show.LastError, f) {
						t.Errorf("%s: last_error contains a password", tc.rotator)
					}
				}
			}
			t.Logf("%s: rotate said %q; last_error %q", tc.rotator, strings.TrimSpace(errOut), show.LastError)
			if got := c.ok("secret", "get", name); got != stored {
				t.Errorf("%s: the failed rotation changed the current value", tc.rotator)
			}
			if sv := okJSON[client.SecretValue](c, "secret", "get", name); sv.Version != 1 {
				t.Errorf("%s: current version is %d after a failed rotation, want 1", tc.rotator, sv.Version)
			}
			h := okJSON[client.RunList](c, "rotation", "history", name)
			if len(h.Runs) == 0 || h.Runs[0].State == "succeeded" {
				t.Errorf("%s: rotation history after the failure: %+v, want a run that did not succeed", tc.rotator, h.Runs)
			}
			// The account is untouched: its real password still logs in,
			// the stored wrong one is still refused.
			tc.login(t, tc.rotator+": the real password after the failed rotation", tc.real)
			tc.refuse(t, tc.rotator+": the stored wrong password after the failed rotation", wrong)
		}
		mrCanary(t, s, c, names, extra...)
	})
}
