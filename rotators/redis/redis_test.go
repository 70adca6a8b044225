package redis_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/redis"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// The test server: the machine's Redis (scripts/services.sh), whose
// default user needs no password and administers the test users.
func testAddr() (host string, port int) {
	addr := os.Getenv("ROTARY_TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(fmt.Sprintf("ROTARY_TEST_REDIS_ADDR %q: %v", addr, err))
	}
	var n int
	fmt.Sscan(p, &n)
	return h, n
}

// root returns a client of the default user, after waiting up to 30 s for
// Redis to answer. It fails the test (never skips) when Redis is not there.
func root(t testing.TB) *goredis.Client {
	t.Helper()
	host, port := testAddr()
	rdb := goredis.NewClient(&goredis.Options{Addr: net.JoinHostPort(host, fmt.Sprint(port)), Protocol: 2, DisableIdentity: true, PoolSize: 4})
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
			t.Fatalf("Redis at %s:%d does not answer (run scripts/services.sh): %v", host, port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func newPassword(t testing.TB) sensitive.Bytes {
	t.Helper()
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

func value(user string, pw sensitive.Bytes) rotators.Value {
	host, port := testAddr()
	return valueAt(host, port, user, pw)
}

func valueAt(host string, port int, user string, pw sensitive.Bytes) rotators.Value {
	b, _ := json.Marshal(map[string]any{"engine": "redis", "host": host, "port": port, "username": user, "password": string(pw.Reveal())})
	return sensitive.Bytes(b)
}

func parse(v rotators.Value) (user, pw string) {
	var m struct{ Username, Password string }
	_ = json.Unmarshal(v.Reveal(), &m)
	return m.Username, m.Password
}

// Rules of the accounts the tests rotate: enough to log in, run a command
// and ask who they are.
var appRules = []string{"~rt:*", "resetchannels", "-@all", "+@read", "+@write", "+ping", "+acl|whoami"}

// selfRules are added for the single-user strategy: a Redis user can only
// change its own passwords with ACL SETUSER rights.
var selfRules = []string{"+acl|setuser", "+acl|save", "+client|kill"}

// adminRules are all the admin strategy needs.
var adminRules = []string{"resetkeys", "resetchannels", "-@all", "+acl|getuser", "+acl|setuser", "+acl|save", "+client|kill"}

// createUser makes an ACL user with a random password and removes it, and
// every name in alsoDrop, when the test ends.
func createUser(t testing.TB, rdb *goredis.Client, name string, rules []string, alsoDrop ...string) rotators.Value {
	t.Helper()
	pw := newPassword(t)
	args := append([]string{"reset", "on", "#" + sha(pw)}, rules...)
	if err := rdb.ACLSetUser(context.Background(), name, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %q: %v", name, err)
	}
	t.Cleanup(func() {
		if err := rdb.ACLDelUser(context.Background(), name).Err(); err != nil {
			t.Logf("ACL DELUSER %q: %v", name, err)
		}
		for _, n := range alsoDrop {
			_ = rdb.ACLDelUser(context.Background(), n).Err()
		}
	})
	return value(name, pw)
}

// sha is the form ACL SETUSER takes after '#', computed independently of
// the rotator.
func sha(pw sensitive.Bytes) string {
	sum := sha256.Sum256(pw.Reveal())
	return hex.EncodeToString(sum[:])
}

// login authenticates with v over TCP with go-redis and returns ACL WHOAMI.
// A refused AUTH comes back as an error: go-redis fails the connection, and
// WHOAMI would show "default" otherwise.
func login(ctx context.Context, v rotators.Value) (string, error) {
	user, pw := parse(v)
	host, port := testAddr()
	rdb := goredis.NewClient(&goredis.Options{
		Addr: net.JoinHostPort(host, fmt.Sprint(port)), Username: user, Password: pw,
		Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1, DialTimeout: 5 * time.Second,
	})
	defer rdb.Close()
	return rdb.ACLWhoAmI(ctx).Result()
}

// openSession keeps one connection authenticated with v; alive PINGs on
// that same connection and stays false once it failed.
func openSession(t *testing.T, v rotators.Value) func() bool {
	t.Helper()
	user, pw := parse(v)
	host, port := testAddr()
	rdb := goredis.NewClient(&goredis.Options{
		Addr: net.JoinHostPort(host, fmt.Sprint(port)), Username: user, Password: pw,
		Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1,
	})
	conn := rdb.Conn()
	t.Cleanup(func() { conn.Close(); rdb.Close() })
	var mu sync.Mutex
	dead := false
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if dead {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if conn.Ping(ctx).Err() != nil {
			dead = true
		}
		return !dead
	}
}

// redisHostile are the suite's hostile names that Redis accepts, plus names
// that look like ACL rules. Redis refuses "with space" (whitespace and NUL
// are not allowed in ACL user names); TestRefusedNames covers it.
var redisHostile = []string{
	`o'brien`, `back\slash`, `dq"uote`, `ünïcødé`, `semi;colon--`, `pct%_x`,
	`>gt`, `<lt`, `#hash`, `!bang`, `~*`, `+@all`, `&*`, `%R~x`, `resetpass`, `nopass`, `allkeys`, `on`, `a:b*c`,
}

func harness(t *testing.T, strategy string) rotatortest.Harness {
	rdb := root(t)
	rules := appRules
	if strategy == rotators.StrategySingleUser {
		rules = append(append([]string{}, appRules...), selfRules...)
	}
	return rotatortest.Harness{
		Rotator:    redis.Rotator{},
		SecretType: redis.SecretType,
		NewAccount: func(t *testing.T, username string, alsoDrop ...string) rotators.Value {
			return createUser(t, rdb, username, rules, alsoDrop...)
		},
		Admin: func(t *testing.T) rotators.Value {
			return createUser(t, rdb, testenv.Unique("rt_admin_"), adminRules)
		},
		Login:       login,
		OpenSession: openSession,
		Strategies:  []string{strategy},
		Config: func(strategy, adminSecret, _ string) json.RawMessage {
			return config(strategy, adminSecret)
		},
		OldKeepsWorking: func(string) bool { return false }, // Finish removes the old password
		HostileNames:    redisHostile,
		Unchecked: func(t *testing.T, username string) (rotators.Value, func() bool) {
			return uncheckedUser(t, rdb, username, rules)
		},
		HostileTestQueries: func(t *testing.T, _ rotators.Value) ([]rotatortest.HostileQuery, func() error) {
			return hostileCommands(t, rdb)
		},
	}
}

// uncheckedUser makes a nopass user, as the default user is out of the
// box: any password logs in as it. changed compares its ACL rules.
func uncheckedUser(t *testing.T, rdb *goredis.Client, name string, rules []string) (rotators.Value, func() bool) {
	t.Helper()
	args := append([]string{"reset", "on", "nopass"}, rules...)
	if err := rdb.ACLSetUser(context.Background(), name, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %q: %v", name, err)
	}
	t.Cleanup(func() { _ = rdb.ACLDelUser(context.Background(), name).Err() })
	list := func() string {
		l, err := rdb.ACLList(context.Background()).Result()
		if err != nil {
			t.Fatalf("ACL LIST: %v", err)
		}
		for _, u := range l {
			if strings.HasPrefix(u, "user "+name+" ") {
				return u
			}
		}
		t.Fatalf("user %q is gone", name)
		return ""
	}
	before := list()
	v := value(name, newPassword(t))
	if who, err := login(t.Context(), v); err != nil || who != name {
		t.Fatalf("nopass user: login = %q, %v; the test proves nothing", who, err)
	}
	return v, func() bool { return list() != before }
}

// hostileCommands: a key the test users may write, and test commands
// that would change it or more.
func hostileCommands(t *testing.T, rdb *goredis.Client) ([]rotatortest.HostileQuery, func() error) {
	t.Helper()
	key := testenv.Unique("rt:tq:")
	if err := rdb.Set(context.Background(), key, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Del(context.Background(), key).Err() })
	return []rotatortest.HostileQuery{
			{Query: "DEL " + key},
			{Query: "SET " + key + " 2"},
			{Query: "FLUSHDB"},
			{Query: "EVAL \"redis.call('del', KEYS[1])\" 1 " + key},
			{Query: "ACL SETUSER default nopass"},
			{Query: "CONFIG SET appendonly no"},
		}, func() error {
			v, err := rdb.Get(context.Background(), key).Result()
			if err != nil || v != "1" {
				return fmt.Errorf("key %s = %q, %v; want 1", key, v, err)
			}
			return nil
		}
}

func config(strategy, adminSecret string) json.RawMessage {
	if strategy == rotators.StrategySingleUser {
		return json.RawMessage(`{"strategy":"single-user","connect_timeout":"5s"}`)
	}
	b, _ := json.Marshal(map[string]string{"strategy": strategy, "admin_secret": adminSecret, "connect_timeout": "5s"})
	return b
}

// The strategies Redis supports: admin (an admin user runs ACL SETUSER)
// and single-user (the user runs ACL SETUSER on itself, so it needs
// +acl|setuser, +acl|save and +client|kill). Alternating is refused (TestAlternatingUnsupported).
func TestConformanceAdmin(t *testing.T) {
	t.Parallel()
	rotatortest.Run(t, harness(t, rotators.StrategyAdmin))
}

func TestConformanceSingleUser(t *testing.T) {
	t.Parallel()
	rotatortest.Run(t, harness(t, rotators.StrategySingleUser))
}

// fixture is one rotation driven by hand.
type fixture struct {
	t       *testing.T
	rdb     *goredis.Client
	cfg     json.RawMessage
	user    string
	current rotators.Value
	admin   rotators.Value
	r       redis.Rotator
}

func newFixture(t *testing.T, strategy string, rules []string) *fixture {
	t.Helper()
	rdb := root(t)
	f := &fixture{t: t, rdb: rdb, cfg: config(strategy, "admin"), user: testenv.Unique("rt_fx_")}
	f.current = createUser(t, rdb, f.user, rules)
	if strategy == rotators.StrategyAdmin {
		f.admin = createUser(t, rdb, testenv.Unique("rt_admin_"), adminRules)
	}
	return f
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// noLeak fails when err's text contains any password of vs.
func noLeak(t *testing.T, err error, vs ...rotators.Value) {
	t.Helper()
	if err == nil {
		return
	}
	for _, v := range vs {
		if _, pw := parse(v); pw != "" && strings.Contains(err.Error(), pw) {
			t.Errorf("error leaks a password: %v", sensitive.Sanitize(err, sensitive.Bytes(pw)))
		}
	}
}

func (f *fixture) create() rotators.Value {
	f.t.Helper()
	resp, err := f.r.Create(ctx(f.t), rotators.CreateRequest{Config: f.cfg, Current: f.current})
	if err != nil {
		f.t.Fatalf("Create: %v", err)
	}
	return resp.Value
}

func (f *fixture) set(pending rotators.Value) error {
	return f.r.Set(ctx(f.t), rotators.SetRequest{Config: f.cfg, Current: f.current, Pending: pending, Admin: f.admin})
}

func (f *fixture) finish(cur, prev rotators.Value, emergency, keep bool) error {
	return f.r.Finish(ctx(f.t), rotators.FinishRequest{Config: f.cfg, Current: cur, Previous: prev, Admin: f.admin, Emergency: emergency, KeepSessions: keep})
}

func (f *fixture) test(v rotators.Value) error {
	return f.r.Test(ctx(f.t), rotators.TestRequest{Config: f.cfg, Value: v})
}

func TestSingleUserWithoutACLRights(t *testing.T) {
	t.Parallel()
	f := newFixture(t, rotators.StrategySingleUser, appRules)
	pending := f.create()
	err := f.set(pending)
	noLeak(t, err, f.current, pending)
	if err == nil {
		t.Fatal("Set with a user lacking +acl|setuser succeeded; want an error")
	}
	for _, want := range []string{f.user, "ACL SETUSER", "+acl|setuser", "strategy admin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Set error = %q; want it to mention %q", err, want)
		}
	}
	if f.test(pending) == nil {
		t.Error("Test(pending) works although Set failed")
	}
	if err := f.test(f.current); err != nil {
		t.Errorf("Test(current) after the failed Set = %v", err)
	}
}

func TestAlternatingUnsupported(t *testing.T) {
	t.Parallel()
	cfg := config(rotators.StrategyAlternating, "admin")
	err := redis.Rotator{}.ValidateConfig(context.Background(), redis.SecretType, cfg)
	if !errors.Is(err, rotators.ErrUnsupported) || !strings.Contains(err.Error(), "alternating") || !strings.Contains(err.Error(), "several passwords") {
		t.Errorf("ValidateConfig(alternating) = %v; want ErrUnsupported explaining why", err)
	}
	pw := newPassword(t)
	v := value("someone", pw)
	if _, err := (redis.Rotator{}).Create(context.Background(), rotators.CreateRequest{Config: cfg, Current: v}); !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("Create(alternating) = %v; want ErrUnsupported", err)
	}
	if err := (redis.Rotator{}).Set(context.Background(), rotators.SetRequest{Config: cfg, Current: v, Pending: v, Admin: v}); !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("Set(alternating) = %v; want ErrUnsupported", err)
	}
	if err := (redis.Rotator{}).Finish(context.Background(), rotators.FinishRequest{Config: cfg, Current: v, Previous: v, Admin: v}); !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("Finish(alternating) = %v; want ErrUnsupported", err)
	}
}

func TestValidateConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ, cfg, wantErr string
	}{
		{"db-credentials", ``, ""},
		{"db-credentials", `{"strategy":"single-user"}`, ""},
		{"db-credentials", `{"strategy":"admin","admin_secret":"a"}`, ""},
		{"db-credentials", `{"test_query":"GET app:health"}`, ""},
		{"db-credentials", `{"strategy":"admin"}`, "admin_secret"},
		{"db-credentials", `{"test_query":"   "}`, "test_query"},
		{"db-credentials", `{"nope":1}`, "unknown field"},
		{"db-credentials", `{"connect_timeout":"forever"}`, "connect_timeout"},
		{"password", ``, "db-credentials"},
	} {
		err := redis.Rotator{}.ValidateConfig(context.Background(), tc.typ, json.RawMessage(tc.cfg))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ValidateConfig(%s, %s) = %v; want nil", tc.typ, tc.cfg, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ValidateConfig(%s, %s) = %v; want an error mentioning %q", tc.typ, tc.cfg, err, tc.wantErr)
		}
	}
}

// Set never creates a user: ACL SETUSER would.
func TestAdminSetMissingUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t, rotators.StrategyAdmin, appRules)
	ghost := testenv.Unique("rt_ghost_")
	t.Cleanup(func() { _ = f.rdb.ACLDelUser(context.Background(), ghost).Err() })
	f.current = value(ghost, newPassword(t))
	pending := f.create()
	err := f.set(pending)
	noLeak(t, err, f.current, pending, f.admin)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Set for a missing user = %v; want a does-not-exist error", err)
	}
	if n, _ := f.rdb.Do(context.Background(), "ACL", "GETUSER", ghost).Result(); n != nil {
		t.Errorf("Set created user %q", ghost)
	}
}

