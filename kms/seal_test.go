package kms

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	named, err := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ref string
		size      int
	}{
		{"empty default key", "", 0},
		{"one byte", "", 1},
		{"1KiB by alias", "alias/payments", 1024},
		{"64KiB by id", named.ID, 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := SealParams{Region: testRegion, KeyRef: tt.ref, Secret: "app/" + tt.name, Version: 7,
				Plaintext: bytes.Repeat([]byte{'x'}, tt.size)}
			s := b.seal(t, b.m, p)
			if len(s.Envelope) != envelopeSize(s.KeyID, tt.size) {
				t.Fatalf("envelope is %d bytes, want %d", len(s.Envelope), envelopeSize(s.KeyID, tt.size))
			}
			if tt.ref != "" && s.KeyID != named.ID {
				t.Fatalf("Seal used key %s, want %s", s.KeyID, named.ID)
			}
			h, err := ParseEnvelope(s.Envelope)
			if err != nil || h != (EnvelopeHeader{Format: FormatV1, Kind: KindSecret, KeyID: s.KeyID, KeyVersion: 1}) {
				t.Fatalf("ParseEnvelope = %+v, %v", h, err)
			}
			b.mustOpen(t, b.m, openParams(p, s.Envelope), p.Plaintext)
			// Sealing twice gives different envelopes (fresh data key, nonces).
			if s2 := b.seal(t, b.m, p); bytes.Equal(s2.Envelope, s.Envelope) {
				t.Fatal("two seals of one value are identical")
			}
		})
	}
}

func TestSealValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name string
		p    SealParams
		want error
	}{
		{"no secret", SealParams{Region: testRegion, Version: 1}, ErrInvalidArgument},
		{"version 0", SealParams{Region: testRegion, Secret: "s"}, ErrInvalidArgument},
		{"bad region", SealParams{Region: "Bad", Secret: "s", Version: 1}, ErrInvalidArgument},
		{"bad ref", SealParams{Region: testRegion, KeyRef: "default", Secret: "s", Version: 1}, ErrInvalidArgument},
		{"unknown key", SealParams{Region: testRegion, KeyRef: "alias/nope", Secret: "s", Version: 1}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.m.Seal(b.ctx, tt.p)
			wantErr(t, "Seal", err, tt.want)
		})
	}
}

// A ciphertext moved anywhere else fails to open.
func TestOpenMoved(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.m.EnsureRegion(b.ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	p := SealParams{Region: testRegion, Secret: "db/password", Version: 2, Plaintext: []byte("s3cret")}
	s := b.seal(t, b.m, p)
	// The other region has its own default key and secrets too.
	b.seal(t, b.m, SealParams{Region: "us-east-1", Secret: "db/password", Version: 2})

	b.mustOpen(t, b.m, openParams(p, s.Envelope), p.Plaintext) // the positive control
	tests := []struct {
		name string
		p    OpenParams
	}{
		{"another secret", OpenParams{Region: testRegion, Secret: "db/passwore", Version: 2}},
		{"secret prefix", OpenParams{Region: testRegion, Secret: "db/pass", Version: 2}},
		{"another version", OpenParams{Region: testRegion, Secret: "db/password", Version: 1}},
		{"version far away", OpenParams{Region: testRegion, Secret: "db/password", Version: 2 + 1<<32}},
		{"another region", OpenParams{Region: "us-east-1", Secret: "db/password", Version: 2}},
		{"unknown region", OpenParams{Region: "nowhere", Secret: "db/password", Version: 2}},
		{"invalid region", OpenParams{Region: "", Secret: "db/password", Version: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Envelope = s.Envelope
			b.openFails(t, b.m, tt.p)
		})
	}
	t.Run("opened as application data", func(t *testing.T) {
		_, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: s.Envelope})
		if !isUniformDecryptErr(err) {
			t.Fatalf("Decrypt(secret envelope) err = %v, want ErrDecrypt", err)
		}
	})
	t.Run("kind byte changed", func(t *testing.T) {
		env := bytes.Clone(s.Envelope)
		env[1] = byte(KindData)
		_, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: env})
		if !isUniformDecryptErr(err) {
			t.Fatalf("Decrypt(relabelled envelope) err = %v, want ErrDecrypt", err)
		}
	})
}

