package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// harness is the conformance harness on the machine's PostgreSQL: roles
// made members of rotary_pwcheck, whose passwords pg_hba.conf checks over
// TCP (scripts/services.sh), and a superuser connection (trusted) to make
// and drop them.
type harness struct {
	rotatortest.Harness
	db         *sql.DB
	host       string
	port       int
	dbname     string
	superuser  string
	v16        bool // PostgreSQL 16+: CREATEROLE acts only on roles it has ADMIN OPTION on
	adminName  string
	adminValue rotators.Value
}

// baseTarget is where the test PostgreSQL listens, from its superuser DSN.
func baseTarget() (host string, port int, dbname, superuser string) {
	host, port, dbname, superuser = "127.0.0.1", 5432, "test", "postgres"
	if u, err := url.Parse(testenv.PostgresBaseDSN()); err == nil && u.Scheme != "" {
		if u.Hostname() != "" {
			host = u.Hostname()
		}
		if p, err := strconv.Atoi(u.Port()); err == nil {
			port = p
		}
		if d := strings.TrimPrefix(u.Path, "/"); d != "" {
			dbname = d
		}
		if u.User != nil && u.User.Username() != "" {
			superuser = u.User.Username()
		}
	}
	return host, port, dbname, superuser
}

// newTarget connects to the test PostgreSQL as its superuser.
func newTarget(tb testing.TB) *harness {
	tb.Helper()
	h := &harness{db: testenv.WaitPostgres(tb)}
	h.host, h.port, h.dbname, h.superuser = baseTarget()
	return h
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := newTarget(t)
	var pwcheck bool
	if err := h.db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rotary_pwcheck')`).Scan(&pwcheck); err != nil || !pwcheck {
		t.Fatalf("PostgreSQL has no role rotary_pwcheck (%v): run scripts/services.sh", err)
	}
	var version int
	if err := h.db.QueryRow(`SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatalf("server version: %v", err)
	}
	h.v16 = version >= 160000
	// One admin for the whole test: it outlives every subtest's roles.
	var err error
	if h.adminName, h.adminValue, err = h.createAdmin(t); err != nil {
		t.Fatalf("create the admin role: %v", err)
	}
	h.Harness = rotatortest.Harness{
		Rotator:     New(),
		SecretType:  SecretType,
		NewAccount:  h.newAccount,
		Admin:       func(*testing.T) rotators.Value { return h.adminValue },
		Login:       h.login,
		OpenSession: h.openSession,
		Strategies:  []string{rotators.StrategySingleUser, rotators.StrategyAdmin, rotators.StrategyAlternating},
		Config: func(strategy, adminSecret, altUser string) json.RawMessage {
			c := map[string]string{"strategy": strategy}
			if strategy != rotators.StrategySingleUser {
				c["admin_secret"] = adminSecret
			}
			if strategy == rotators.StrategyAlternating {
				c["alternate_username"] = altUser
			}
			b, _ := json.Marshal(c)
			return b
		},
		OldKeepsWorking:    func(strategy string) bool { return strategy == rotators.StrategyAlternating },
		Unchecked:          h.unchecked,
		Masquerade:         h.masquerade,
		HostileTestQueries: h.hostileTestQueries,
	}
	return h
}

// unchecked creates a login role outside rotary_pwcheck: pg_hba.conf
// trusts it over TCP, so any password logs in as it (what a value naming
// a trusted role, a superuser say, would exploit). changed compares its
// stored verifier.
func (h *harness) unchecked(t *testing.T, username string) (rotators.Value, func() bool) {
	t.Helper()
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec("CREATE ROLE " + pq.QuoteIdentifier(username) + " LOGIN PASSWORD " + pq.QuoteLiteral(string(pw.Reveal()))); err != nil {
		t.Fatalf("create role %q: %v", username, sensitive.Sanitize(err, pw))
	}
	t.Cleanup(func() { h.dropRoles(t, username) })
	stored := func() string {
		var v string
		if err := h.db.QueryRow(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, username).Scan(&v); err != nil {
			t.Fatalf("read the verifier of %q: %v", username, err)
		}
		return v
	}
	before := stored()
	// The trap is real: a wrong password logs in.
	wrong := h.value(username, sensitive.Bytes("not-the-password"))
	if who, err := h.login(t.Context(), wrong); err != nil || who != username {
		t.Fatalf("unchecked role: a wrong password was refused (%q, %v); pg_hba.conf does not trust it and the test proves nothing", who, err)
	}
	return h.value(username, pw), func() bool { return stored() != before }
}

// masquerade creates a login role (its password checked) whose sessions
// start as another role: ALTER ROLE … SET role, a per-role setting that
// whoever can alter the role can add.
func (h *harness) masquerade(t *testing.T, username string) rotators.Value {
	t.Helper()
	victim := username + "_victim"
	if _, err := h.db.Exec("CREATE ROLE " + pq.QuoteIdentifier(victim) + " NOLOGIN"); err != nil {
		t.Fatalf("create role %q: %v", victim, err)
	}
	t.Cleanup(func() { h.dropRoles(t, victim) })
	v := h.newAccount(t, username)
	for _, q := range []string{
		"GRANT " + pq.QuoteIdentifier(victim) + " TO " + pq.QuoteIdentifier(username),
		"ALTER ROLE " + pq.QuoteIdentifier(username) + " SET role = " + pq.QuoteLiteral(victim),
	} {
		if _, err := h.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return v
}

// hostileTestQueries: a table the login owns (so that DROP and DELETE
// would work with its privileges) and statements that would change it.
func (h *harness) hostileTestQueries(t *testing.T, login rotators.Value) ([]rotatortest.HostileQuery, func() error) {
	t.Helper()
	c, _ := rotators.ParseDBCredentials(login)
	table := testenv.Unique("rt_tq_")
	created := table + "_new"
	owner := h.db // the superuser, on the value's database
	for _, q := range []string{
		"CREATE TABLE public." + pq.QuoteIdentifier(table) + " (a int)",
		"INSERT INTO public." + pq.QuoteIdentifier(table) + " VALUES (1)",
		"ALTER TABLE public." + pq.QuoteIdentifier(table) + " OWNER TO " + pq.QuoteIdentifier(c.Username),
		"GRANT CREATE ON SCHEMA public TO " + pq.QuoteIdentifier(c.Username),
	} {
		if _, err := owner.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = owner.Exec("DROP TABLE IF EXISTS public." + pq.QuoteIdentifier(table) + ", public." + pq.QuoteIdentifier(created))
		_, _ = owner.Exec("REVOKE CREATE ON SCHEMA public FROM " + pq.QuoteIdentifier(c.Username))
	})
	qt, qc := "public."+pq.QuoteIdentifier(table), "public."+pq.QuoteIdentifier(created)
	return []rotatortest.HostileQuery{
			{Query: "DROP TABLE " + qt},
			{Query: "SELECT 1; DROP TABLE " + qt},
			{Query: "SELECT 1;DELETE FROM " + qt},
			{Query: "CREATE TABLE " + qc + " (a int)"},
			{Query: `SELECT 'x\'; DROP TABLE ` + qt + `; --'`},
			{Query: "WITH d AS (DELETE FROM " + qt + " RETURNING 1) SELECT count(*) FROM d", ServerOnly: true},
			{Query: "SELECT 1 INTO " + qc, ServerOnly: true}, // SELECT INTO creates a table
		}, func() error {
			var n int
			if err := owner.QueryRow("SELECT count(*) FROM " + qt).Scan(&n); err != nil {
				return fmt.Errorf("the table is gone: %w", err)
			}
			if n != 1 {
				return fmt.Errorf("the table has %d rows, want 1", n)
			}
			var exists bool
			if err := owner.QueryRow("SELECT to_regclass($1) IS NOT NULL", qc).Scan(&exists); err != nil || exists {
				return fmt.Errorf("table %s was created (%v)", qc, err)
			}
			return nil
		}
}

func (h *harness) value(user string, password sensitive.Bytes) rotators.Value {
	v, _ := json.Marshal(map[string]any{"engine": "postgres", "host": h.host, "port": h.port,
		"username": user, "password": "x", "dbname": h.dbname, "sslmode": "disable"})
	out, err := rotators.WithCredentials(sensitive.Bytes(v), user, password)
	if err != nil {
		panic(err)
	}
	return out
}

// newAccount creates a login role in rotary_pwcheck, so that PostgreSQL
// checks its password over TCP, with a random password PostgreSQL hashes
// itself.
func (h *harness) newAccount(t *testing.T, username string, alsoDrop ...string) rotators.Value {
	t.Helper()
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	q := "CREATE ROLE " + pq.QuoteIdentifier(username) + " LOGIN PASSWORD " + pq.QuoteLiteral(string(pw.Reveal())) + " IN ROLE rotary_pwcheck"
	if h.v16 && h.adminName != "" {
		q += " ADMIN " + pq.QuoteIdentifier(h.adminName)
	}
	if _, err := h.db.Exec(q); err != nil {
		t.Fatalf("create role %q: %v", username, sensitive.Sanitize(err, pw))
	}
	t.Cleanup(func() { h.dropRoles(t, append([]string{username}, alsoDrop...)...) })
	return h.value(username, pw)
}

func (h *harness) dropRoles(t testing.TB, roles ...string) {
	for _, r := range roles {
		if _, err := h.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, r); err != nil {
			t.Logf("end the sessions of %q: %v", r, err)
		}
		if _, err := h.db.Exec("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(r)); err != nil {
			t.Errorf("drop role %q: %v", r, err)
		}
	}
}

// createAdmin makes the tests' admin: CREATEROLE (on PostgreSQL 15 enough
// to change any non-superuser role's password and grant it non-superuser
// roles; on 16+ NewAccount also gives it ADMIN OPTION on each account),
// pg_signal_backend (to end other roles' sessions), and rotary_pwcheck
// WITH ADMIN OPTION (to pass that membership on to the alternating
// strategy's second user), with a password PostgreSQL checks.
func (h *harness) createAdmin(t *testing.T) (string, rotators.Value, error) {
	name := testenv.Unique("rt_admin_")
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		return "", nil, err
	}
	for _, q := range []string{
		"CREATE ROLE " + pq.QuoteIdentifier(name) + " LOGIN CREATEROLE PASSWORD " + pq.QuoteLiteral(string(pw.Reveal())) + " IN ROLE pg_signal_backend",
		"GRANT rotary_pwcheck TO " + pq.QuoteIdentifier(name) + " WITH ADMIN OPTION",
	} {
		if _, err := h.db.Exec(q); err != nil {
			h.dropRoles(t, name)
			return "", nil, sensitive.Sanitize(err, pw)
		}
	}
	t.Cleanup(func() { h.dropRoles(t, name) })
	return name, h.value(name, pw), nil
}

// login authenticates over TCP with lib/pq, as an application would, and
// returns current_user.
func (h *harness) login(ctx context.Context, value rotators.Value) (string, error) {
	db, err := h.connect(value)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var who string
	err = db.QueryRowContext(ctx, `SELECT current_user`).Scan(&who)
	return who, err
}

func (h *harness) connect(value rotators.Value) (*sql.DB, error) {
	c, err := rotators.ParseDBCredentials(value)
	if err != nil {
		return nil, err
	}
	cfg, err := pq.NewConfig("host=" + c.Host + " port=" + strconv.Itoa(c.Port) + " dbname=" + c.DBName + " sslmode=disable connect_timeout=10")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = c.Username, c.Password
	conn, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

func (h *harness) openSession(t *testing.T, value rotators.Value) func() bool {
	t.Helper()
	db, err := h.connect(value)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		db.Close()
		t.Fatalf("open session: %v", sensitive.Sanitize(err, value))
	}
	t.Cleanup(func() { conn.Close(); db.Close() })
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := conn.ExecContext(ctx, `SELECT 1`)
		return err == nil
	}
}

func TestConformance(t *testing.T) {
	h := newHarness(t)
	t.Cleanup(func() { h.Rotator.(*Rotator).Close() })
	rotatortest.Run(t, h.Harness)
}

// TestAlternatingCopiesRole: the second user gets the first's memberships
// (with their ADMIN option), CONNECTION LIMIT, VALID UNTIL and NOINHERIT,
// and a membership the first user gains later reaches the second at the
// next rotation.
func TestAlternatingCopiesRole(t *testing.T) {
	h := newHarness(t)
	g1, g2, g3 := testenv.Unique("rt_g1_"), testenv.Unique("rt_g2_"), testenv.Unique("rt_g3_")
	for _, g := range []string{g1, g2, g3} {
		if _, err := h.db.Exec("CREATE ROLE " + pq.QuoteIdentifier(g) + " NOLOGIN"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { h.dropRoles(t, g1, g2, g3) })
	user := testenv.Unique("rt_alt_")
	alt := user + "_b"
	current := h.NewAccount(t, user, alt)
	for _, q := range []string{
		"ALTER ROLE " + pq.QuoteIdentifier(user) + " NOINHERIT CONNECTION LIMIT 7 VALID UNTIL '2099-01-02 03:04:05+00'",
		"GRANT " + pq.QuoteIdentifier(g1) + " TO " + pq.QuoteIdentifier(user) + " WITH ADMIN OPTION",
		"GRANT " + pq.QuoteIdentifier(g2) + " TO " + pq.QuoteIdentifier(user),
	} {
		if _, err := h.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg := h.Config(rotators.StrategyAlternating, "admin", alt)
	admin := h.Admin(t)
	r := New()
	ctx := t.Context()
	rotate := func(current, previous rotators.Value) rotators.Value {
		t.Helper()
		resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: current, Previous: previous})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := r.Set(ctx, rotators.SetRequest{Config: cfg, Current: current, Pending: resp.Value, Admin: admin}); err != nil {
			t.Fatalf("Set: %v", err)
		}
		if err := r.Test(ctx, rotators.TestRequest{Config: cfg, Value: resp.Value}); err != nil {
			t.Fatalf("Test: %v", err)
		}
		return resp.Value
	}
	second := rotate(current, nil)
	var inherit bool
	var connLimit int
	var validUntil time.Time
	if err := h.db.QueryRow(`SELECT rolinherit, rolconnlimit, rolvaliduntil FROM pg_roles WHERE rolname = $1`, alt).Scan(&inherit, &connLimit, &validUntil); err != nil {
		t.Fatalf("read %q: %v", alt, err)
	}
	if inherit || connLimit != 7 || !validUntil.Equal(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("second user: inherit %v, connection limit %d, valid until %v; want false, 7, 2099-01-02 03:04:05Z", inherit, connLimit, validUntil)
	}
	want := map[string]bool{"rotary_pwcheck": false, g1: true, g2: false}
	if got := h.memberships(t, alt); !equalMaps(got, want) {
		t.Errorf("memberships of the second user = %v, want %v", got, want)
	}
	// A membership the first user gains later is synced; none is revoked.
	if _, err := h.db.Exec("GRANT " + pq.QuoteIdentifier(g3) + " TO " + pq.QuoteIdentifier(user)); err != nil {
		t.Fatal(err)
	}
	third := rotate(second, current) // back to the first user
	_ = rotate(third, second)        // the second user again: g3 is granted now
	want[g3] = false
	if got := h.memberships(t, alt); !equalMaps(got, want) {
		t.Errorf("after the first user joined %s: memberships of the second user = %v, want %v", g3, got, want)
	}
}

func (h *harness) memberships(t *testing.T, role string) map[string]bool {
	t.Helper()
	rows, err := h.db.Query(`SELECT g.rolname, m.admin_option FROM pg_auth_members m
		JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1`, role)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var g string
		var admin bool
		if err := rows.Scan(&g, &admin); err != nil {
			t.Fatal(err)
		}
		out[g] = admin
	}
	return out
}

func equalMaps(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestTestQuery: the test query runs as the user, and a query the user may
// not run fails Test without quoting the password.
func TestTestQuery(t *testing.T) {
	h := newHarness(t)
	user := testenv.Unique("rt_tq_")
	v := h.NewAccount(t, user)
	r := New()
	ok := json.RawMessage(`{"test_query":"SELECT count(*) FROM pg_catalog.pg_class"}`)
	if err := r.Test(t.Context(), rotators.TestRequest{Config: ok, Value: v}); err != nil {
		t.Errorf("Test with a query the user may run: %v", err)
	}
	bad := json.RawMessage(`{"test_query":"SELECT * FROM pg_catalog.pg_authid"}`)
	err := r.Test(t.Context(), rotators.TestRequest{Config: bad, Value: v})
	if err == nil {
		t.Fatalf("Test with a query the user may not run succeeded")
	}
	c, _ := rotators.ParseDBCredentials(v)
	if strings.Contains(err.Error(), c.Password) {
		t.Errorf("Test error leaks the password: %v", sensitive.Sanitize(err, sensitive.Bytes(c.Password)))
	}
}

// TestSetSingleUserAfterItRan: when the current password is refused but the
// pending one works, Set already ran and succeeds without a change; when
// neither works it fails.
func TestSetSingleUserAfterItRan(t *testing.T) {
	h := newHarness(t)
	user := testenv.Unique("rt_idem_")
	current := h.NewAccount(t, user)
	r := New()
	cfg := json.RawMessage(`{}`)
	resp, err := r.Create(t.Context(), rotators.CreateRequest{Config: cfg, Current: current})
	if err != nil {
		t.Fatal(err)
	}
	req := rotators.SetRequest{Config: cfg, Current: current, Pending: resp.Value}
	for i := range 2 {
		if err := r.Set(t.Context(), req); err != nil {
			t.Fatalf("Set #%d: %v", i+1, err)
		}
	}
	other, _ := r.Create(t.Context(), rotators.CreateRequest{Config: cfg, Current: current})
	err = r.Set(t.Context(), rotators.SetRequest{Config: cfg, Current: current, Pending: other.Value})
	if err == nil {
		t.Fatalf("Set with a current password that no longer works and an unset pending one succeeded")
	}
	for _, v := range []rotators.Value{current, resp.Value, other.Value} {
		c, _ := rotators.ParseDBCredentials(v)
		if strings.Contains(err.Error(), c.Password) {
			t.Errorf("Set error leaks a password: %v", sensitive.Sanitize(err, sensitive.Bytes(c.Password)))
		}
	}
}

// TestConnectTimeout: a server that accepts and never answers is given up
// on after connect_timeout, and a cancelled context stops a call at once.
func TestConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	v := sensitive.Bytes(`{"engine":"postgres","host":"127.0.0.1","port":` + strconv.Itoa(port) + `,"username":"u","password":"secret-pw"}`)
	r := New()
	start := time.Now()
	err = r.Test(context.Background(), rotators.TestRequest{Config: json.RawMessage(`{"connect_timeout":"300ms"}`), Value: v})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("Test against a silent server = %v after %v; want an error after about 300ms", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = r.Test(ctx, rotators.TestRequest{Config: json.RawMessage(`{}`), Value: v})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("Test with a 200ms context = %v after %v; want an error after about 200ms", err, time.Since(start))
	}
}

func TestCreate(t *testing.T) {
	r := New()
	// A host nothing listens on: Create never connects.
	cur := sensitive.Bytes(`{"engine":"postgres","host":"127.0.0.1","port":1,"username":"app","password":"old-password-1","dbname":"db","sslmode":"disable","extra":"kept"}`)
	for _, tc := range []struct {
		name, cfg, previous, wantUser string
	}{
		{"single-user", `{}`, "", "app"},
		{"admin", `{"strategy":"admin","admin_secret":"a"}`, "", "app"},
		{"alternating first use", `{"strategy":"alternating","admin_secret":"a"}`, "", "app_b"},
		{"alternating named", `{"strategy":"alternating","admin_secret":"a","alternate_username":"app2"}`, "", "app2"},
		{"alternating back", `{"strategy":"alternating","admin_secret":"a"}`, `{"engine":"postgres","host":"h","port":1,"username":"app_x","password":"pw-prev"}`, "app_x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := r.Create(t.Context(), rotators.CreateRequest{Config: json.RawMessage(tc.cfg), Current: cur, Previous: sensitive.Bytes(tc.previous)})
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(resp.Value.Reveal(), &m); err != nil {
				t.Fatal(err)
			}
			pw, _ := m["password"].(string)
			if m["username"] != tc.wantUser || len(pw) != rotators.DefaultPasswordLength || pw == "old-password-1" || m["extra"] != "kept" || m["dbname"] != "db" {
				t.Errorf("Create = user %v, password of %d characters, extra %v; want user %s, a new 32-character password, other fields kept", m["username"], len(pw), m["extra"], tc.wantUser)
			}
			if strings.ContainsAny(pw, `'"\ @:/?#%&=`) {
				t.Errorf("generated password has characters that need quoting in a DSN")
			}
		})
	}
	if _, err := r.Create(t.Context(), rotators.CreateRequest{Config: json.RawMessage(`{}`), Current: sensitive.Bytes(`{"engine":"mysql","host":"h","port":1,"username":"u","password":"pw-mysql"}`)}); err == nil {
		t.Errorf("Create accepted a mysql value")
	}
	long := strings.Repeat("x", 62)
	if _, err := r.Create(t.Context(), rotators.CreateRequest{Config: json.RawMessage(`{"strategy":"alternating","admin_secret":"a"}`),
		Current: sensitive.Bytes(`{"engine":"postgres","host":"h","port":1,"username":"` + long + `","password":"pw-long1"}`)}); err == nil {
		t.Errorf("Create accepted an alternate user name PostgreSQL would truncate")
	}
}

