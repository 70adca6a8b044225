package kms

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotary-secrets/rotary/sensitive"
)

// SealParams says what to seal and where it will be stored.
type SealParams struct {
	Region string
	// KeyRef names the master key: a key id or "alias/NAME" of Region.
	// Empty means the region's alias/default key, created on first use.
	KeyRef string
	// Secret and Version name the secret version the value belongs to.
	// Both are bound into the envelope: it opens for this secret version
	// only.
	Secret    string
	Version   int64
	Plaintext []byte
}

// Sealed is a sealed value.
type Sealed struct {
	Envelope   []byte // the record to store; see the package documentation
	KeyID      string // the master key that wraps the data key
	KeyVersion int    // and its version (the key's primary version)
}

// OpenParams names an envelope and the secret version it must belong to.
type OpenParams struct {
	Region   string
	Secret   string
	Version  int64
	Envelope []byte
}

// Seal encrypts a secret version's value under a fresh data key, which it
// wraps with the primary version of the master key. The key must be
// enabled: a disabled key fails with ErrKeyDisabled, one pending deletion
// with ErrKeyPendingDeletion.
func (m *Manager) Seal(ctx context.Context, p SealParams) (Sealed, error) {
	if p.Secret == "" {
		return Sealed{}, invalidf("seal: secret name is empty")
	}
	if p.Version < 1 {
		return Sealed{}, invalidf("seal: secret version %d: must be at least 1", p.Version)
	}
	k, err := m.sealingKey(ctx, p.Region, p.KeyRef)
	if err != nil {
		return Sealed{}, err
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.aad = appendSecretAAD(sc.aad, p.Region, p.Secret, p.Version)
	env, err := m.seal(ctx, sc, k, KindSecret, p.Region, p.Plaintext)
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{Envelope: env, KeyID: k.ID, KeyVersion: k.PrimaryVersion}, nil
}

// Open decrypts an envelope made by Seal for the same region, secret and
// version. Every failure that concerns the envelope (including a key that
// is unknown, disabled, pending deletion or purged) is ErrDecrypt and
// nothing else. Only a failure to reach the KeyStore is reported as
// itself, wrapped, so that callers can tell an outage from a bad record.
func (m *Manager) Open(ctx context.Context, p OpenParams) (sensitive.Bytes, error) {
	sc := getScratch()
	defer putScratch(sc)
	e, dek, err := m.unwrap(ctx, sc, KindSecret, p.Region, p.Envelope)
	if err != nil {
		return nil, err
	}
	sc.aad = appendSecretAAD(sc.aad, p.Region, p.Secret, p.Version)
	pt, err := newGCM(dek).Open(nil, e.nonce, e.ciphertext, sc.aad)
	if err != nil {
		return nil, m.decryptFailed(e.keyID, "value does not authenticate")
	}
	return sensitive.Bytes(pt), nil
}

// Rewrap re-wraps an envelope's data key under the newest version of the
// same master key, without decrypting the value: the value's nonce and
// ciphertext are kept byte for byte. It works on envelopes of any kind.
// If the data key is already wrapped by the newest version it returns
// the envelope itself and changed == false, so an interrupted batch can
// simply be run again. The newest version is taken from the metadata
// cache, so right after another daemon rotates the key Rewrap may leave an
// envelope unchanged for up to the cache TTL.
//
// Rewrap authenticates the wrapped data key but cannot check the value
// (it has neither the value's AAD nor any wish to decrypt it): a damaged
// value stays damaged and fails at Open. The key must be enabled. Any
// failure concerning the envelope is ErrDecrypt, as in Open.
func (m *Manager) Rewrap(ctx context.Context, region string, envelope []byte) (newEnvelope []byte, changed bool, err error) {
	kind := Kind(0)
	if len(envelope) > 1 {
		kind = Kind(envelope[1]) // checked by parseEnvelope inside unwrap
	}
	sc := getScratch()
	defer putScratch(sc)
	e, dek, err := m.unwrap(ctx, sc, kind, region, envelope)
	if err != nil {
		return nil, false, err
	}
	k, err := m.byID(ctx, e.keyID, false)
	if err != nil {
		return nil, false, m.decryptError(e.keyID, err)
	}
	primary := uint32(k.PrimaryVersion)
	if e.keyVersion >= primary {
		return envelope, false, nil
	}
	master, err := m.versionAEAD(ctx, k.ID, primary)
	if err != nil {
		return nil, false, m.decryptError(k.ID, err)
	}
	wrapNonce := m.random(nonceSize)
	out := make([]byte, 0, envelopeSize(k.ID, len(e.ciphertext)-tagSize))
	out = appendHeader(out, e.kind, k.ID, primary)
	out = append(out, wrapNonce...)
	sc.wrap = appendWrapAAD(sc.wrap[:0], e.kind, region, k.ID, primary)
	out = master.Seal(out, wrapNonce, dek, sc.wrap)
	out = append(out, e.nonce...)
	out = append(out, e.ciphertext...)
	return out, true, nil
}

// sealingKey resolves the key a seal or encrypt call uses and checks that
// it may seal.
func (m *Manager) sealingKey(ctx context.Context, region, ref string) (Key, error) {
	var k Key
	var err error
	if ref == "" {
		k, err = m.DefaultKey(ctx, region)
	} else {
		k, err = m.resolve(ctx, region, ref, false)
	}
	if err != nil {
		return Key{}, err
	}
	return k, usable(k)
}

// seal makes an envelope of the given kind: a fresh data key encrypts
// plaintext with the AAD in sc.aad, and k's primary version wraps the data
// key.
func (m *Manager) seal(ctx context.Context, sc *scratch, k Key, kind Kind, region string, plaintext []byte) ([]byte, error) {
	version := uint32(k.PrimaryVersion)
	master, err := m.versionAEAD(ctx, k.ID, version)
	if err != nil {
		return nil, err
	}
	// One read for the data key and both nonces.
	m.read(sc.rnd[:])
	dek, wrapNonce, nonce := sc.rnd[:RootKeySize], sc.rnd[RootKeySize:RootKeySize+nonceSize], sc.rnd[RootKeySize+nonceSize:]

	out := make([]byte, 0, envelopeSize(k.ID, len(plaintext)))
	out = appendHeader(out, kind, k.ID, version)
	out = append(out, wrapNonce...)
	sc.wrap = appendWrapAAD(sc.wrap[:0], kind, region, k.ID, version)
	out = master.Seal(out, wrapNonce, dek, sc.wrap)
	out = append(out, nonce...)
	return newGCM(dek).Seal(out, nonce, plaintext, sc.aad), nil
}

// unwrap parses an envelope of the given kind and returns its data key (in
// sc.dek), checking on the way that the key belongs to region and is
// enabled.
func (m *Manager) unwrap(ctx context.Context, sc *scratch, kind Kind, region string, b []byte) (envelope, []byte, error) {
	e, ok := parseEnvelope(b)
	if !ok || e.kind != kind {
		return e, nil, m.decryptFailed("", "malformed envelope")
	}
	k, err := m.byID(ctx, e.keyID, false)
	if err != nil {
		return e, nil, m.decryptError(e.keyID, err)
	}
	switch {
	case k.Region != region:
		return e, nil, m.decryptFailed(e.keyID, "key belongs to another region")
	case k.State != KeyEnabled:
		return e, nil, m.decryptFailed(e.keyID, "key is "+string(k.State))
	}
	master, err := m.versionAEAD(ctx, e.keyID, e.keyVersion)
	if err != nil {
		return e, nil, m.decryptError(e.keyID, err)
	}
	sc.wrap = appendWrapAAD(sc.wrap[:0], e.kind, region, e.keyID, e.keyVersion)
	dek, err := master.Open(sc.dek[:0], e.wrappedKey[:nonceSize], e.wrappedKey[nonceSize:], sc.wrap)
	if err != nil {
		return e, nil, m.decryptFailed(e.keyID, "data key does not unwrap")
	}
	return e, dek, nil
}

// decryptError turns a key lookup failure into ErrDecrypt, except for a
// KeyStore failure (an outage), which is passed on wrapped.
func (m *Manager) decryptError(keyID string, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidArgument) {
		return m.decryptFailed(keyID, "key or key version not found")
	}
	return fmt.Errorf("kms: decrypt: %w", err)
}

// decryptFailed logs why a decryption failed, at debug level and without
// any data, and returns the uniform ErrDecrypt.
func (m *Manager) decryptFailed(keyID, reason string) error {
	m.log.Debug("kms: decryption failed", "key", keyID, "reason", reason)
	return ErrDecrypt
}
