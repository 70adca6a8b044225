package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// The test server: ROTARY_TEST_MYSQL_ADDR (default the machine's MariaDB
// at 127.0.0.1:3306), as ROTARY_TEST_MYSQL_USER (default root) with
// ROTARY_TEST_MYSQL_PASSWORD (default none).
func serverAddr() (host string, port int) {
	addr := os.Getenv("ROTARY_TEST_MYSQL_ADDR")
	if addr == "" {
		addr = "127.0.0.1:3306"
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 3306
	}
	port, _ = strconv.Atoi(p)
	return h, port
}

func rootConfig() *driver.Config {
	h, p := serverAddr()
	mc := driver.NewConfig()
	mc.User = os.Getenv("ROTARY_TEST_MYSQL_USER")
	if mc.User == "" {
		mc.User = "root"
	}
	mc.Passwd = os.Getenv("ROTARY_TEST_MYSQL_PASSWORD")
	mc.Net = "tcp"
	mc.Addr = net.JoinHostPort(h, strconv.Itoa(p))
	mc.Timeout = 5 * time.Second
	// The harness quotes with the driver's own client-side interpolation,
	// independently of quoteString, so the two check each other.
	mc.InterpolateParams = true
	return mc
}

// env is the test bundle: a superuser connection and a dedicated admin.
type env struct {
	root     *sql.DB
	admin    rotators.Value
	adminUsr string
}

