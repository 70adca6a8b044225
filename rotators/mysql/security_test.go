package mysql

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// TestDriverConfigTLS: each sslmode becomes the driver's TLS settings;
// the verifying modes carry the CA of sslrootcert and never fall back to
// plaintext.
func TestDriverConfigTLS(t *testing.T) {
	ca := rotatortest.NewCA(t)
	base := rotators.DBCredentials{Host: "db.internal", Port: 3306, Username: "app", Password: "canary-pw-3313"}
	for _, tc := range []struct {
		mode, rootcert, serverName string
		wantName                   string // TLSConfig name when no *tls.Config
		wantVerify                 bool   // Go's own verification (name and chain)
		wantChainOnly              bool
	}{
		{mode: "disable", wantName: "false"},
		{mode: "allow", wantName: "false"},
		{mode: "prefer", wantName: "preferred"},
		{mode: "require"},
		{mode: "verify-ca", rootcert: ca.File, wantChainOnly: true},
		{mode: "verify-full", rootcert: ca.File, wantVerify: true},
		{mode: "verify-full", rootcert: ca.File, serverName: "mysql.example.com", wantVerify: true},
		{mode: "", wantVerify: true}, // remote host without sslmode: verify-full
	} {
		c := base
		c.SSLMode, c.SSLRootCert, c.TLSServerName = tc.mode, tc.rootcert, tc.serverName
		if rotators.Plaintext(mustMode(t, c)) {
			c.AllowPlaintext = true
		}
		mc, err := driverConfig(c, time.Second)
		if err != nil {
			t.Fatalf("sslmode %q: %v", tc.mode, err)
		}
		if tc.wantName != "" {
			if mc.TLS != nil || mc.TLSConfig != tc.wantName {
				t.Errorf("sslmode %q: TLS %v, TLSConfig %q; want %q", tc.mode, mc.TLS, mc.TLSConfig, tc.wantName)
			}
			continue
		}
		if mc.TLS == nil || mc.AllowFallbackToPlaintext {
			t.Fatalf("sslmode %q: TLS %v, fallback %v; want TLS, never plaintext", tc.mode, mc.TLS, mc.AllowFallbackToPlaintext)
		}
		if tc.rootcert != "" && mc.TLS.RootCAs == nil {
			t.Errorf("sslmode %q: no RootCAs from sslrootcert", tc.mode)
		}
		want := cmpOr(tc.serverName, base.Host)
		switch {
		case tc.wantVerify && (mc.TLS.InsecureSkipVerify || mc.TLS.ServerName != want):
			t.Errorf("sslmode %q: InsecureSkipVerify %v ServerName %q; want verification of %q", tc.mode, mc.TLS.InsecureSkipVerify, mc.TLS.ServerName, want)
		case tc.wantChainOnly && (!mc.TLS.InsecureSkipVerify || mc.TLS.VerifyConnection == nil):
			t.Errorf("sslmode %q: want the chain verified by VerifyConnection", tc.mode)
		case !tc.wantVerify && !tc.wantChainOnly && !mc.TLS.InsecureSkipVerify:
			t.Errorf("sslmode %q: want encryption without verification", tc.mode)
		}
	}
}

func mustMode(t *testing.T, c rotators.DBCredentials) string {
	m, err := c.Mode()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestHostileFieldValues: field values that a DSN built by concatenation
// would read as more parameters or another host are refused (host) or
// kept verbatim in the driver's config (user, password, dbname).
func TestHostileFieldValues(t *testing.T) {
	for _, host := range []string{"127.0.0.1)/x?tls=false&allowCleartextPasswords=true", "/var/run/mysqld/mysqld.sock", "evil@127.0.0.1", "127.0.0.1:3307"} {
		v, _ := json.Marshal(map[string]any{"engine": "mysql", "host": host, "port": 3306, "username": "app", "password": "canary-pw-3313"})
		_, err := parseValue("current", sensitive.Bytes(v))
		if err == nil || !strings.Contains(err.Error(), `field "host"`) || strings.Contains(err.Error(), "canary-pw") {
			t.Errorf("host %q: %v; want refused naming the host field", host, err)
		}
	}
	c := rotators.DBCredentials{Host: "127.0.0.1", Port: 3306, Username: "u@x/y?z=1&tls=false", Password: "p@ss/w?rd=&'", DBName: "d?tls=false&x=y"}
	mc, err := driverConfig(c, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if mc.User != c.Username || mc.Passwd != c.Password || mc.DBName != c.DBName || mc.Addr != "127.0.0.1:3306" || mc.TLSConfig != "false" ||
		mc.MultiStatements || mc.AllowCleartextPasswords || len(mc.Params) != 0 {
		t.Errorf("driverConfig kept hostile values badly: user %q db %q addr %q tls %q multi %v cleartext %v params %v",
			mc.User, mc.DBName, mc.Addr, mc.TLSConfig, mc.MultiStatements, mc.AllowCleartextPasswords, mc.Params)
	}
}

// TestRollbackAlternating: the other user's pending password stops
// working after Rollback; the current user keeps working; a pending user
// outside the pair is refused and untouched.
func TestRollbackAlternating(t *testing.T) {
	e := newEnv(t)
	user := testenv.Unique("rt_rb_")
	alt := user + "_b"
	current := e.createUser(t, user, nil, alt)
	cfg, _ := json.Marshal(map[string]string{"strategy": "alternating", "admin_secret": "a", "alternate_username": alt})
	r := New()
	resp, err := r.Create(ctx(t), rotators.CreateRequest{Config: cfg, Current: current})
	if err != nil {
		t.Fatal(err)
	}
	pending := resp.Value
	if err := r.Set(ctx(t), rotators.SetRequest{Config: cfg, Current: current, Pending: pending, Admin: e.admin}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if who, err := login(ctx(t), pending); err != nil || who != alt {
		t.Fatalf("pending after Set: %q, %v", who, err)
	}
	for i := range 2 {
		if err := r.Rollback(ctx(t), rotators.RollbackRequest{Config: cfg, Current: current, Pending: pending, Admin: e.admin}); err != nil {
			t.Fatalf("Rollback #%d: %v", i+1, err)
		}
	}
	if _, err := login(ctx(t), pending); err == nil {
		t.Fatalf("the pending password of %s still logs in after Rollback", alt)
	}
	if who, err := login(ctx(t), current); err != nil || who != user {
		t.Fatalf("current after Rollback: %q, %v", who, err)
	}
	canaryUser := testenv.Unique("rt_rbc_")
	canary := e.createUser(t, canaryUser, nil)
	hostile, _ := rotators.WithCredentials(pending, canaryUser, sensitive.Bytes("x"))
	if err := r.Rollback(ctx(t), rotators.RollbackRequest{Config: cfg, Current: current, Pending: hostile, Admin: e.admin}); !errors.Is(err, rotators.ErrWrongIdentity) {
		t.Fatalf("Rollback of a user outside the pair = %v; want ErrWrongIdentity", err)
	}
	if who, err := login(ctx(t), canary); err != nil || who != canaryUser {
		t.Fatalf("the canary's password changed: %q, %v", who, err)
	}
}
