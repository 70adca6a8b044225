package secrets_test

import (
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// TestNewRequiresAuditKey: a Service never writes an unkeyed audit record.
func TestNewRequiresAuditKey(t *testing.T) {
	t.Parallel()
	_, err := secrets.New(secrets.Config{Store: struct{ store.Store }{}, Keys: struct{ secrets.Keys }{}})
	if err == nil || !strings.Contains(err.Error(), "AuditKey") {
		t.Fatalf("secrets.New without AuditKey err = %v, want an error naming AuditKey", err)
	}
}
