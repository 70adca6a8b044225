package kms

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/rotary-secrets/rotary/sensitive"
)

// Labels of the keys other packages derive from the root key with
// DeriveKey. A label is part of the key's identity: changing one changes
// every key derived with it.
const (
	// LabelAuditChain derives the HMAC key of the audit hash chain.
	LabelAuditChain = "rotary audit chain v2"
	// LabelAuditCheckpoint derives the Ed25519 seed that signs audit
	// checkpoints.
	LabelAuditCheckpoint = "rotary audit checkpoint v1"
	// LabelHookSecrets derives the AES-256-GCM key that seals webhook
	// hooks' signing secrets in the store.
	LabelHookSecrets = "rotary hook signing secrets v1"
)

// DeriveKey returns a 32-byte key for one purpose, named by label, derived
// from the root key with HKDF-SHA-256 (no salt, label as the info). Keys
// derived with different labels are independent, and none reveals the root
// key or another derived key. The root key must be RootKeySize bytes; the
// error never holds key material.
func DeriveKey(root sensitive.Bytes, label string) (sensitive.Bytes, error) {
	if root.Len() != RootKeySize {
		return nil, fmt.Errorf("%w: derive key %q: root key is %d bytes, want %d", ErrInvalidArgument, label, root.Len(), RootKeySize)
	}
	if label == "" {
		return nil, fmt.Errorf("%w: derive key: empty label", ErrInvalidArgument)
	}
	k, err := hkdf.Key(sha256.New, root.Reveal(), nil, label, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key %q: %w", label, err)
	}
	return sensitive.Bytes(k), nil
}
