package kms

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// FingerprintPrefix starts every fingerprint.
const FingerprintPrefix = "hmac-sha256:"

// Fingerprint returns a keyed fingerprint of a secret value, for telling
// versions apart and spotting reuse without storing anything an attacker
// could brute-force offline (a plain hash of a low-entropy password could
// be). It is "hmac-sha256:" and the 64 hex digits of
//
//	HMAC-SHA-256(region fingerprint key, len(type) ‖ type ‖ len(value) ‖ value)
//
// with lengths as big-endian uint32 and uint64, so the boundary between
// type and value is unambiguous. The same value of the same type in the
// same region always has the same fingerprint; in another region, or as
// another type, it has an unrelated one. The region must exist.
func (m *Manager) Fingerprint(ctx context.Context, region, secretType string, value []byte) (string, error) {
	if err := validateRegion(region); err != nil {
		return "", err
	}
	key, err := m.regionKey(ctx, region)
	if err != nil {
		return "", err
	}
	h := hmac.New(sha256.New, key)
	var n [8]byte
	h.Write(binary.BigEndian.AppendUint32(n[:0], uint32(len(secretType))))
	h.Write([]byte(secretType))
	h.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(value))))
	h.Write(value)
	return FingerprintPrefix + hex.EncodeToString(h.Sum(nil)), nil
}
