package postgres

import "testing"

func TestDSNHostPort(t *testing.T) {
	for _, c := range []struct{ dsn, host, port string }{
		{"postgres://rotary:pw@db.internal:6432/rotary?sslmode=verify-full", "db.internal", "6432"},
		{"postgresql://rotary@[::1]/rotary", "::1", ""},
		{"postgres:///rotary?host=/run/postgresql&port=5433", "/run/postgresql", "5433"},
		{"host=db.internal port=5433 user=rotary password='a b\\'c' dbname=rotary", "db.internal", "5433"},
		{"dbname=rotary host = '/var/run/my sock'", "/var/run/my sock", ""},
		{"dbname=rotary", "", ""},
	} {
		h, p := dsnHostPort(c.dsn)
		if h != c.host || p != c.port {
			t.Errorf("dsnHostPort(%q) = %q, %q; want %q, %q", c.dsn, h, p, c.host, c.port)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"rotary":         "rotary",
		"db.internal":    "db.internal",
		"my schema":      "'my schema'",
		"it's":           `'it'\''s'`,
		"$(rm -rf /)":    "'$(rm -rf /)'",
		"/run/postgres/": "/run/postgres/",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