// waitRoot opens the superuser connection and waits up to 30 s for the
// server to answer. It fails, never skips, when it does not.
func waitRoot(t testing.TB) *sql.DB {
	t.Helper()
	connector, err := driver.NewConnector(rootConfig())
	if err != nil {
		t.Fatalf("mysql config: %v", err)
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
			t.Fatalf("MariaDB/MySQL at %s does not answer (run scripts/services.sh): %v", rootConfig().Addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := db.Exec("CREATE DATABASE IF NOT EXISTS test"); err != nil {
		t.Fatalf("create database test: %v", err)
	}
	return db
}

// adminGrants are the least privileges the whole suite needs on MariaDB
// 10.11: CREATE USER (ALTER/CREATE USER), SELECT ON mysql.* (mysql.user
// look-ups and SHOW GRANTS FOR another user), PROCESS and CONNECTION ADMIN
// (see and kill other users' sessions), and GRANT OPTION on what the test
// users hold, to copy it to the alternate user.
var adminGrants = []string{
	"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO ?@'%'",
	"GRANT SELECT ON mysql.* TO ?@'%'",
	"GRANT SELECT ON test.* TO ?@'%' WITH GRANT OPTION",
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{root: waitRoot(t)}
	e.adminUsr = testenv.Unique("rotary_adm_")
	e.admin = e.createUser(t, e.adminUsr, adminGrants)
	return e
}

func (e *env) value(t testing.TB, user string, password sensitive.Bytes) rotators.Value {
	t.Helper()
	h, p := serverAddr()
	b, err := json.Marshal(map[string]any{
		"engine": "mysql", "host": h, "port": p, "username": user,
		"password": string(password.Reveal()), "dbname": "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return rotators.Value(b)
}

// createUser creates user@'%' with a random password, SELECT on the test
// database and the grants (each with one ? for the user), and drops it and
// alsoDrop when the test ends.
func (e *env) createUser(t testing.TB, user string, grants []string, alsoDrop ...string) rotators.Value {
	t.Helper()
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, u := range append([]string{user}, alsoDrop...) {
			if _, err := e.root.Exec("DROP USER IF EXISTS ?@'%'", u); err != nil {
				t.Logf("drop user %q: %v", u, err)
			}
		}
	})
	if _, err := e.root.Exec("CREATE USER ?@'%' IDENTIFIED BY PASSWORD ?", user, nativeHash(pw.Reveal())); err != nil {
		t.Fatalf("create user %q: %v", user, err)
	}
	for _, g := range append([]string{"GRANT SELECT ON test.* TO ?@'%'"}, grants...) {
		if _, err := e.root.Exec(g, user); err != nil {
			t.Fatalf("%s for %q: %v", g, user, err)
		}
	}
	return e.value(t, user, pw)
}

// login connects with v over TCP with go-sql-driver and returns the user
// part of CURRENT_USER(): the account the server really matched.
func login(ctx context.Context, v rotators.Value) (string, error) {
	c, err := rotators.ParseDBCredentials(v)
	if err != nil {
		return "", err
	}
	mc := driver.NewConfig()
	mc.User, mc.Passwd, mc.Net = c.Username, c.Password, "tcp"
	mc.Addr = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	mc.DBName = c.DBName
	mc.Timeout = 5 * time.Second
	connector, err := driver.NewConnector(mc)
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	var cur string
	if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err != nil {
		return "", err
	}
	a, err := parseAccount(cur)
	return a.User, err
}

func (e *env) harness() rotatortest.Harness {
	return rotatortest.Harness{
		Rotator:    New(),
		SecretType: SecretType,
		NewAccount: func(t *testing.T, username string, alsoDrop ...string) rotators.Value {
			return e.createUser(t, username, nil, alsoDrop...)
		},
		Admin: func(*testing.T) rotators.Value { return e.admin },
		Login: login,
		OpenSession: func(t *testing.T, v rotators.Value) func() bool {
			c, err := rotators.ParseDBCredentials(v)
			if err != nil {
				t.Fatal(err)
			}
			mc := driver.NewConfig()
			mc.User, mc.Passwd, mc.Net = c.Username, c.Password, "tcp"
			mc.Addr = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
			mc.Timeout = 5 * time.Second
			mc.Logger = &driver.NopLogger{} // a killed session is expected
			connector, err := driver.NewConnector(mc)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(connector)
			conn, err := db.Conn(context.Background())
			if err != nil {
				db.Close()
				t.Fatalf("open session: %v", sensitive.Sanitize(err, sensitive.Bytes(c.Password)))
			}
			t.Cleanup(func() { conn.Close(); db.Close() })
			return func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				return conn.PingContext(ctx) == nil
			}
		},
		Strategies: []string{rotators.StrategySingleUser, rotators.StrategyAdmin, rotators.StrategyAlternating},
		Config: func(strategy, adminSecret, altUser string) json.RawMessage {
			b, _ := json.Marshal(map[string]string{
				"strategy": strategy, "admin_secret": adminSecret, "alternate_username": altUser,
			})
			return b
		},
		OldKeepsWorking:    func(strategy string) bool { return strategy == rotators.StrategyAlternating },
		HostileTestQueries: e.hostileTestQueries,
	}
}

// hostileTestQueries: a table the login may drop, delete from and create
// next to, and statements that would (DDL commits implicitly, even in a
// read-only transaction, so ValidateConfig must refuse it up front).
func (e *env) hostileTestQueries(t *testing.T, login rotators.Value) ([]rotatortest.HostileQuery, func() error) {
	t.Helper()
	c, _ := rotators.ParseDBCredentials(login)
	table := testenv.Unique("rt_tq_")
	created := table + "_new"
	qt, qc := "test."+quoteIdent(table), "test."+quoteIdent(created)
	for _, q := range []string{
		"CREATE TABLE " + qt + " (a int)",
		"INSERT INTO " + qt + " VALUES (1)",
		"GRANT ALL ON " + qt + " TO " + quoteAccount(c.Username),
		"GRANT ALL ON " + qc + " TO " + quoteAccount(c.Username),
	} {
		if _, err := e.root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A function that deletes: SELECT f() reads like a query, so only the
	// read-only transaction on the server stops it.
	fn := "test." + quoteIdent(table+"_fn")
	for _, q := range []string{
		"CREATE FUNCTION " + fn + "() RETURNS INT MODIFIES SQL DATA SQL SECURITY INVOKER BEGIN DELETE FROM " + qt + "; RETURN 1; END",
		"GRANT EXECUTE ON FUNCTION " + fn + " TO " + quoteAccount(c.Username),
	} {
		if _, err := e.root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = e.root.Exec("DROP TABLE IF EXISTS " + qt + ", " + qc)
		_, _ = e.root.Exec("DROP FUNCTION IF EXISTS " + fn)
	})
	// Negative control: the login really may delete through the function
	// (in a read-write transaction rolled back here).
	mc := driver.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr, mc.DBName = c.Username, c.Password, "tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), "test"
	connector, err := driver.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	udb := sql.OpenDB(connector)
	defer udb.Close()
	tx, err := udb.Begin()
	if err != nil {
		t.Fatalf("begin as %q: %v", c.Username, sensitive.Sanitize(err, sensitive.Bytes(c.Password)))
	}
	if _, err := tx.Exec("SELECT " + fn + "()"); err != nil {
		t.Fatalf("the login cannot run the deleting function even read-write (%v); the test proves nothing", err)
	}
	_ = tx.Rollback()
	return []rotatortest.HostileQuery{
			{Query: "SELECT " + fn + "()", ServerOnly: true},
			{Query: "DROP TABLE " + qt},
			{Query: "SELECT 1; DROP TABLE " + qt},
			{Query: "SELECT 1;DELETE FROM " + qt},
			{Query: "CREATE TABLE " + qc + " (a int)"},
			{Query: `SELECT 'x\'; DROP TABLE ` + qt + `; -- '`},
			{Query: "DELETE FROM " + qt},
			{Query: "SELECT 1 INTO OUTFILE '/tmp/" + table + "'"},
		}, func() error {
			var n int
			if err := e.root.QueryRow("SELECT count(*) FROM " + qt).Scan(&n); err != nil {
				return fmt.Errorf("the table is gone: %w", err)
			}
			if n != 1 {
				return fmt.Errorf("the table has %d rows, want 1", n)
			}
			var exists int
			if err := e.root.QueryRow("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME = ?", created).Scan(&exists); err != nil || exists != 0 {
				return fmt.Errorf("table %s was created (%v)", qc, err)
			}
			return nil
		}
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func quoteAccount(user string) string { return "'" + strings.ReplaceAll(user, "'", "''") + "'@'%'" }

func TestConformance(t *testing.T) {
	e := newEnv(t)
	h := e.harness()
	t.Cleanup(func() { h.Rotator.(*Rotator).Close() })
	rotatortest.Run(t, h)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// rotate runs Create, Set, Test and Finish and returns the new value.
func rotate(t *testing.T, cfg json.RawMessage, cur, prev, admin rotators.Value, emergency bool) (rotators.Value, error) {
	t.Helper()
	r := New()
	defer r.Close()
	sec := rotators.Secret{Name: "t", Type: SecretType}
	resp, err := r.Create(ctx(t), rotators.CreateRequest{Secret: sec, Config: cfg, Current: cur, Previous: prev, Emergency: emergency})
	if err != nil {
		return nil, err
	}
	if err := r.Set(ctx(t), rotators.SetRequest{Secret: sec, Config: cfg, Current: cur, Pending: resp.Value, Admin: admin, Emergency: emergency}); err != nil {
		return resp.Value, err
	}
	if err := r.Test(ctx(t), rotators.TestRequest{Secret: sec, Config: cfg, Value: resp.Value}); err != nil {
		return resp.Value, err
	}
	return resp.Value, r.Finish(ctx(t), rotators.FinishRequest{Secret: sec, Config: cfg, Current: resp.Value, Previous: cur, Admin: admin, Emergency: emergency})
}

func grantsOf(t *testing.T, db *sql.DB, user string) []string {
	t.Helper()
	rows, err := db.Query("SHOW GRANTS FOR ?@'%'", user)
	if err != nil {
		t.Fatalf("SHOW GRANTS FOR %q: %v", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.ReplaceAll(l, "`"+strings.ReplaceAll(user, "`", "``")+"`", "U"))
	}
	return out
}

// The alternate user gets the first user's grants and account options.
func TestAlternatingCopiesGrants(t *testing.T) {
	e := newEnv(t)
	for _, base := range []string{"rt_grants_", "o'q`b\\s ;--%_ü_"} {
		t.Run(base, func(t *testing.T) {
			a := testenv.Unique(base)
			b := a + "_b"
			cur := e.createUser(t, a, []string{
				"ALTER USER ?@'%' WITH MAX_QUERIES_PER_HOUR 1000",
			}, b)
			cfg := json.RawMessage(`{"strategy":"alternating","admin_secret":"adm"}`)
			next, err := rotate(t, cfg, cur, nil, e.admin, false)
			if err != nil {
				t.Fatalf("rotate: %v", err)
			}
			if u, err := login(ctx(t), next); err != nil || u != b {
				t.Fatalf("login as the new user = %q, %v; want %q", u, err, b)
			}
			ga, gb := grantsOf(t, e.root, a), grantsOf(t, e.root, b)
			strip := func(ls []string) string {
				var s []string
				for _, l := range ls {
					if i := strings.Index(l, " IDENTIFIED BY PASSWORD "); i >= 0 {
						j := strings.Index(l[i+len(" IDENTIFIED BY PASSWORD '"):], "'")
						l = l[:i] + l[i+len(" IDENTIFIED BY PASSWORD '")+j+1:]
					}
					s = append(s, l)
				}
				return strings.Join(s, "\n")
			}
			if strip(ga) != strip(gb) {
				t.Errorf("grants differ:\nfirst:\n%s\nsecond:\n%s", strip(ga), strip(gb))
			}
			if !strings.Contains(strip(gb), "MAX_QUERIES_PER_HOUR 1000") || !strings.Contains(strip(gb), "GRANT SELECT ON `test`.* TO U@`%`") {
				t.Errorf("the second user lacks the copied grants:\n%s", strip(gb))
			}
		})
	}
}

// A name with several accounts is refused until account_host picks one.
func TestAmbiguousAccount(t *testing.T) {
	e := newEnv(t)
	user := testenv.Unique("rt_amb_")
	cur := e.createUser(t, user, nil)
	if _, err := e.root.Exec("CREATE USER ?@'10.9.8.7' IDENTIFIED BY 'x-unused-1234'", user); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.root.Exec("DROP USER IF EXISTS ?@'10.9.8.7'", user) })

	_, err := rotate(t, json.RawMessage(`{"strategy":"admin","admin_secret":"adm"}`), cur, nil, e.admin, false)
	if !errors.Is(err, errAmbiguous) || !strings.Contains(err.Error(), "account_host") {
		t.Fatalf("rotate with two accounts: err = %v, want one naming account_host", err)
	}
	if u, err := login(ctx(t), cur); err != nil || u != user {
		t.Fatalf("the refused rotation changed something: login = %q, %v", u, err)
	}
	next, err := rotate(t, json.RawMessage(`{"strategy":"admin","admin_secret":"adm","account_host":"%"}`), cur, nil, e.admin, false)
	if err != nil {
		t.Fatalf("rotate with account_host: %v", err)
	}
	if u, err := login(ctx(t), next); err != nil || u != user {
		t.Fatalf("login = %q, %v", u, err)
	}
	// single-user changes the account the server matched, without asking.
	if _, err := rotate(t, json.RawMessage(`{}`), next, nil, nil, false); err != nil {
		t.Fatalf("single-user rotate: %v", err)
	}
}

// Test refuses a value whose login lands on another account than the
// value's own host (account_host), even though the password is right.
func TestAccountHostChecked(t *testing.T) {
	e := newEnv(t)
	cur := e.createUser(t, testenv.Unique("rt_host_"), nil)
	err := New().Test(ctx(t), rotators.TestRequest{Config: json.RawMessage(`{"account_host":"localhost"}`), Value: cur})
	if err == nil || !strings.Contains(err.Error(), "account_host") {
		t.Fatalf("Test with the wrong account_host = %v, want an error", err)
	}
}

// The admin strategy works with only CREATE USER and SELECT on mysql.user.
func TestAdminLeastPrivilege(t *testing.T) {
	e := newEnv(t)
	admin := e.createUser(t, testenv.Unique("rt_small_adm_"), []string{
		"GRANT CREATE USER ON *.* TO ?@'%'",
		"GRANT SELECT ON mysql.user TO ?@'%'",
	})
	user := testenv.Unique("rt_lp_")
	cur := e.createUser(t, user, nil)
	next, err := rotate(t, json.RawMessage(`{"strategy":"admin","admin_secret":"adm"}`), cur, nil, admin, false)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if u, err := login(ctx(t), next); err != nil || u != user {
		t.Fatalf("login = %q, %v", u, err)
	}
	if _, err := login(ctx(t), cur); err == nil {
		t.Fatalf("the old password still works")
	}
}

// When the server refuses the change, the error names the account and
// holds neither the password nor its verifier.
func TestErrorsLeakNothing(t *testing.T) {
	e := newEnv(t)
	weak := e.createUser(t, testenv.Unique("rt_weak_adm_"), []string{"GRANT SELECT ON mysql.user TO ?@'%'"})
	user := testenv.Unique("rt_leak_")
	cur := e.createUser(t, user, nil)
	cfg := json.RawMessage(`{"strategy":"admin","admin_secret":"adm"}`)
	r := New()
	resp, err := r.Create(ctx(t), rotators.CreateRequest{Config: cfg, Current: cur})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Set(ctx(t), rotators.SetRequest{Config: cfg, Current: cur, Pending: resp.Value, Admin: weak})
	if err == nil {
		t.Fatalf("Set by an admin without CREATE USER succeeded")
	}
	var c struct{ Password string }
	for _, v := range []rotators.Value{cur, resp.Value, weak} {
		_ = json.Unmarshal(v.Reveal(), &c)
		for _, s := range []string{c.Password, nativeHash([]byte(c.Password)), nativeHash([]byte(c.Password))[1:]} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("Set error leaks a password or its verifier: %s", sensitive.SanitizeString(err.Error(), sensitive.Bytes(s)))
			}
		}
	}
	if !strings.Contains(err.Error(), user) {
		t.Errorf("Set error = %v, want it to name the account", err)
	}
}

