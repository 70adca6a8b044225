package rotators

import (
	"errors"
	"strings"
	"testing"
)

func TestDBTargetAndCheck(t *testing.T) {
	c := DBCredentials{Engine: "postgres", Host: "db", Port: 5432, DBName: "app", Username: "app", Password: "pw"}
	single := DBTarget(DBConfig{Strategy: StrategyAdmin}, c, "")
	if got := single.String(); got != `engine="postgres" host="db" port="5432" dbname="app" username="app" sslmode="verify-full"` {
		t.Errorf("target = %s", got)
	}
	pair := DBTarget(DBConfig{Strategy: StrategyAlternating}, c, "")
	if f, _ := pair.Field("username"); f.Value != "app" || len(f.Or) != 1 || f.Or[0] != "app_b" {
		t.Errorf("alternating username field = %+v, want app or app_b", f)
	}
	// Bound after the pair was used: the previous user is the other one.
	if f, _ := DBTarget(DBConfig{Strategy: StrategyAlternating}, DBCredentials{Username: "app_b"}, "app").Field("username"); f.Value != "app_b" || len(f.Or) != 1 || f.Or[0] != "app" {
		t.Errorf("alternating username field bound on app_b = %+v, want app_b or app", f)
	}

	other := c
	other.Username = "app_b"
	if err := pair.Check(DBTarget(DBConfig{}, other, ""), "the pending version", false); err != nil {
		t.Errorf("the pair's other user was refused: %v", err)
	}
	err := single.Check(DBTarget(DBConfig{}, other, ""), "the pending version", false)
	if !errors.Is(err, ErrTargetMismatch) || !strings.Contains(err.Error(), `field "username" is "app_b" in the pending version, the rotation is bound to "app"`) {
		t.Errorf("Check(other user) = %v", err)
	}
	third := c
	third.Username = "postgres"
	if err := pair.Check(DBTarget(DBConfig{}, third, ""), "the current version", false); err == nil ||
		!strings.Contains(err.Error(), `bound to "app" or "app_b"`) {
		t.Errorf("Check(third user) = %v", err)
	}
	// The admin value: only the server counts.
	admin := DBCredentials{Engine: "postgres", Host: "db", Port: 5432, DBName: "postgres", Username: "root"}
	if err := single.Check(DBTarget(DBConfig{}, admin, ""), "the admin value", true); err != nil {
		t.Errorf("an admin on the same server was refused: %v", err)
	}
	admin.Port = 5433
	if err := single.Check(DBTarget(DBConfig{}, admin, ""), "the admin value", true); err == nil || !strings.Contains(err.Error(), `field "port" is "5433" in the admin value`) {
		t.Errorf("Check(admin on another port) = %v", err)
	}
	// A field the binding does not have, or lacks, is a mismatch too.
	if err := single.Check(append(DBTarget(DBConfig{}, c, ""), TargetField{Name: "region", Value: "x"}), "v", false); err == nil {
		t.Error("an extra identity field was accepted")
	}
	if err := single.Check(single[:2], "v", false); err == nil || !strings.Contains(err.Error(), `field "port" is missing`) {
		t.Errorf("a missing field: %v", err)
	}
	if !single.Equal(DBTarget(DBConfig{Strategy: StrategyAdmin}, c, "")) || single.Equal(pair) {
		t.Error("Equal is wrong")
	}
	// The pair bound on either user is the same target; another pair is not.
	swapped := DBTarget(DBConfig{Strategy: StrategyAlternating}, other, "app")
	if !pair.Same(swapped) || pair.Equal(swapped) {
		t.Errorf("Same(%s, %s) = false, want true", pair, swapped)
	}
	if pair.Same(DBTarget(DBConfig{Strategy: StrategyAlternating, AlternateUsername: "app_c"}, c, "")) || pair.Same(single) {
		t.Error("Same accepted another pair or a single user")
	}
}

func TestDBTargetBindsTransport(t *testing.T) {
	bound := DBCredentials{Engine: "postgres", Host: "db.internal", Port: 5432, Username: "app", DBName: "app",
		SSLMode: "verify-full", SSLRootCert: "/etc/rotary/ca.pem"}
	target := DBTarget(DBConfig{}, bound, "")
	if err := target.Check(DBTarget(DBConfig{}, bound, ""), "the pending version", false); err != nil {
		t.Fatalf("Check(same value) = %v, want nil", err)
	}
	for _, tc := range []struct {
		field  string
		change func(*DBCredentials)
	}{
		{"sslmode", func(c *DBCredentials) { c.SSLMode = "require" }},
		{"sslmode", func(c *DBCredentials) { c.SSLMode = "disable"; c.AllowPlaintext = true }},
		{"sslrootcert", func(c *DBCredentials) { c.SSLRootCert = "/etc/ssl/certs/evil.pem" }},
		{"sslcert", func(c *DBCredentials) { c.SSLCert = "/var/lib/rotary/root.key" }},
		{"tls_server_name", func(c *DBCredentials) { c.TLSServerName = "evil.example" }},
	} {
		v := bound
		tc.change(&v)
		err := target.Check(DBTarget(DBConfig{}, v, ""), "the pending version", false)
		if err == nil || !strings.Contains(err.Error(), `field "`+tc.field+`"`) {
			t.Errorf("Check(%s changed) = %v, want a mismatch naming %q", tc.field, err, tc.field)
		}
	}
	// The admin value is compared on the server fields only: its own
	// client certificate may differ.
	admin := bound
	admin.Username, admin.SSLCert, admin.SSLKey = "admin", "/etc/rotary/admin.crt", "/etc/rotary/admin.key"
	if err := target.Check(DBTarget(DBConfig{}, admin, ""), "the admin value", true); err != nil {
		t.Errorf("Check(admin value with its own client certificate) = %v, want nil", err)
	}
}
