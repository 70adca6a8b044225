package secrets_test

import (
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
)

// auditKey derives the audit chain key from root as the daemon does.
func auditKey(t testing.TB, root []byte) audit.Key {
	t.Helper()
	b, err := kms.DeriveKey(sensitive.Bytes(root), kms.LabelAuditChain)
	if err != nil {
		t.Fatal(err)
	}
	k, err := audit.NewKey(b.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNewRequiresAuditKey: a Service never writes an unkeyed audit record.
func TestNewRequiresAuditKey(t *testing.T) {
	t.Parallel()
	_, err := secrets.New(secrets.Config{Store: struct{ store.Store }{}, Keys: struct{ secrets.Keys }{}})
	if err == nil || !strings.Contains(err.Error(), "AuditKey") {
		t.Fatalf("secrets.New without AuditKey err = %v, want an error naming AuditKey", err)
	}
}
