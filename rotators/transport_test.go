package rotators

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/sensitive"
)

// TestCheckHostHostile: a host is one DNS name or IP address; nothing a
// driver could read as a socket path, several hosts or extra parameters.
func TestCheckHostHostile(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "::1", "[::1]", "localhost", "db.internal", "db-1.example.com", "my_db", "10.0.0.5"} {
		if err := CheckHost(h); err != nil {
			t.Errorf("CheckHost(%q) = %v; want it accepted", h, err)
		}
	}
	for _, h := range []string{
		"", "/var/run/postgresql", "/tmp", "@abstract", "db,evil", "db evil", "db' options='-c role=postgres", "db=x",
		"db?sslmode=disable", "db&x=y", "user@evil", "evil/db", "db\x00", "db:5432", "-db", ".db", "db\n", strings.Repeat("a", 254),
	} {
		err := CheckHost(h)
		if err == nil || !strings.Contains(err.Error(), `field "host"`) {
			t.Errorf("CheckHost(%q) = %v; want an error naming the host field", h, err)
		}
	}
}

func creds(host, mode string) DBCredentials {
	return DBCredentials{Engine: "postgres", Host: host, Port: 5432, Username: "app", Password: "canary-pw-8271", SSLMode: mode}
}

// TestCheckTransport: plaintext only to loopback, unless allow_plaintext.
func TestCheckTransport(t *testing.T) {
	for _, tc := range []struct {
		c    DBCredentials
		want error // nil: accepted
	}{
		{creds("127.0.0.1", ""), nil},
		{creds("localhost", "disable"), nil},
		{creds("::1", "prefer"), nil},
		{creds("db.internal", ""), nil}, // verify-full by default
		{creds("db.internal", "verify-full"), nil},
		{creds("db.internal", "require"), nil},
		{creds("db.internal", "disable"), ErrPlaintext},
		{creds("10.1.2.3", "allow"), ErrPlaintext},
		{creds("10.1.2.3", "prefer"), ErrPlaintext},
		{creds("10.1.2.3", "disabled"), ErrPlaintext}, // MySQL spelling
		{creds("128.0.0.1", "disable"), ErrPlaintext},
	} {
		err := tc.c.CheckTransport()
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("CheckTransport(host %s, sslmode %q) = %v; want %v", tc.c.Host, tc.c.SSLMode, err, tc.want)
		}
		if err != nil && (!strings.Contains(err.Error(), tc.c.Host) || !strings.Contains(err.Error(), "verify-full") || strings.Contains(err.Error(), "canary-pw")) {
			t.Errorf("CheckTransport error %q: want the host and the fix named, no password", err)
		}
	}
	c := creds("10.1.2.3", "disable")
	c.AllowPlaintext = true
	if err := c.CheckTransport(); err != nil {
		t.Errorf("allow_plaintext: %v", err)
	}
	for _, bad := range []DBCredentials{
		{Host: "db", SSLMode: "verify-everything"},
		{Host: "127.0.0.1", SSLMode: "disable", SSLRootCert: "/ca.pem"},
		{Host: "db", SSLMode: "verify-full", SSLCert: "/c.pem"},
		{Host: "db", SSLMode: "verify-full", TLSServerName: "a b"},
	} {
		if err := bad.CheckTransport(); err == nil || !strings.Contains(err.Error(), "field") {
			t.Errorf("CheckTransport(%+v) = %v; want an error naming the field", bad, err)
		}
	}
}

// TestParseDBCredentialsChecksTarget: the host and transport checks run
// on every value a rotator reads; field type errors name the field.
func TestParseDBCredentialsChecksTarget(t *testing.T) {
	for v, want := range map[string]string{
		`{"host":"/run/postgresql","port":5432,"username":"app","password":"canary-pw-8271"}`:                      `field "host"`,
		`{"host":"10.0.0.1","port":5432,"username":"app","password":"canary-pw-8271","sslmode":"disable"}`:         "plaintext",
		`{"host":"db","port":5432,"username":"app","password":"canary-pw-8271","sslmode":"nope"}`:                  `field "sslmode"`,
		`{"host":"db","port":5432,"username":"app","password":"canary-pw-8271","allow_plaintext":"yes"}`:           `field "allow_plaintext"`,
		`{"host":"127.0.0.1 port=1","port":5432,"username":"app","password":"canary-pw-8271","sslmode":"disable"}`: `field "host"`,
	} {
		_, err := ParseDBCredentials(sensitive.Bytes(v))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "canary-pw") {
			t.Errorf("ParseDBCredentials(%s) = %v; want an error with %q and no password", v, err, want)
		}
	}
}

