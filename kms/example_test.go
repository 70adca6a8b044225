package kms_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/rotary-secrets/rotary/kms"
)

// newManager opens a Manager the way the daemon does, except that the key
// store is kms.NewMemKeyStore, an in-memory KeyStore that exists only in
// this package's tests; the daemon passes an adapter of its real store.
func newManager(ctx context.Context) *kms.Manager {
	dir, err := os.MkdirTemp("", "rotary-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "root.key")
	if err := kms.WriteRootKeyFile(path); err != nil { // what `rotary init` would do
		log.Fatal(err)
	}
	root, err := kms.FileSource{Path: path}.RootKey(ctx)
	if err != nil {
		log.Fatal(err)
	}
	m, err := kms.New(ctx, kms.Config{Store: kms.NewMemKeyStore(), Root: root})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.EnsureRegion(ctx, "eu-west-1"); err != nil {
		log.Fatal(err)
	}
	return m
}

func ExampleManager_Seal() {
	ctx := context.Background()
	m := newManager(ctx)

	// Seal version 1 of the secret "db/password" under the region's
	// default key, created on first use.
	sealed, err := m.Seal(ctx, kms.SealParams{
		Region:    "eu-west-1",
		Secret:    "db/password",
		Version:   1,
		Plaintext: []byte("hunter2"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("key version:", sealed.KeyVersion)

	// Open it as the same secret version.
	value, err := m.Open(ctx, kms.OpenParams{Region: "eu-west-1", Secret: "db/password", Version: 1, Envelope: sealed.Envelope})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("printed:", value)
	fmt.Println("revealed:", string(value.Reveal()))

	// The envelope is bound to its secret version.
	_, err = m.Open(ctx, kms.OpenParams{Region: "eu-west-1", Secret: "db/password", Version: 2, Envelope: sealed.Envelope})
	fmt.Println(err, errors.Is(err, kms.ErrDecrypt))
	// Output:
	// key version: 1
	// printed: [redacted]
	// revealed: hunter2
	// kms: decryption failed true
}

func ExampleManager_Encrypt() {
	ctx := context.Background()
	m := newManager(ctx)
	if _, err := m.CreateKey(ctx, kms.CreateKeyParams{Region: "eu-west-1", Alias: "alias/backups"}); err != nil {
		log.Fatal(err)
	}

	encCtx := map[string]string{"bucket": "nightly", "tenant": "acme"}
	enc, err := m.Encrypt(ctx, kms.EncryptParams{
		Region:    "eu-west-1",
		KeyRef:    "alias/backups",
		Plaintext: []byte("attack at dawn"),
		Context:   encCtx,
	})
	if err != nil {
		log.Fatal(err)
	}

	// The ciphertext names its key; the context must match.
	dec, err := m.Decrypt(ctx, kms.DecryptParams{Region: "eu-west-1", Ciphertext: enc.Ciphertext, Context: encCtx})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(dec.Plaintext.Reveal()), dec.KeyID == enc.KeyID)

	_, err = m.Decrypt(ctx, kms.DecryptParams{Region: "eu-west-1", Ciphertext: enc.Ciphertext, Context: map[string]string{"tenant": "other"}})
	fmt.Println(err)
	// Output:
	// attack at dawn true
	// kms: decryption failed
}

func ExampleManager_Rewrap() {
	ctx := context.Background()
	m := newManager(ctx)
	sealed, _ := m.Seal(ctx, kms.SealParams{Region: "eu-west-1", Secret: "api/token", Version: 1, Plaintext: []byte("t0ken")})

	// Rotate the default key, then move the old envelope to the new key
	// version without decrypting the value.
	if _, err := m.RotateKey(ctx, "eu-west-1", "alias/default"); err != nil {
		log.Fatal(err)
	}
	newEnv, changed, err := m.Rewrap(ctx, "eu-west-1", sealed.Envelope)
	if err != nil {
		log.Fatal(err)
	}
	h, _ := kms.ParseEnvelope(newEnv)
	fmt.Println(changed, h.KeyVersion)

	_, changed, _ = m.Rewrap(ctx, "eu-west-1", newEnv)
	fmt.Println(changed)
	// Output:
	// true 2
	// false
}
