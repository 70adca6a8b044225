package kms

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
)

// FormatV1 is the envelope format this package writes (and the only one it
// reads so far).
const FormatV1 byte = 1

// Kind says what an envelope protects, and so which operation opens it.
type Kind byte

// Envelope kinds.
const (
	// KindSecret: a secret version's value, made by Seal, opened by Open.
	KindSecret Kind = 1
	// KindData: application data, made by Encrypt or GenerateDataKey,
	// opened by Decrypt.
	KindData Kind = 2
)

// Sizes of the v1 envelope's fixed fields.
const (
	nonceSize      = 12
	tagSize        = 16
	wrappedKeySize = nonceSize + RootKeySize + tagSize // 60
	maxKeyIDLen    = 64
)

// ErrMalformedEnvelope is returned by ParseEnvelope for bytes that are not a
// well-formed envelope. Open and Decrypt never return it: they return
// ErrDecrypt for every failure.
var ErrMalformedEnvelope = errors.New("kms: malformed envelope")

// EnvelopeHeader is the public part of an envelope: what it is and which
// master key version wraps its data key.
type EnvelopeHeader struct {
	Format     byte
	Kind       Kind
	KeyID      string
	KeyVersion int
}

// ParseEnvelope reads an envelope's header without decrypting anything, so
// callers can find, for example, the values still wrapped by an old key
// version. A successful parse says nothing about authenticity.
func ParseEnvelope(b []byte) (EnvelopeHeader, error) {
	e, ok := parseEnvelope(b)
	if !ok {
		return EnvelopeHeader{}, ErrMalformedEnvelope
	}
	return e.header(), nil
}

// envelope is a parsed envelope. Its slices alias the parsed bytes.
type envelope struct {
	kind       Kind
	keyID      string
	keyVersion uint32
	wrappedKey []byte // nonce || sealed data key || tag
	nonce      []byte
	ciphertext []byte // sealed value || tag
}

func (e *envelope) header() EnvelopeHeader {
	return EnvelopeHeader{Format: FormatV1, Kind: e.kind, KeyID: e.keyID, KeyVersion: int(e.keyVersion)}
}

// parseEnvelope parses the v1 format (see doc.go). It accepts exactly one
// encoding of each envelope: every field has a fixed or explicit length,
// the key id must be a valid key id and nothing may trail the ciphertext's
// tag except the ciphertext itself.
func parseEnvelope(b []byte) (envelope, bool) {
	var e envelope
	if len(b) < 3 || b[0] != FormatV1 {
		return e, false
	}
	e.kind = Kind(b[1])
	if e.kind != KindSecret && e.kind != KindData {
		return e, false
	}
	n := int(b[2])
	b = b[3:]
	if n < 1 || n > maxKeyIDLen || len(b) < n+4+wrappedKeySize+nonceSize+tagSize {
		return e, false
	}
	e.keyID = string(b[:n])
	if !isKeyID(e.keyID) {
		return e, false
	}
	b = b[n:]
	e.keyVersion = binary.BigEndian.Uint32(b)
	if e.keyVersion == 0 {
		return e, false
	}
	b = b[4:]
	e.wrappedKey, b = b[:wrappedKeySize], b[wrappedKeySize:]
	e.nonce, e.ciphertext = b[:nonceSize], b[nonceSize:]
	return e, true
}

// appendHeader appends everything before the wrapped data key.
func appendHeader(dst []byte, kind Kind, keyID string, keyVersion uint32) []byte {
	dst = append(dst, FormatV1, byte(kind), byte(len(keyID)))
	dst = append(dst, keyID...)
	return binary.BigEndian.AppendUint32(dst, keyVersion)
}

// envelopeSize is the length of a v1 envelope for a plaintext of n bytes.
func envelopeSize(keyID string, n int) int {
	return 3 + len(keyID) + 4 + wrappedKeySize + nonceSize + n + tagSize
}

// Additional authenticated data. Every AAD starts with a fixed domain label
// so that no AAD of one purpose equals one of another, and strings are
// length-prefixed so that boundaries are unambiguous.
const (
	aadWrap   = "rotary/kms/v1/wrap\x00"   // data key under a master key version
	aadData   = "rotary/kms/v1/data\x00"   // value under a data key
	aadKey    = "rotary/kms/v1/key\x00"    // master key material under the root key
	aadRegion = "rotary/kms/v1/region\x00" // fingerprint key under the root key
	aadCheck  = "rotary/kms/v1/root-check" // root key check value
)

// appendWrapAAD appends the AAD that binds a wrapped data key to the
// envelope's format, kind, region and master key version. It does not bind
// the secret, so Rewrap needs neither the secret's name nor its plaintext;
// the value's own AAD does.
func appendWrapAAD(b []byte, kind Kind, region, keyID string, keyVersion uint32) []byte {
	b = append(b, aadWrap...)
	b = append(b, FormatV1, byte(kind))
	b = appendString(b, region)
	b = appendString(b, keyID)
	return binary.BigEndian.AppendUint32(b, keyVersion)
}

// appendSecretAAD appends the AAD that binds a sealed value to its region,
// secret name and version.
func appendSecretAAD(b []byte, region, secret string, version int64) []byte {
	b = append(b, aadData...)
	b = append(b, FormatV1, byte(KindSecret))
	b = appendString(b, region)
	b = appendString(b, secret)
	return binary.BigEndian.AppendUint64(b, uint64(version))
}

// appendDataAAD appends the AAD that binds application data to its region
// and encryption context, encoded canonically: pairs sorted by key, each
// string length-prefixed.
func appendDataAAD(b []byte, region string, encCtx map[string]string) []byte {
	b = append(b, aadData...)
	b = append(b, FormatV1, byte(KindData))
	b = appendString(b, region)
	b = binary.BigEndian.AppendUint32(b, uint32(len(encCtx)))
	for _, k := range slices.Sorted(maps.Keys(encCtx)) {
		b = appendString(b, k)
		b = appendString(b, encCtx[k])
	}
	return b
}

func keyMaterialAAD(keyID string, version uint32) []byte {
	b := append([]byte(aadKey), FormatV1)
	b = appendString(b, keyID)
	return binary.BigEndian.AppendUint32(b, version)
}

func regionKeyAAD(name string) []byte {
	b := append([]byte(aadRegion), FormatV1)
	return appendString(b, name)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