// quoteString round-trips every byte through the real server's parser,
// with and without NO_BACKSLASH_ESCAPES (and under ANSI_QUOTES).
func TestQuoteStringOnServer(t *testing.T) {
	waitRoot(t)
	inputs := append([]string{"", "\x00", "a\x00b", "\\", "\\'", "'\\", "\\\\'", "\x1a\r\n\t\b", `"'` + "`", "ü€😀", "\\_%"}, rotatortest.DefaultHostileNames...)
	var all strings.Builder
	for c := 1; c < 256; c++ {
		all.WriteByte(byte(c))
	}
	for _, mode := range []string{"STRICT_TRANS_TABLES", "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES", "ANSI"} {
		t.Run(mode, func(t *testing.T) {
			mc := rootConfig()
			mc.Params = map[string]string{"sql_mode": quoteString(mode, false)}
			connector, err := driver.NewConnector(mc)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(connector)
			defer db.Close()
			c := ctx(t)
			var got string
			if err := db.QueryRowContext(c, "SELECT @@SESSION.sql_mode").Scan(&got); err != nil {
				t.Fatal(err)
			}
			nbe := strings.Contains(got, "NO_BACKSLASH_ESCAPES")
			if nbe != strings.Contains(mode, "NO_BACKSLASH_ESCAPES") {
				t.Fatalf("sql_mode is %q, want %q", got, mode)
			}
			check := func(prefix, in string) {
				t.Helper()
				var out []byte
				if err := db.QueryRowContext(c, "SELECT "+prefix+quoteString(in, nbe)).Scan(&out); err != nil {
					t.Fatalf("%q: %v", in, err)
				}
				if string(out) != in {
					t.Errorf("sql_mode %s: %squoteString(%q) reads back as %q", mode, prefix, in, out)
				}
			}
			for _, in := range inputs {
				check("", in)
			}
			// Byte by byte, as a binary string: no charset in the way.
			check("_binary", all.String())
		})
	}
}