// Finish after a crash runs again: the old password is gone already.
func TestFinishTwice(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategySingleUser} {
		t.Run(strategy, func(t *testing.T) {
			f := newFixture(t, strategy, append(append([]string{}, appRules...), selfRules...))
			pending := f.create()
			if err := f.set(pending); err != nil {
				t.Fatalf("Set: %v", err)
			}
			for i := range 2 {
				if err := f.finish(pending, f.current, false, false); err != nil {
					t.Fatalf("Finish #%d: %v", i+1, err)
				}
			}
			if _, err := login(ctx(t), f.current); err == nil {
				t.Error("the old password still logs in after Finish")
			}
			if u, err := login(ctx(t), pending); err != nil || u != f.user {
				t.Errorf("login(new) = %q, %v", u, err)
			}
			// An emergency Finish run twice is harmless too.
			for i := range 2 {
				if err := f.finish(pending, f.current, true, false); err != nil {
					t.Fatalf("emergency Finish #%d: %v", i+1, err)
				}
			}
			if u, err := login(ctx(t), pending); err != nil || u != f.user {
				t.Errorf("login(new) after emergency = %q, %v", u, err)
			}
		})
	}
}

// The emergency Finish also drops passwords the rotator never knew about
// (one added by hand, say, or leaked with the old one).
func TestEmergencyDropsEveryOtherPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t, rotators.StrategyAdmin, appRules)
	extra := newPassword(t)
	if err := f.rdb.ACLSetUser(context.Background(), f.user, "#"+sha(extra)).Err(); err != nil {
		t.Fatal(err)
	}
	pending := f.create()
	if err := f.set(pending); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := f.finish(pending, f.current, true, true); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	for name, v := range map[string]rotators.Value{"previous": f.current, "extra": value(f.user, extra)} {
		if _, err := login(ctx(t), v); err == nil {
			t.Errorf("the %s password still logs in after an emergency Finish", name)
		}
	}
	if _, err := login(ctx(t), pending); err != nil {
		t.Errorf("login(new) = %v", err)
	}
}