// TestTLSConfig: the CA file is read and verified; a missing or non-PEM
// file is refused naming the field.
func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := creds("db.internal", "verify-full")
	tc, err := c.TLSConfig()
	if err != nil || tc == nil || tc.InsecureSkipVerify || tc.ServerName != "db.internal" || tc.RootCAs != nil {
		t.Fatalf("verify-full without sslrootcert: %+v, %v; want system roots, ServerName db.internal", tc, err)
	}
	c.TLSServerName = "pg.example.com"
	if tc, _ := c.TLSConfig(); tc.ServerName != "pg.example.com" {
		t.Errorf("tls_server_name: ServerName %q", tc.ServerName)
	}
	c.SSLRootCert = filepath.Join(dir, "missing.pem")
	if _, err := c.TLSConfig(); err == nil || !strings.Contains(err.Error(), `field "sslrootcert"`) {
		t.Errorf("missing CA file: %v", err)
	}
	c.SSLRootCert = junk
	if _, err := c.TLSConfig(); err == nil || !strings.Contains(err.Error(), `field "sslrootcert"`) {
		t.Errorf("non-PEM CA file: %v", err)
	}
	ca := creds("db", "verify-ca")
	if tc, err := ca.TLSConfig(); err != nil || !tc.InsecureSkipVerify || tc.VerifyConnection == nil {
		t.Errorf("verify-ca: %+v, %v; want the chain verified by VerifyConnection", tc, err)
	}
	if tc, err := creds("db", "disable").TLSConfig(); err != nil || tc != nil {
		t.Errorf("disable: %v, %v; want no TLS", tc, err)
	}
}

// TestCheckSQLTestQuery: one read-only statement; anything else is refused
// with ErrTestQuery.
func TestCheckSQLTestQuery(t *testing.T) {
	for _, q := range []string{
		"", "SELECT 1", "select 1;", "SELECT 1 ; -- done", "  /* c */ SELECT 'a;b', \"x;y\", `z;w`", "WITH a AS (SELECT 1) SELECT * FROM a",
		"VALUES (1)", "TABLE app.health", "SHOW server_version", "SELECT $$;$$", "SELECT $q$ ; DROP $q$", "SELECT 'it''s;'",
		"(SELECT 1)", "SELECT $1", "SELECT count(*) FROM pg_catalog.pg_class",
	} {
		if err := CheckSQLTestQuery(q); err != nil {
			t.Errorf("CheckSQLTestQuery(%q) = %v; want it accepted", q, err)
		}
	}
	for _, q := range []string{
		"DROP TABLE x", "SELECT 1; DROP TABLE x", "SELECT 1;DROP TABLE x;", "CREATE TABLE x (a int)", "DELETE FROM x",
		"UPDATE x SET a = 1", "INSERT INTO x VALUES (1)", "SET ROLE postgres", "ALTER ROLE app PASSWORD 'x'", "GRANT ALL ON x TO y",
		"SELECT 'a\\'; DROP TABLE x; -- '", "SELECT 1 /* unterminated", "SELECT 'unterminated", "SELECT 1 INTO OUTFILE '/tmp/x'",
		"SELECT 1 INTO DUMPFILE '/tmp/x'", "CALL p()", "DO $$ BEGIN END $$", "COPY x TO PROGRAM 'id'", "-- only a comment", ";",
		"START TRANSACTION READ WRITE", "COMMIT", "SELECT 1; COMMIT",
	} {
		if err := CheckSQLTestQuery(q); !errors.Is(err, ErrTestQuery) || !strings.Contains(err.Error(), "test_query") {
			t.Errorf("CheckSQLTestQuery(%q) = %v; want ErrTestQuery naming test_query", q, err)
		}
	}
}

func FuzzCheckSQLTestQuery(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SELECT 1; DROP TABLE x", "SELECT $a$;$a$", "SELECT '", "/*", "--\n;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		err := CheckSQLTestQuery(q)
		if err == nil && strings.TrimSpace(q) != "" {
			// Whatever it accepts starts with a read-only keyword.
			up := strings.ToUpper(q)
			ok := false
			for k := range readOnlyKeywords {
				if strings.Contains(up, k) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("accepted %q without a read-only keyword", q)
			}
		}
	})
}