func TestValidateConfig(t *testing.T) {
	r := New()
	for _, tc := range []struct {
		cfg, want string
	}{
		{``, ""},
		{`{}`, ""},
		{`{"strategy":"admin","admin_secret":"a","account_host":"%"}`, ""},
		{`{"strategy":"alternating","admin_secret":"a","alternate_username":"x_b","connect_timeout":"3s"}`, ""},
		{`{"strategy":"admin"}`, "needs admin_secret"},
		{`{"acount_host":"%"}`, `unknown field "acount_host"`},
		{`{"account_host":"a\u0000b"}`, "account_host contains a NUL byte"},
		{`{"password":{"length":4}}`, "password.length 4"},
		{`{"strategy":"rotate-all"}`, "strategy"},
		{`[`, "not a valid JSON object"},
	} {
		err := r.ValidateConfig(context.Background(), SecretType, json.RawMessage(tc.cfg))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidateConfig(%s) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := r.ValidateConfig(context.Background(), "random", nil); err == nil {
		t.Errorf("ValidateConfig(type random) = nil, want an error")
	}
}

// Create touches nothing: it works against a host that does not exist.
func TestCreateIsPure(t *testing.T) {
	cur := rotators.Value(`{"engine":"mysql","host":"192.0.2.1","port":3306,"username":"app","password":"old-password-123","dbname":"x"}`)
	r := New()
	for _, tc := range []struct {
		cfg  string
		prev rotators.Value
		want string
	}{
		{`{}`, nil, "app"},
		{`{"strategy":"alternating","admin_secret":"a"}`, nil, "app_b"},
		{`{"strategy":"alternating","admin_secret":"a","alternate_username":"other"}`, nil, "other"},
		{`{"strategy":"alternating","admin_secret":"a"}`, rotators.Value(`{"engine":"mysql","host":"h","port":1,"username":"app_b","password":"p"}`), "app_b"},
	} {
		resp, err := r.Create(context.Background(), rotators.CreateRequest{Config: json.RawMessage(tc.cfg), Current: cur, Previous: tc.prev})
		if err != nil {
			t.Fatalf("Create(%s): %v", tc.cfg, err)
		}
		c, err := rotators.ParseDBCredentials(resp.Value)
		if err != nil {
			t.Fatal(err)
		}
		if c.Username != tc.want || c.Password == "old-password-123" || len(c.Password) != rotators.DefaultPasswordLength || c.DBName != "x" {
			t.Errorf("Create(%s) = user %q, password len %d, dbname %q; want user %q, a new password, dbname kept", tc.cfg, c.Username, len(c.Password), c.DBName, tc.want)
		}
		if strings.ContainsAny(c.Password, `'"\@/:?#`) {
			t.Errorf("generated password has DSN-unsafe characters")
		}
	}
	if _, err := r.Create(context.Background(), rotators.CreateRequest{Config: json.RawMessage(`{}`)}); err == nil {
		t.Errorf("Create without a current value succeeded")
	}
	bad := rotators.Value(`{"engine":"postgres","host":"h","port":1,"username":"u","password":"secret-pw-1"}`)
	if _, err := r.Create(context.Background(), rotators.CreateRequest{Config: json.RawMessage(`{}`), Current: bad}); err == nil || strings.Contains(err.Error(), "secret-pw-1") {
		t.Errorf("Create(engine postgres) = %v, want an error without the password", err)
	}
}

// Every call honours ctx and the connect timeout: a server that accepts
// the connection and never says hello.
func TestConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	v := rotators.Value(`{"engine":"mysql","host":"127.0.0.1","port":` + strconv.Itoa(port) + `,"username":"app","password":"old-password-123"}`)
	r := New()
	for _, tc := range []struct {
		name string
		cfg  string
		ctx  time.Duration
	}{
		{"connect_timeout", `{"connect_timeout":"300ms","strategy":"admin","admin_secret":"a"}`, time.Minute},
		{"ctx", `{"strategy":"admin","admin_secret":"a"}`, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := json.RawMessage(tc.cfg)
			calls := map[string]func(context.Context) error{
				"Test": func(c context.Context) error {
					return r.Test(c, rotators.TestRequest{Config: cfg, Value: v})
				},
				"Set": func(c context.Context) error {
					return r.Set(c, rotators.SetRequest{Config: cfg, Current: v, Pending: v, Admin: v})
				},
				"Finish": func(c context.Context) error {
					return r.Finish(c, rotators.FinishRequest{Config: cfg, Current: v, Previous: v, Admin: v, Emergency: true})
				},
			}
			for name, call := range calls {
				c, cancel := context.WithTimeout(context.Background(), tc.ctx)
				start := time.Now()
				err := call(c)
				cancel()
				if d := time.Since(start); err == nil || d > 3*time.Second {
					t.Errorf("%s against a silent server = %v after %v; want an error after about 300ms", name, err, d)
				}
			}
		})
	}
}
