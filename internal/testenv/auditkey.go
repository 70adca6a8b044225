package testenv

import (
	"testing"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/sensitive"
)

// AuditKey derives the audit chain key from a root key as the daemon does
// (daemon.auditKeys), for tests that build a secrets.Service themselves.
func AuditKey(t testing.TB, root []byte) audit.Key {
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