// A previous value that names another user is never touched by a normal
// Finish, and makes an emergency Finish fail loudly.
func TestFinishPreviousOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t, rotators.StrategyAdmin, appRules)
	other := createUser(t, f.rdb, testenv.Unique("rt_other_"), appRules)
	pending := f.create()
	if err := f.set(pending); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := f.finish(pending, other, false, false); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if _, err := login(ctx(t), other); err != nil {
		t.Errorf("a normal Finish touched the other user: %v", err)
	}
	err := f.finish(pending, other, true, false)
	noLeak(t, err, pending, other, f.admin)
	if err == nil || !strings.Contains(err.Error(), "by hand") {
		t.Errorf("emergency Finish with another user's previous value = %v; want an error", err)
	}
}

// Names Redis refuses get a clear error from the rotator, before anything
// reaches the server, and the server refuses them too (so nothing is lost).
func TestRefusedNames(t *testing.T) {
	t.Parallel()
	rdb := root(t)
	for _, name := range []string{"with space", "tab\tname", "new\nline", "cr\rx", "vt\vx", "ff\fx", "nul\x00x", " lead", "trail "} {
		name := name + testenv.Unique("_")
		err := redis.CheckUsername(name)
		if err == nil || !strings.Contains(err.Error(), "Redis refuses") || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("CheckUsername(%q) = %v; want a clear refusal naming the user", name, err)
		}
		srvErr := rdb.ACLSetUser(context.Background(), name, "off").Err()
		if srvErr == nil {
			_ = rdb.ACLDelUser(context.Background(), name).Err()
			t.Errorf("Redis accepted user name %q, which the rotator refuses", name)
		} else if !strings.Contains(srvErr.Error(), "can't contain spaces or null characters") {
			t.Errorf("Redis refused %q with %v; the rotator's explanation may be out of date", name, srvErr)
		}
		v := value(name, newPassword(t))
		cfg := config(rotators.StrategyAdmin, "admin")
		if _, err := (redis.Rotator{}).Create(context.Background(), rotators.CreateRequest{Config: cfg, Current: v}); err == nil || !strings.Contains(err.Error(), "Redis refuses") {
			t.Errorf("Create for user %q = %v; want the clear refusal", name, err)
		}
		if err := (redis.Rotator{}).Test(context.Background(), rotators.TestRequest{Config: cfg, Value: v}); err == nil || !strings.Contains(err.Error(), "Redis refuses") {
			t.Errorf("Test for user %q = %v; want the clear refusal", name, err)
		}
	}
	for _, name := range append(redisHostile, "", "x") {
		if err := redis.CheckUsername(name); err != nil {
			t.Errorf("CheckUsername(%q) = %v; Redis accepts it", name, err)
		}
	}
}

