package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

// TestTargetNamesWhatTheRotatorConnectsTo: the engine's spellings and the
// default database are normalized as the rotator connects; another engine
// is reported as the engine field (not refused), so the mismatch names it.
func TestTargetNamesWhatTheRotatorConnectsTo(t *testing.T) {
	get := func(v, cfg string) rotators.Target {
		t.Helper()
		tg, err := New().Target(context.Background(), rotators.TargetRequest{SecretType: SecretType, Config: []byte(cfg), Value: rotators.Value(v)})
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	a := get(`{"host":"h","port":5432,"username":"app","password":"p"}`, `{}`)
	b := get(`{"engine":"postgresql","host":"h","port":5432,"username":"app","password":"p","dbname":"postgres"}`, `{}`)
	if !a.Equal(b) || a.String() != `engine="postgres" host="h" port="5432" dbname="postgres" username="app" sslmode="verify-full"` {
		t.Errorf("targets %s and %s, want equal", a, b)
	}
	m := get(`{"engine":"mysql","host":"h","port":5432,"username":"app","password":"p"}`, `{}`)
	if err := a.Check(m, "the current version", false); err == nil || !strings.Contains(err.Error(), `field "engine" is "mysql"`) {
		t.Errorf("Check(mysql) = %v", err)
	}
}
