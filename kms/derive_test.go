package kms

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/sensitive"
)

// TestDeriveKeyVectors pins HKDF-SHA-256(root, no salt, label): changing
// it orphans every audit log and checkpoint made under a root key.
func TestDeriveKeyVectors(t *testing.T) {
	t.Parallel()
	root := make(sensitive.Bytes, RootKeySize)
	for i := range root {
		root[i] = byte(i)
	}
	for label, want := range map[string]string{
		LabelAuditChain:      "a08c3708f089bc94b9cc2417c3c4f067b5e2d7a76b5f9f6011f10a9b13ab575f",
		LabelAuditCheckpoint: "69f81677568e2f9b4aa698d1d6505793f52ec2cab066cb5d78e376519703dedb",
	} {
		k, err := DeriveKey(root, label)
		if err != nil {
			t.Fatalf("DeriveKey(%q) err = %v", label, err)
		}
		if got := hex.EncodeToString(k.Reveal()); got != want {
			t.Errorf("DeriveKey(%q) = %s, want %s", label, got, want)
		}
	}
}

func TestDeriveKeyInvalid(t *testing.T) {
	t.Parallel()
	canary := sensitive.Bytes("CANARY-root-key-0123456789abcdef"[:31])
	_, err := DeriveKey(canary, LabelAuditChain)
	if !errors.Is(err, ErrInvalidArgument) || strings.Contains(err.Error(), "CANARY") {
		t.Errorf("DeriveKey(31-byte root) err = %v, want ErrInvalidArgument without the key", err)
	}
	_, err = DeriveKey(make(sensitive.Bytes, RootKeySize), "")
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("DeriveKey(empty label) err = %v, want ErrInvalidArgument", err)
	}
}
