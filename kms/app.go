package kms

import (
	"context"

	"github.com/rotary-secrets/rotary/sensitive"
)

// The application KMS operations: encrypt, decrypt and generate data keys
// for callers outside rotary, in the manner of AWS KMS. Their ciphertexts
// are envelopes of KindData: they name their key, so Decrypt needs no key
// reference, and they bind the region and an encryption context.

// EncryptParams says what to encrypt.
type EncryptParams struct {
	Region string
	// KeyRef is a key id or "alias/NAME"; empty means alias/default.
	KeyRef    string
	Plaintext []byte
	// Context is the encryption context: non-secret pairs bound to the
	// ciphertext as additional authenticated data. Decrypt must be given
	// the same pairs (in any order). Nil and empty are the same.
	Context map[string]string
}

// EncryptResult is an encrypted value and the key that protects it.
type EncryptResult struct {
	Ciphertext []byte
	KeyID      string
	KeyVersion int
}

// DecryptParams names a ciphertext and its encryption context.
type DecryptParams struct {
	Region     string
	Ciphertext []byte
	Context    map[string]string
}

// DecryptResult is a decrypted value and the key that protected it.
type DecryptResult struct {
	Plaintext  sensitive.Bytes
	KeyID      string
	KeyVersion int
}

// GenerateDataKeyParams asks for a data key.
type GenerateDataKeyParams struct {
	Region  string
	KeyRef  string // a key id or "alias/NAME"; empty means alias/default
	Context map[string]string
}

// DataKey is a fresh 256-bit data key, in plaintext for immediate use and
// encrypted for storage beside the data it protects. Decrypt turns the
// ciphertext back into the plaintext key.
type DataKey struct {
	Plaintext  sensitive.Bytes
	Ciphertext []byte
	KeyID      string
	KeyVersion int
}

// Encrypt encrypts p.Plaintext under the named key, with a fresh data
// key, binding p.Region and p.Context.
func (m *Manager) Encrypt(ctx context.Context, p EncryptParams) (EncryptResult, error) {
	k, err := m.sealingKey(ctx, p.Region, p.KeyRef)
	if err != nil {
		return EncryptResult{}, err
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.aad = appendDataAAD(sc.aad, p.Region, p.Context)
	ct, err := m.seal(ctx, sc, k, KindData, p.Region, p.Plaintext)
	if err != nil {
		return EncryptResult{}, err
	}
	return EncryptResult{Ciphertext: ct, KeyID: k.ID, KeyVersion: k.PrimaryVersion}, nil
}

// Decrypt decrypts a ciphertext made by Encrypt or GenerateDataKey in the
// same region with the same encryption context. Like Open, it fails with
// ErrDecrypt alone for anything concerning the ciphertext.
func (m *Manager) Decrypt(ctx context.Context, p DecryptParams) (DecryptResult, error) {
	sc := getScratch()
	defer putScratch(sc)
	e, dek, err := m.unwrap(ctx, sc, KindData, p.Region, p.Ciphertext)
	if err != nil {
		return DecryptResult{}, err
	}
	sc.aad = appendDataAAD(sc.aad, p.Region, p.Context)
	pt, err := newGCM(dek).Open(nil, e.nonce, e.ciphertext, sc.aad)
	if err != nil {
		return DecryptResult{}, m.decryptFailed(e.keyID, "value does not authenticate")
	}
	return DecryptResult{Plaintext: sensitive.Bytes(pt), KeyID: e.keyID, KeyVersion: int(e.keyVersion)}, nil
}

// GenerateDataKey returns a fresh random 32-byte data key and its
// encryption under the named key (exactly what Encrypt would make of it).
func (m *Manager) GenerateDataKey(ctx context.Context, p GenerateDataKeyParams) (DataKey, error) {
	k, err := m.sealingKey(ctx, p.Region, p.KeyRef)
	if err != nil {
		return DataKey{}, err
	}
	key := m.random(RootKeySize)
	sc := getScratch()
	defer putScratch(sc)
	sc.aad = appendDataAAD(sc.aad, p.Region, p.Context)
	ct, err := m.seal(ctx, sc, k, KindData, p.Region, key)
	if err != nil {
		clear(key)
		return DataKey{}, err
	}
	return DataKey{Plaintext: sensitive.Bytes(key), Ciphertext: ct, KeyID: k.ID, KeyVersion: k.PrimaryVersion}, nil
}