// go-redis with Username/Password fails the connection on a bad password:
// it never leaves the session running as "default". Login relies on it and
// checks ACL WHOAMI anyway.
func TestWrongPasswordFailsTheConnection(t *testing.T) {
	t.Parallel()
	rdb := root(t)
	user := testenv.Unique("rt_wrong_")
	good := createUser(t, rdb, user, appRules)
	if u, err := login(ctx(t), good); err != nil || u != user {
		t.Fatalf("login(good) = %q, %v", u, err)
	}
	wrong := value(user, sensitive.Bytes("not-the-password-"+testenv.Unique("")))
	u, err := login(ctx(t), wrong)
	if err == nil {
		t.Fatalf("login(wrong) succeeded as %q", u)
	}
	if !goredis.IsAuthError(err) {
		t.Errorf("login(wrong) = %v; want an auth error", err)
	}
	err = redis.Rotator{}.Test(ctx(t), rotators.TestRequest{Config: config(rotators.StrategyAdmin, "a"), Value: wrong})
	noLeak(t, err, wrong)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Test(wrong) = %v; want a refusal", err)
	}
	// A password for a user that does not exist is refused too, rather
	// than falling back to the password-less default user.
	if u, err := login(ctx(t), value(testenv.Unique("rt_nobody_"), newPassword(t))); err == nil {
		t.Errorf("login(no such user) succeeded as %q", u)
	}
}

func TestTestCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t, rotators.StrategyAdmin, appRules)
	for _, tc := range []struct {
		query string
		ok    bool
	}{
		{"", true},
		{"GET rt:probe", true},          // a nil reply is fine
		{"  GET   rt:probe  ", true},    // words separated by any spaces
		{"SET rt:probe x", false},       // a write: refused by ValidateConfig and Test
		{"GET other:key", false},        // outside the user's key pattern
		{"CONFIG GET maxmemory", false}, // not allowed to the user
		{"NOSUCHCOMMAND", false},
	} {
		cfg, _ := json.Marshal(map[string]string{"strategy": "admin", "admin_secret": "a", "test_query": tc.query})
		err := redis.Rotator{}.Test(ctx(t), rotators.TestRequest{Config: cfg, Value: f.current})
		noLeak(t, err, f.current)
		if (err == nil) != tc.ok {
			t.Errorf("Test with test_query %q = %v; want ok=%v", tc.query, err, tc.ok)
		}
	}
	_ = f.rdb.Del(context.Background(), "rt:probe").Err()
}

// Every call is bounded by the connect timeout and by ctx, even against a
// server that accepts and never answers.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); time.Sleep(3 * time.Second); c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	b, _ := json.Marshal(map[string]any{"engine": "redis", "host": "127.0.0.1", "port": port, "username": "u", "password": "p4ssw0rd-long-enough"})
	v := sensitive.Bytes(b)

	cfg := json.RawMessage(`{"connect_timeout":"300ms"}`)
	start := time.Now()
	err = redis.Rotator{}.Test(context.Background(), rotators.TestRequest{Config: cfg, Value: v})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("Test against a silent server = %v after %v; want an error within the 300ms timeout", err, time.Since(start))
	}
	noLeak(t, err, v)

	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = redis.Rotator{}.Set(c, rotators.SetRequest{Config: json.RawMessage(`{}`), Current: v, Pending: v})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("Set with a 200ms ctx = %v after %v; want an error when ctx ends", err, time.Since(start))
	}
}