func TestValidateConfig(t *testing.T) {
	r := New()
	for _, tc := range []struct {
		typ, cfg string
		ok       bool
	}{
		{SecretType, `{}`, true},
		{SecretType, ``, true},
		{SecretType, `{"strategy":"admin","admin_secret":"db/admin","test_query":"SELECT 1 FROM t"}`, true},
		{SecretType, `{"strategy":"alternating","admin_secret":"a","alternate_username":"o'brien \"b\""}`, true},
		{"password", `{}`, false},
		{SecretType, `{"strategy":"admin"}`, false},
		{SecretType, `{"strategy":"bogus"}`, false},
		{SecretType, `{"unknown":1}`, false},
		{SecretType, `{"strategy":"alternating","admin_secret":"a","alternate_username":"` + strings.Repeat("x", 64) + `"}`, false},
		{SecretType, `{"strategy":"alternating","admin_secret":"a","alternate_username":"nul\u0000"}`, false},
		{SecretType, `{"connect_timeout":"forever"}`, false},
		{SecretType, `{"password":{"length":4}}`, false},
	} {
		err := r.ValidateConfig(context.Background(), tc.typ, json.RawMessage(tc.cfg))
		if (err == nil) != tc.ok {
			t.Errorf("ValidateConfig(%s, %s) = %v, want ok %v", tc.typ, tc.cfg, err, tc.ok)
		}
	}
}

