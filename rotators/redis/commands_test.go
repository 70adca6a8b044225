package redis

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

var hostile = []string{
	`o'brien`, `back\slash`, `dq"uote`, `ünïcødé`, `semi;colon--`, `pct%_x`, `>pw`, `<pw`, `#hash`, `!hash`,
	`~*`, `+@all`, `&*`, `resetpass`, `nopass`, `on`, `reset`, `a b`, "nl\nx", `*`, `"`, `'`, `\`, ``,
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Every command carries the user name as exactly one argument, unchanged,
// and the password only as a SHA-256 hash: nothing is split, quoted or
// concatenated, whatever the name holds.
func TestCommandsWithHostileNames(t *testing.T) {
	pw := sensitive.Bytes("Plain-Text-Password_123")
	h := passwordHash(pw)
	if !hashRE.MatchString(h) {
		t.Fatalf("passwordHash = %q; want 64 lowercase hex digits (what ACL SETUSER takes)", h)
	}
	for _, name := range hostile {
		for _, tc := range []struct {
			cmd  []any
			want []string
		}{
			{cmdGetUser(name), []string{"ACL", "GETUSER", name}},
			{cmdAddPassword(name, h), []string{"ACL", "SETUSER", name, "#" + h}},
			{cmdRemovePassword(name, h), []string{"ACL", "SETUSER", name, "!" + h}},
			{cmdResetPasswords(name, h), []string{"ACL", "SETUSER", name, "resetpass", "#" + h}},
			{cmdKillSessions(name), []string{"CLIENT", "KILL", "USER", name, "SKIPME", "yes"}},
		} {
			if len(tc.cmd) != len(tc.want) {
				t.Errorf("%q: command %q has %d arguments, want %d", name, tc.cmd, len(tc.cmd), len(tc.want))
				continue
			}
			for i, a := range tc.cmd {
				s, ok := a.(string)
				if !ok || s != tc.want[i] {
					t.Errorf("%q: argument %d = %#v, want %q", name, i, a, tc.want[i])
				}
				if strings.Contains(s, string(pw)) {
					t.Errorf("%q: argument %d holds the plaintext password", name, i)
				}
			}
		}
	}
}

func TestPasswordHashVector(t *testing.T) {
	// printf %s 'pw1' | sha256sum
	if got, want := passwordHash([]byte("pw1")), "c592df4a86933b92addc9842402ddf198c638ea9be58916ee6e3734e1e3152f8"; got != want {
		t.Errorf("passwordHash(pw1) = %s, want %s", got, want)
	}
}

func mkValue(t *testing.T, m map[string]any) rotators.Value {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return sensitive.Bytes(b)
}

func TestParseValue(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"engine": "redis", "host": "db", "port": 6379, "username": "app", "password": "s3cret-value"}
	}
	c, err := parseValue(mkValue(t, base()), "current")
	if err != nil || c.user != "app" || c.addr() != "db:6379" || string(c.pw) != "s3cret-value" {
		t.Fatalf("parseValue = %+v, %v", c, err)
	}

	m := base()
	m["username"] = ""
	if c, err := parseValue(mkValue(t, m), "current"); err != nil || c.user != "default" {
		t.Errorf("empty username: user = %q, %v; want the default user", c.user, err)
	}
	m = base()
	delete(m, "engine")
	if _, err := parseValue(mkValue(t, m), "current"); err != nil {
		t.Errorf("no engine: %v; want it accepted", err)
	}
	m = base()
	m["host"] = "::1"
	if c, err := parseValue(mkValue(t, m), "current"); err != nil || c.addr() != "[::1]:6379" {
		t.Errorf("IPv6 host: addr = %q, %v", c.addr(), err)
	}

	for _, tc := range []struct {
		field string
		val   any
		want  string
	}{
		{"engine", "postgres", `engine "postgres"`},
		{"username", "has space", "Redis refuses"},
		{"sslmode", "prefer", "sslmode"},
		{"password", "", "password"},
		{"port", 0, "port"},
	} {
		m := base()
		m[tc.field] = tc.val
		_, err := parseValue(mkValue(t, m), "current")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%v: parseValue = %v; want an error mentioning %q", tc.field, tc.val, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret-value") {
			t.Errorf("%s=%v: error leaks the password: %v", tc.field, tc.val, err)
		}
	}
	if _, err := parseValue(sensitive.Bytes(`{"password":"s3cret-value",`), "current"); err == nil || strings.Contains(err.Error(), "s3cret-value") {
		t.Errorf("broken JSON: parseValue = %v; want an error without the password", err)
	}
	if _, err := parseValue(nil, "admin"); err == nil || !strings.Contains(err.Error(), "admin value is missing") {
		t.Errorf("missing admin value: %v", err)
	}
}

func TestOptions(t *testing.T) {
	c, err := parseValue(mkValue(t, map[string]any{"engine": "redis", "host": "db", "port": 6380, "username": "", "password": "s3cret-value", "sslmode": "verify-full"}), "current")
	if err != nil {
		t.Fatal(err)
	}
	o := options(c, 3*time.Second)
	if o.Addr != "db:6380" || o.Username != "default" || o.Password != "s3cret-value" {
		t.Errorf("options: addr %q user %q", o.Addr, o.Username)
	}
	if o.PoolSize != 1 || o.MaxRetries != -1 || !o.ContextTimeoutEnabled || o.DialTimeout != 3*time.Second || o.ReadTimeout != 3*time.Second {
		t.Errorf("options: pool %d retries %d ctx %v dial %v read %v; want one connection, no retries, bounded waits",
			o.PoolSize, o.MaxRetries, o.ContextTimeoutEnabled, o.DialTimeout, o.ReadTimeout)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "db" || o.TLSConfig.InsecureSkipVerify {
		t.Errorf("verify-full: TLS config %+v; want verification against host db", o.TLSConfig)
	}
	// Without sslmode: plaintext only to loopback, verified TLS elsewhere.
	for _, tc := range []struct {
		host, mode string
		wantTLS    bool
	}{{"db", "", true}, {"127.0.0.1", "", false}, {"db", "disable", false}, {"db", "require", true}, {"db", "verify-ca", true}} {
		c, err := tlsConfig(rotators.DBCredentials{Host: tc.host, SSLMode: tc.mode})
		if err != nil || (c != nil) != tc.wantTLS {
			t.Errorf("host %s sslmode %q: TLS %v, %v; want TLS %v", tc.host, tc.mode, c != nil, err, tc.wantTLS)
		}
	}
	for _, mode := range []string{"prefer", "allow", "bogus"} {
		if _, err := tlsConfig(rotators.DBCredentials{Host: "db", SSLMode: mode}); err == nil || !strings.Contains(err.Error(), "sslmode") {
			t.Errorf("sslmode %q: %v; want refused naming sslmode", mode, err)
		}
	}
}

func TestParseConfigTestCommand(t *testing.T) {
	for raw, want := range map[string]string{
		``:                                 "PING",
		`{}`:                               "PING",
		`{"test_query":"GET  app:health"}`: "GET|app:health",
		`{"test_query":"\tEXISTS k\n"}`:    "EXISTS|k",
	} {
		c, err := parseConfig(json.RawMessage(raw))
		if err != nil || strings.Join(c.testCommand, "|") != want {
			t.Errorf("parseConfig(%s).testCommand = %q, %v; want %q", raw, c.testCommand, err, want)
		}
	}
}
