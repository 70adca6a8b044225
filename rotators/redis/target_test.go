package redis_test

import (
	"context"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/redis"
)

// TestTargetNamesTheUserTheRotatorUses: an empty username is the default
// user, so a value naming it cannot pass for the bound user; dbname
// selects nothing the rotator touches.
func TestTargetNamesTheUserTheRotatorUses(t *testing.T) {
	get := func(v string) rotators.Target {
		t.Helper()
		tg, err := redis.Rotator{}.Target(context.Background(), rotators.TargetRequest{
			SecretType: redis.SecretType, Config: []byte(`{"strategy":"admin","admin_secret":"a"}`), Value: rotators.Value(v),
		})
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	bound := get(`{"engine":"redis","host":"127.0.0.1","port":6379,"username":"app","password":"p","dbname":"1"}`)
	if got := bound.String(); got != `engine="redis" host="127.0.0.1" port="6379" username="app" sslmode="disable"` {
		t.Errorf("target = %s", got)
	}
	deflt := get(`{"engine":"redis","host":"127.0.0.1","port":6379,"username":"","password":"p"}`)
	if err := bound.Check(deflt, "the current version", false); err == nil || err.Error() !=
		`target mismatch: field "username" is "default" in the current version, the rotation is bound to "app"` {
		t.Errorf("Check(default user) = %v", err)
	}
}
