package mysql

import (
	"context"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

// TestTargetNamesTheAccount: the identity is the value's server, database
// and user; for alternating the pair's other user is allowed too.
func TestTargetNamesTheAccount(t *testing.T) {
	tg, err := New().Target(context.Background(), rotators.TargetRequest{
		SecretType: SecretType, Config: []byte(`{"strategy":"alternating","admin_secret":"a","account_host":"%"}`),
		Value: rotators.Value(`{"host":"127.0.0.1","port":3306,"username":"app","password":"p","dbname":"test"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tg.String(); got != `engine="mysql" host="127.0.0.1" port="3306" dbname="test" username="app"|"app_b" sslmode="disable"` {
		t.Errorf("target = %s", got)
	}
}
