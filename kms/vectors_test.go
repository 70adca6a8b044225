package kms

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/sensitive"
)

// The vectors in testdata/vectors.json fix the envelope format and the
// stored forms of key material. TestVectorsOpen proves that what an
// earlier rotary stored still opens; TestVectorsReproduce proves that,
// given the same random stream, this code still writes exactly those
// bytes. Run "go test ./kms -run TestVectors -update" only for a deliberate
// format change (which also needs a new format version byte).
var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

const vectorsPath = "testdata/vectors.json"

type vectorFile struct {
	Comment      string              `json:"comment"`
	RootKey      string              `json:"root_key"`   // hex
	RootCheck    string              `json:"root_check"` // hex, meta kms.root_check
	Regions      []vectorRegion      `json:"regions"`
	Keys         []vectorKey         `json:"keys"`
	Envelopes    []vectorEnvelope    `json:"envelopes"`
	Ciphertexts  []vectorCiphertext  `json:"ciphertexts"`
	Fingerprints []vectorFingerprint `json:"fingerprints"`
}

type vectorRegion struct {
	Name           string `json:"name"`
	FingerprintKey string `json:"fingerprint_key"` // hex, wrapped by the root key
}

type vectorKey struct {
	ID       string          `json:"id"`
	Region   string          `json:"region"`
	Alias    string          `json:"alias"`
	Versions []vectorVersion `json:"versions"`
}

type vectorVersion struct {
	Version  int    `json:"version"`
	Material string `json:"material"` // hex, wrapped by the root key
}

type vectorEnvelope struct {
	Comment    string `json:"comment"`
	Region     string `json:"region"`
	Secret     string `json:"secret"`
	Version    int64  `json:"version"`
	Plaintext  string `json:"plaintext"`
	KeyID      string `json:"key_id"`
	KeyVersion int    `json:"key_version"`
	Envelope   string `json:"envelope"` // hex
}

type vectorCiphertext struct {
	Comment    string            `json:"comment"`
	Region     string            `json:"region"`
	Context    map[string]string `json:"context"`
	Plaintext  string            `json:"plaintext"` // hex
	KeyID      string            `json:"key_id"`
	KeyVersion int               `json:"key_version"`
	Ciphertext string            `json:"ciphertext"` // hex
}

type vectorFingerprint struct {
	Region      string `json:"region"`
	Type        string `json:"type"`
	Value       string `json:"value"`
	Fingerprint string `json:"fingerprint"`
}