// MONITOR shows every command the server runs; during whole rotations
// (normal and emergency, both strategies) no plaintext password shows up
// there, and the ACL LOG of a refused login holds none either.
func TestNoPlaintextOnTheServer(t *testing.T) {
	host, port := testAddr()
	mon, err := net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	if _, err := mon.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := mon.Read(buf)
			mu.Lock()
			log.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	var seen []rotators.Value
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategySingleUser} {
		f := newFixture(t, strategy, append(append([]string{}, appRules...), selfRules...))
		seen = append(seen, f.current, f.admin)
		for _, emergency := range []bool{false, true} {
			pending := f.create()
			seen = append(seen, pending)
			if err := f.set(pending); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if err := f.test(pending); err != nil {
				t.Fatalf("Test: %v", err)
			}
			if err := f.finish(pending, f.current, emergency, false); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			_ = f.test(f.current) // a refused login, for the ACL LOG
			f.current = pending
		}
	}
	time.Sleep(300 * time.Millisecond)
	mon.Close()
	<-done

	mu.Lock()
	text := log.String()
	mu.Unlock()
	// Redis 7 shows the AUTH/HELLO handshakes (redacted by the server) but
	// never admin commands such as ACL SETUSER.
	if !strings.Contains(strings.ToLower(text), `"auth" "(redacted)"`) {
		t.Fatalf("MONITOR saw none of the rotations; the check proves nothing:\n%.2000s", text)
	}
	aclLog := fmt.Sprint(root(t).Do(context.Background(), "ACL", "LOG").Val())
	for _, v := range seen {
		if _, pw := parse(v); pw != "" {
			if strings.Contains(text, pw) {
				t.Errorf("a plaintext password appears in the MONITOR stream")
			}
			if strings.Contains(aclLog, pw) {
				t.Errorf("a plaintext password appears in the ACL LOG")
			}
		}
	}
}

