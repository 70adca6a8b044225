package rotation_test

import (
	"testing"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/sensitive"
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