func TestIterations(t *testing.T) {
	for _, tc := range []struct {
		n, want int
		ok      bool
	}{{0, DefaultIterations, true}, {4096, 4096, true}, {100000, 100000, true}, {1000, 0, false}, {MaxIterations + 1, 0, false}} {
		got, err := (&Rotator{Iterations: tc.n}).iterations()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Iterations %d: %d, %v; want %d, ok %v", tc.n, got, err, tc.want, tc.ok)
		}
	}
}

// recordingDialer keeps every byte the client sends to the server.
type recordingDialer struct {
	mu   sync.Mutex
	sent []byte
}

func (d *recordingDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *recordingDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, d: d}, nil
}

type recordingConn struct {
	net.Conn
	d *recordingDialer
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	c.d.sent = append(c.d.sent, b...)
	c.d.mu.Unlock()
	return c.Conn.Write(b)
}

// TestPasswordNeverSent records every byte the rotator writes to the
// server during whole rotations with each strategy (including an
// emergency one): no password, new or old, is ever among them, only
// SCRAM verifiers and proofs. What the server never receives it cannot
// log.
func TestPasswordNeverSent(t *testing.T) {
	h := newHarness(t)
	rec := &recordingDialer{}
	testDialer = rec
	t.Cleanup(func() { testDialer = nil })
	admin := h.Admin(t)
	r := New()
	ctx := t.Context()
	for _, strategy := range h.Strategies {
		user := testenv.Unique("rt_wire_")
		current := h.NewAccount(t, user, user+"_b")
		cfg := h.Config(strategy, "admin", user+"_b")
		var previous rotators.Value
		var seen []rotators.Value
		for _, emergency := range []bool{false, true} {
			resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: current, Previous: previous, Emergency: emergency})
			if err != nil {
				t.Fatalf("%s: Create: %v", strategy, err)
			}
			pending := resp.Value
			if err := r.Set(ctx, rotators.SetRequest{Config: cfg, Current: current, Pending: pending, Admin: admin, Emergency: emergency}); err != nil {
				t.Fatalf("%s: Set: %v", strategy, err)
			}
			if err := r.Test(ctx, rotators.TestRequest{Config: cfg, Value: pending}); err != nil {
				t.Fatalf("%s: Test: %v", strategy, err)
			}
			previous, current = current, pending
			if err := r.Finish(ctx, rotators.FinishRequest{Config: cfg, Current: current, Previous: previous, Admin: admin, Emergency: emergency}); err != nil {
				t.Fatalf("%s: Finish: %v", strategy, err)
			}
			seen = append(seen, previous, current)
		}
		rec.mu.Lock()
		sent := string(rec.sent)
		rec.mu.Unlock()
		for _, v := range append(seen, admin) {
			c, _ := rotators.ParseDBCredentials(v)
			if strings.Contains(sent, c.Password) {
				t.Errorf("%s: the password of %q was sent to the server", strategy, c.Username)
			}
		}
		if !strings.Contains(sent, "SCRAM-SHA-256$4096:") {
			t.Fatalf("%s: recorded no verifier; the recording proves nothing", strategy)
		}
	}
}