// privateRedis starts a Redis of the test's own that keeps its users in an
// aclfile, and stops it when the test ends.
func privateRedis(t *testing.T) (host string, port int, rdb *goredis.Client) {
	t.Helper()
	dir := t.TempDir()
	aclfile := filepath.Join(dir, "users.acl")
	if err := os.WriteFile(aclfile, []byte("user default on nopass ~* &* +@all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--aclfile", aclfile, "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (installed by scripts/services.sh): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb = goredis.NewClient(&goredis.Options{Addr: net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the private redis-server on port %d does not answer", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "127.0.0.1", port, rdb
}

// With an aclfile, every change is saved: reloading the file (what a
// restart does) keeps the new password and not the old one.
func TestChangesSurviveACLReload(t *testing.T) {
	t.Parallel()
	host, port, rdb := privateRedis(t)
	mkUser := func(name string, rules []string) rotators.Value {
		pw := newPassword(t)
		if err := rdb.ACLSetUser(context.Background(), name, append([]string{"reset", "on", "#" + sha(pw)}, rules...)...).Err(); err != nil {
			t.Fatal(err)
		}
		return valueAt(host, port, name, pw)
	}
	loginAt := func(v rotators.Value) error {
		user, pw := parse(v)
		c := goredis.NewClient(&goredis.Options{Addr: net.JoinHostPort(host, fmt.Sprint(port)), Username: user, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		defer c.Close()
		who, err := c.ACLWhoAmI(ctx(t)).Result()
		if err == nil && who != user {
			return fmt.Errorf("logged in as %q", who)
		}
		return err
	}
	reload := func() {
		if err := rdb.Do(context.Background(), "ACL", "LOAD").Err(); err != nil {
			t.Fatalf("ACL LOAD: %v", err)
		}
	}
	for _, emergency := range []bool{false, true} {
		f := &fixture{t: t, rdb: rdb, cfg: config(rotators.StrategyAdmin, "admin"), user: testenv.Unique("rt_file_")}
		f.current = mkUser(f.user, appRules)
		f.admin = mkUser(testenv.Unique("rt_admin_"), adminRules)
		pending := f.create()
		if err := f.set(pending); err != nil {
			t.Fatalf("Set: %v", err)
		}
		reload()
		if err := loginAt(pending); err != nil {
			t.Fatalf("after Set and a reload of the aclfile, the new password is refused: %v", err)
		}
		if err := f.finish(pending, f.current, emergency, false); err != nil {
			t.Fatalf("Finish: %v", err)
		}
		reload()
		if err := loginAt(pending); err != nil {
			t.Errorf("emergency=%v: after Finish and a reload, the new password is refused: %v", emergency, err)
		}
		if err := loginAt(f.current); err == nil {
			t.Errorf("emergency=%v: after Finish and a reload, the old password logs in again", emergency)
		}
	}

	// An admin that may not save gets a clear error rather than a change
	// that a restart would undo.
	f := &fixture{t: t, rdb: rdb, cfg: config(rotators.StrategyAdmin, "admin"), user: testenv.Unique("rt_file_")}
	f.current = mkUser(f.user, appRules)
	f.admin = mkUser(testenv.Unique("rt_admin_"), []string{"-@all", "+acl|getuser", "+acl|setuser"})
	pending := f.create()
	err := f.set(pending)
	noLeak(t, err, f.current, pending, f.admin)
	if err == nil || !strings.Contains(err.Error(), "+acl|save") {
		t.Errorf("Set by an admin without +acl|save = %v; want an error naming +acl|save", err)
	}
}

// TestSingleUserPasswordChangedBehindRotary: the user's password was
// changed on the server behind rotary's back. Set says that neither the
// current nor the pending password logs in (no value in the error); when
// instead only the pending one logs in (Set ran before and the old
// password was removed), Set has nothing left to do.
func TestSingleUserPasswordChangedBehindRotary(t *testing.T) {
	t.Parallel()
	f := newFixture(t, rotators.StrategySingleUser, append(append([]string{}, appRules...), selfRules...))
	pending := f.create()
	// Someone else sets a password rotary stores nowhere.
	other := newPassword(t)
	if err := f.rdb.ACLSetUser(context.Background(), f.user, "resetpass", "#"+sha(other)).Err(); err != nil {
		t.Fatal(err)
	}
	err := f.set(pending)
	noLeak(t, err, f.current, pending)
	var nw *rotators.NoWorkingCredentialError
	if !errors.As(err, &nw) || !errors.Is(err, rotators.ErrNoWorkingCredential) {
		t.Fatalf("Set with both stored passwords refused = %v; want a NoWorkingCredentialError", err)
	}
	if want := "user " + strconv.Quote(f.user); nw.Account != want || !strings.Contains(err.Error(), want) {
		t.Errorf("Set error %q names %q; want %q", err, nw.Account, want)
	}
	if f.test(pending) == nil {
		t.Error("the pending password logs in although Set could not log in")
	}
	// Negative control: with the pending password the only one, Set
	// finds it set and succeeds without changing anything.
	_, ppw := parse(pending)
	if err := f.rdb.ACLSetUser(context.Background(), f.user, "resetpass", "#"+sha(sensitive.Bytes(ppw))).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.set(pending); err != nil {
		t.Fatalf("Set when the pending password is already the user's = %v; want nil", err)
	}
	if err := f.test(pending); err != nil {
		t.Errorf("Test(pending) = %v", err)
	}
	if f.test(f.current) == nil {
		t.Error("the old password logs in again after the re-run Set")
	}
}