var vectorRoot = func() sensitive.Bytes {
	b := make([]byte, RootKeySize)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// generateVectors builds the vectors from a deterministic random stream.
func generateVectors(t testing.TB) vectorFile {
	t.Helper()
	ctx := context.Background()
	store := NewMemKeyStore()
	clock := newTestClock()
	m, err := New(ctx, Config{Store: store, Root: vectorRoot, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m.rand = newDetRand("rotary kms test vectors v1")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.EnsureRegion(ctx, "eu-west-1"))
	must(m.EnsureRegion(ctx, "us-east-1"))
	app, err := m.CreateKey(ctx, CreateKeyParams{Region: "eu-west-1", Alias: "app"})
	must(err)

	vf := vectorFile{
		Comment: "rotary kms envelope format v1; see kms/doc.go. Byte strings are hex.",
		RootKey: hex.EncodeToString(vectorRoot),
	}
	seal := func(comment string, p SealParams) []byte {
		s, err := m.Seal(ctx, p)
		must(err)
		vf.Envelopes = append(vf.Envelopes, vectorEnvelope{comment, p.Region, p.Secret, p.Version,
			string(p.Plaintext), s.KeyID, s.KeyVersion, hex.EncodeToString(s.Envelope)})
		return s.Envelope
	}
	old := seal("empty value, default key", SealParams{Region: "eu-west-1", Secret: "db/password", Version: 1})
	seal("short value", SealParams{Region: "eu-west-1", Secret: "db/password", Version: 2, Plaintext: []byte("hunter2")})
	seal("named key", SealParams{Region: "eu-west-1", KeyRef: "alias/app", Secret: "api/token", Version: 1,
		Plaintext: bytes.Repeat([]byte("0123456789"), 10)})
	seal("other region", SealParams{Region: "us-east-1", Secret: "db/password", Version: 1, Plaintext: []byte("hunter2")})
	clock.Advance(time.Hour)
	_, err = m.RotateKey(ctx, "eu-west-1", "alias/default")
	must(err)
	seal("after rotation: key version 2", SealParams{Region: "eu-west-1", Secret: "db/password", Version: 3, Plaintext: []byte("correct horse")})
	re, changed, err := m.Rewrap(ctx, "eu-west-1", old)
	must(err)
	if !changed {
		t.Fatal("Rewrap did not change a version 1 envelope")
	}
	vf.Envelopes = append(vf.Envelopes, vectorEnvelope{"the first envelope rewrapped to key version 2",
		"eu-west-1", "db/password", 1, "", vf.Envelopes[0].KeyID, 2, hex.EncodeToString(re)})

	encCtx := map[string]string{"tenant": "acme", "purpose": "backup"}
	r, err := m.Encrypt(ctx, EncryptParams{Region: "eu-west-1", KeyRef: app.ID, Plaintext: []byte("attack at dawn"), Context: encCtx})
	must(err)
	vf.Ciphertexts = append(vf.Ciphertexts, vectorCiphertext{"Encrypt with an encryption context", "eu-west-1", encCtx,
		hex.EncodeToString([]byte("attack at dawn")), r.KeyID, r.KeyVersion, hex.EncodeToString(r.Ciphertext)})
	dk, err := m.GenerateDataKey(ctx, GenerateDataKeyParams{Region: "eu-west-1"})
	must(err)
	vf.Ciphertexts = append(vf.Ciphertexts, vectorCiphertext{"GenerateDataKey, no context", "eu-west-1", nil,
		hex.EncodeToString(dk.Plaintext.Reveal()), dk.KeyID, dk.KeyVersion, hex.EncodeToString(dk.Ciphertext)})

	for _, f := range []vectorFingerprint{
		{Region: "eu-west-1", Type: "password", Value: "hunter2"},
		{Region: "us-east-1", Type: "password", Value: "hunter2"},
		{Region: "eu-west-1", Type: "api-key", Value: ""},
	} {
		f.Fingerprint, err = m.Fingerprint(ctx, f.Region, f.Type, []byte(f.Value))
		must(err)
		vf.Fingerprints = append(vf.Fingerprints, f)
	}

	// The stored rows.
	check, err := store.GetMeta(ctx, MetaRootCheck)
	must(err)
	vf.RootCheck = hex.EncodeToString(check)
	regions, err := m.ListRegions(ctx)
	must(err)
	for _, r := range regions {
		r, err := store.GetRegion(ctx, r.Name)
		must(err)
		vf.Regions = append(vf.Regions, vectorRegion{r.Name, hex.EncodeToString(r.FingerprintKey)})
	}
	keys, err := m.ListKeys(ctx, "")
	must(err)
	for _, k := range keys {
		vk := vectorKey{ID: k.ID, Region: k.Region, Alias: k.Alias}
		vs, err := store.GetKeyVersions(ctx, k.ID)
		must(err)
		for _, v := range vs {
			vk.Versions = append(vk.Versions, vectorVersion{v.Version, hex.EncodeToString(v.Material)})
		}
		vf.Keys = append(vf.Keys, vk)
	}
	return vf
}

func readVectors(t testing.TB) vectorFile {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	return vf
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("vector hex: %v", err)
	}
	return b
}

// loadVectors puts the vectors' stored rows into a fresh KeyStore and opens
// a Manager on it with the vectors' root key.
func loadVectors(t testing.TB, vf vectorFile) *Manager {
	t.Helper()
	ctx := context.Background()
	store := NewMemKeyStore()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.PutMetaIfAbsent(ctx, MetaRootCheck, unhex(t, vf.RootCheck)))
	for _, r := range vf.Regions {
		must(store.CreateRegion(ctx, Region{Name: r.Name, FingerprintKey: unhex(t, r.FingerprintKey), CreatedAt: now}))
	}
	for _, k := range vf.Keys {
		key := Key{ID: k.ID, Region: k.Region, Alias: k.Alias, State: KeyEnabled, PrimaryVersion: 1, CreatedAt: now, UpdatedAt: now}
		for i, v := range k.Versions {
			kv := KeyVersion{KeyID: k.ID, Version: v.Version, Material: unhex(t, v.Material), CreatedAt: now}
			if i == 0 {
				must(store.CreateKey(ctx, key, kv))
			} else {
				must(store.AddKeyVersion(ctx, kv))
			}
		}
	}
	m, err := New(ctx, Config{Store: store, Root: sensitive.Bytes(unhex(t, vf.RootKey))})
	must(err)
	return m
}