func TestOpenEveryBitFlip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("a short value")}
	s := b.seal(t, b.m, p)
	for i := range len(s.Envelope) * 8 {
		env := bytes.Clone(s.Envelope)
		env[i/8] ^= 1 << (i % 8)
		b.openFails(t, b.m, openParams(p, env))
	}
}

func TestOpenEveryTruncation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("a short value")}
	s := b.seal(t, b.m, p)
	for n := range len(s.Envelope) {
		b.openFails(t, b.m, openParams(p, s.Envelope[:n]))
	}
	// And extension.
	b.openFails(t, b.m, openParams(p, append(bytes.Clone(s.Envelope), 0)))
	b.openFails(t, b.m, openParams(p, nil))
}

func TestRewrap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("value")}
	s := b.seal(t, b.m, p)
	ep := EncryptParams{Region: testRegion, Plaintext: []byte("app data"), Context: map[string]string{"a": "b"}}
	ct, err := b.m.Encrypt(b.ctx, ep)
	if err != nil {
		t.Fatal(err)
	}

	// Already on the newest version: unchanged.
	got, changed, err := b.m.Rewrap(b.ctx, testRegion, s.Envelope)
	if err != nil || changed || !bytes.Equal(got, s.Envelope) {
		t.Fatalf("Rewrap(newest) = changed %v, %v; want unchanged", changed, err)
	}

	if _, err := b.m.RotateKey(b.ctx, testRegion, s.KeyID); err != nil {
		t.Fatal(err)
	}
	before := b.store.Calls()
	re, changed, err := b.m.Rewrap(b.ctx, testRegion, s.Envelope)
	if err != nil || !changed {
		t.Fatalf("Rewrap(v1) = changed %v, %v; want changed", changed, err)
	}
	if n := b.store.Calls() - before; n != 0 {
		t.Fatalf("Rewrap made %d store calls with a warm cache", n)
	}
	h, _ := ParseEnvelope(re)
	if h.KeyVersion != 2 || h.KeyID != s.KeyID {
		t.Fatalf("rewrapped header = %+v, want key version 2", h)
	}
	// The value's nonce and ciphertext are untouched: nothing was decrypted.
	tail := 3 + len(s.KeyID) + 4 + wrappedKeySize
	if !bytes.Equal(re[tail:], s.Envelope[tail:]) {
		t.Fatal("Rewrap changed the value's nonce or ciphertext")
	}
	b.mustOpen(t, b.m, openParams(p, re), p.Plaintext)
	b.mustOpen(t, b.m, openParams(p, s.Envelope), p.Plaintext) // the old one still opens
	// Idempotent.
	again, changed, err := b.m.Rewrap(b.ctx, testRegion, re)
	if err != nil || changed || !bytes.Equal(again, re) {
		t.Fatalf("Rewrap(rewrapped) = changed %v, %v; want unchanged", changed, err)
	}
	// A rewrapped envelope is still bound to its secret version.
	b.openFails(t, b.m, OpenParams{Region: testRegion, Secret: "s", Version: 2, Envelope: re})

	// Application ciphertexts rewrap too.
	rct, changed, err := b.m.Rewrap(b.ctx, testRegion, ct.Ciphertext)
	if err != nil || !changed {
		t.Fatalf("Rewrap(app ciphertext) = %v, %v", changed, err)
	}
	dr, err := b.m.Decrypt(b.ctx, DecryptParams{Region: testRegion, Ciphertext: rct, Context: ep.Context})
	if err != nil || string(dr.Plaintext.Reveal()) != "app data" || dr.KeyVersion != 2 {
		t.Fatalf("Decrypt(rewrapped) = v%d, %v", dr.KeyVersion, err)
	}

	// Failures are ErrDecrypt, as in Open.
	for _, tt := range []struct {
		name   string
		region string
		env    []byte
	}{
		{"flipped wrapped key", testRegion, flip(s.Envelope, 3+len(s.KeyID)+4+20)},
		{"truncated", testRegion, s.Envelope[:40]},
		{"another region", "us-east-1", s.Envelope},
	} {
		_, _, err := b.m.Rewrap(b.ctx, tt.region, tt.env)
		if !isUniformDecryptErr(err) {
			t.Fatalf("Rewrap(%s) err = %v, want ErrDecrypt", tt.name, err)
		}
	}
	if _, err := b.m.DisableKey(b.ctx, testRegion, s.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.m.Rewrap(b.ctx, testRegion, s.Envelope); !isUniformDecryptErr(err) {
		t.Fatalf("Rewrap(disabled key) err = %v, want ErrDecrypt", err)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// No error and no log line carries plaintext, and plaintext does not print.
func TestNoPlaintextInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	b := &bundle{ctx: context.Background(), store: NewMemKeyStore(), clock: newTestClock()}
	m, err := New(b.ctx, Config{Store: b.store, Root: testRoot, Now: b.clock.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.EnsureRegion(b.ctx, testRegion); err != nil {
		t.Fatal(err)
	}
	const canary = "CANARY-7f3a9c-plaintext"
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte(canary)}
	s := b.seal(t, m, p)
	var msgs []string
	for _, op := range []OpenParams{
		{Region: testRegion, Secret: "s", Version: 2, Envelope: s.Envelope},
		{Region: testRegion, Secret: "x", Version: 1, Envelope: flip(s.Envelope, len(s.Envelope)-1)},
		{Region: "other", Secret: "s", Version: 1, Envelope: s.Envelope},
	} {
		_, err := m.Open(b.ctx, op)
		msgs = append(msgs, err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err))
	}
	got, err := m.Open(b.ctx, openParams(p, s.Envelope))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, fmt.Sprintf("%v %s %q %x %#v %+v", got, got, got, got, got, got))
	_, err = m.Encrypt(b.ctx, EncryptParams{Region: "Bad Region", Plaintext: []byte(canary)})
	msgs = append(msgs, err.Error())
	msgs = append(msgs, logs.String())
	for _, msg := range msgs {
		if strings.Contains(msg, canary) || strings.Contains(msg, fmt.Sprintf("%x", canary)) {
			t.Fatalf("plaintext leaked into %q", msg)
		}
	}
	if !strings.Contains(logs.String(), "decryption failed") {
		t.Fatalf("debug log lacks the failure reasons: %s", logs.String())
	}
}

func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.seal(t, b.m, SealParams{Region: testRegion, Secret: "s", Version: 1})
	good := s.Envelope
	if _, err := ParseEnvelope(good); err != nil {
		t.Fatalf("ParseEnvelope(good) err = %v", err)
	}
	set := func(i int, v byte) []byte { e := bytes.Clone(good); e[i] = v; return e }
	tests := []struct {
		name string
		env  []byte
	}{
		{"empty", nil},
		{"format 0", set(0, 0)},
		{"format 2", set(0, 2)},
		{"kind 0", set(1, 0)},
		{"kind 3", set(1, 3)},
		{"key id length 0", set(2, 0)},
		{"key id length too long", set(2, 65)},
		{"key id uppercase", set(3, 'M')},
		{"key version 0", append(append(bytes.Clone(good[:3+19]), 0, 0, 0, 0), good[3+19+4:]...)},
		{"no ciphertext tag", good[:len(good)-1]},
	}
	for _, tt := range tests {
		if _, err := ParseEnvelope(tt.env); err != ErrMalformedEnvelope {
			t.Errorf("ParseEnvelope(%s) err = %v, want ErrMalformedEnvelope", tt.name, err)
		}
	}
}
