package kms

import (
	"bytes"
	"testing"
)

func TestEncryptDecrypt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.m.EnsureRegion(b.ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	k, _ := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "app"})
	encCtx := map[string]string{"tenant": "acme", "purpose": "backup"}
	r, err := b.m.Encrypt(b.ctx, EncryptParams{Region: testRegion, KeyRef: "alias/app", Plaintext: []byte("attack at dawn"), Context: encCtx})
	if err != nil || r.KeyID != k.ID || r.KeyVersion != 1 {
		t.Fatalf("Encrypt = %s v%d, %v; want key %s v1", r.KeyID, r.KeyVersion, err, k.ID)
	}
	if h, _ := ParseEnvelope(r.Ciphertext); h.Kind != KindData || h.KeyID != k.ID {
		t.Fatalf("ciphertext header = %+v", h)
	}
	// Same pairs, built in another order: the encoding is canonical.
	same := map[string]string{"purpose": "backup"}
	same["tenant"] = "acme"
	d, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: r.Ciphertext, Context: same})
	if err != nil || string(d.Plaintext.Reveal()) != "attack at dawn" || d.KeyID != k.ID || d.KeyVersion != 1 {
		t.Fatalf("Decrypt = %s v%d, %v", d.KeyID, d.KeyVersion, err)
	}

	tests := []struct {
		name   string
		region string
		ctx    map[string]string
	}{
		{"no context", testRegion, nil},
		{"missing pair", testRegion, map[string]string{"tenant": "acme"}},
		{"extra pair", testRegion, map[string]string{"tenant": "acme", "purpose": "backup", "x": ""}},
		{"changed value", testRegion, map[string]string{"tenant": "acme", "purpose": "Backup"}},
		{"swapped key and value", testRegion, map[string]string{"acme": "tenant", "purpose": "backup"}},
		{"boundary moved", testRegion, map[string]string{"tenan": "tacme", "purpose": "backup"}},
		{"another region", "us-east-1", encCtx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.m.Decrypt(b.ctx, DecryptParams{Region: tt.region, Ciphertext: r.Ciphertext, Context: tt.ctx})
			if !isUniformDecryptErr(err) || got.Plaintext != nil {
				t.Fatalf("Decrypt err = %v, want ErrDecrypt", err)
			}
		})
	}
	t.Run("nil and empty context are the same", func(t *testing.T) {
		r, _ := b.m.Encrypt(b.ctx, EncryptParams{Region: testRegion, Plaintext: []byte("x")})
		if _, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: r.Ciphertext, Context: map[string]string{}}); err != nil {
			t.Fatalf("Decrypt err = %v", err)
		}
	})
	t.Run("opened as a secret", func(t *testing.T) {
		b.openFails(t, b.m, OpenParams{Region: testRegion, Secret: "s", Version: 1, Envelope: r.Ciphertext})
	})
	t.Run("every bit flip", func(t *testing.T) {
		for i := range len(r.Ciphertext) * 8 {
			ct := bytes.Clone(r.Ciphertext)
			ct[i/8] ^= 1 << (i % 8)
			if _, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: ct, Context: encCtx}); !isUniformDecryptErr(err) {
				t.Fatalf("Decrypt(bit %d flipped) err = %v, want ErrDecrypt", i, err)
			}
		}
	})
}

func TestGenerateDataKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	encCtx := map[string]string{"file": "backup.tar"}
	dk, err := b.m.GenerateDataKey(b.ctx, GenerateDataKeyParams{Region: testRegion, Context: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	def, _ := b.m.DefaultKey(b.ctx, testRegion)
	if dk.Plaintext.Len() != 32 || dk.KeyID != def.ID || dk.KeyVersion != 1 {
		t.Fatalf("GenerateDataKey = %d bytes under %s v%d", dk.Plaintext.Len(), dk.KeyID, dk.KeyVersion)
	}
	d, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: dk.Ciphertext, Context: encCtx})
	if err != nil || !d.Plaintext.Equal(dk.Plaintext) {
		t.Fatalf("Decrypt(data key ciphertext) = equal %v, %v", d.Plaintext.Equal(dk.Plaintext), err)
	}
	dk2, _ := b.m.GenerateDataKey(b.ctx, GenerateDataKeyParams{Region: testRegion, Context: encCtx})
	if dk2.Plaintext.Equal(dk.Plaintext) {
		t.Fatal("two data keys are equal")
	}
	if _, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: dk.Ciphertext}); !isUniformDecryptErr(err) {
		t.Fatalf("Decrypt(without context) err = %v, want ErrDecrypt", err)
	}
}