func TestVectorsReproduce(t *testing.T) {
	got, err := json.MarshalIndent(generateVectors(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(vectorsPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", vectorsPath)
	}
	want, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("sealing with the vectors' random stream no longer reproduces %s: the format changed.\n"+
			"If that is deliberate, bump the format version and run with -update.", vectorsPath)
	}
}

func TestVectorsOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	vf := readVectors(t)
	m := loadVectors(t, vf)
	if len(vf.Envelopes) == 0 || len(vf.Ciphertexts) == 0 || len(vf.Fingerprints) == 0 {
		t.Fatal("vector file is missing sections")
	}
	for _, v := range vf.Envelopes {
		t.Run(v.Comment, func(t *testing.T) {
			env := unhex(t, v.Envelope)
			h, err := ParseEnvelope(env)
			if err != nil || h.KeyID != v.KeyID || h.KeyVersion != v.KeyVersion || h.Kind != KindSecret {
				t.Fatalf("ParseEnvelope = %+v, %v; want key %s v%d", h, err, v.KeyID, v.KeyVersion)
			}
			pt, err := m.Open(ctx, OpenParams{Region: v.Region, Secret: v.Secret, Version: v.Version, Envelope: env})
			if err != nil || string(pt.Reveal()) != v.Plaintext {
				t.Fatalf("Open err = %v or wrong plaintext", err)
			}
			// Negative control: the same envelope under another name.
			if _, err := m.Open(ctx, OpenParams{Region: v.Region, Secret: v.Secret + "x", Version: v.Version, Envelope: env}); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open(another secret) err = %v, want ErrDecrypt", err)
			}
		})
	}
	for _, v := range vf.Ciphertexts {
		t.Run(v.Comment, func(t *testing.T) {
			d, err := m.Decrypt(ctx, DecryptParams{Region: v.Region, Ciphertext: unhex(t, v.Ciphertext), Context: v.Context})
			if err != nil || !bytes.Equal(d.Plaintext.Reveal(), unhex(t, v.Plaintext)) || d.KeyID != v.KeyID || d.KeyVersion != v.KeyVersion {
				t.Fatalf("Decrypt = %s v%d, %v; want key %s v%d and the plaintext", d.KeyID, d.KeyVersion, err, v.KeyID, v.KeyVersion)
			}
			if _, err := m.Decrypt(ctx, DecryptParams{Region: v.Region, Ciphertext: unhex(t, v.Ciphertext), Context: map[string]string{"x": "y"}}); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Decrypt(other context) err = %v, want ErrDecrypt", err)
			}
		})
	}
	for _, v := range vf.Fingerprints {
		got, err := m.Fingerprint(ctx, v.Region, v.Type, []byte(v.Value))
		if err != nil || got != v.Fingerprint {
			t.Fatalf("Fingerprint(%s, %s) = %q, %v; want %q", v.Region, v.Type, got, err, v.Fingerprint)
		}
	}
	// A wrong root key is refused on these rows.
	_, err := New(ctx, Config{Store: loadVectorsStore(t, vf), Root: testRoot})
	wantErr(t, "New(wrong root on vector store)", err, ErrWrongRootKey)
}

func loadVectorsStore(t testing.TB, vf vectorFile) KeyStore {
	return loadVectors(t, vf).store
}
