package kms

import (
	"bytes"
	"context"
	"testing"
)

// FuzzOpen feeds Open mutated envelopes. Open must never panic, must fail
// with exactly ErrDecrypt, and may succeed only for an envelope that
// really was sealed for the secret version it is opened as.
func FuzzOpen(f *testing.F) {
	vf := readVectors(f)
	m := loadVectors(f, vf)
	envs := make([][]byte, len(vf.Envelopes))
	for i, v := range vf.Envelopes {
		envs[i] = unhex(f, v.Envelope)
		f.Add(uint8(i), envs[i])
	}
	f.Fuzz(func(t *testing.T, i uint8, data []byte) {
		v := vf.Envelopes[int(i)%len(vf.Envelopes)]
		pt, err := m.Open(context.Background(), OpenParams{Region: v.Region, Secret: v.Secret, Version: v.Version, Envelope: data})
		if err != nil {
			if !isUniformDecryptErr(err) {
				t.Fatalf("Open err = %v, want exactly ErrDecrypt", err)
			}
			return
		}
		for j, w := range vf.Envelopes {
			if w.Region == v.Region && w.Secret == v.Secret && w.Version == v.Version && bytes.Equal(data, envs[j]) {
				if string(pt.Reveal()) != w.Plaintext {
					t.Fatalf("Open returned the wrong plaintext")
				}
				return
			}
		}
		t.Fatalf("Open succeeded on an envelope that was never sealed for %s v%d: %x", v.Secret, v.Version, data)
	})
}

// FuzzDecrypt does the same for application ciphertexts and their
// encryption context.
func FuzzDecrypt(f *testing.F) {
	vf := readVectors(f)
	m := loadVectors(f, vf)
	cts := make([][]byte, len(vf.Ciphertexts))
	for i, v := range vf.Ciphertexts {
		cts[i] = unhex(f, v.Ciphertext)
		f.Add(uint8(i), cts[i], "")
	}
	f.Fuzz(func(t *testing.T, i uint8, data []byte, extra string) {
		v := vf.Ciphertexts[int(i)%len(vf.Ciphertexts)]
		encCtx := map[string]string{}
		for k, val := range v.Context {
			encCtx[k] = val
		}
		if extra != "" {
			encCtx[extra] = extra
		}
		_, err := m.Decrypt(context.Background(), DecryptParams{Region: v.Region, Ciphertext: data, Context: encCtx})
		if err != nil {
			if !isUniformDecryptErr(err) {
				t.Fatalf("Decrypt err = %v, want exactly ErrDecrypt", err)
			}
			return
		}
		if extra != "" || !bytes.Equal(data, cts[int(i)%len(cts)]) {
			t.Fatalf("Decrypt succeeded on a mutated ciphertext or context: %x, extra %q", data, extra)
		}
	})
}

// FuzzParseEnvelope checks the parser never panics and accepts exactly
// one encoding: what it parses re-encodes to the same bytes.
func FuzzParseEnvelope(f *testing.F) {
	for _, v := range readVectors(f).Envelopes {
		f.Add(unhex(f, v.Envelope))
	}
	f.Add([]byte{})
	f.Add([]byte{FormatV1, byte(KindData), 19})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseEnvelope(data)
		e, ok := parseEnvelope(data)
		if (err == nil) != ok {
			t.Fatalf("ParseEnvelope err = %v but parseEnvelope ok = %v", err, ok)
		}
		if !ok {
			return
		}
		if h.Format != FormatV1 || !isKeyID(h.KeyID) || h.KeyVersion < 1 || len(e.wrappedKey) != wrappedKeySize ||
			len(e.nonce) != nonceSize || len(e.ciphertext) < tagSize {
			t.Fatalf("parsed an impossible envelope: %+v", h)
		}
		re := appendHeader(nil, e.kind, e.keyID, e.keyVersion)
		re = append(re, e.wrappedKey...)
		re = append(re, e.nonce...)
		re = append(re, e.ciphertext...)
		if !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, data)
		}
	})
}
