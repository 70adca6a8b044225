package kms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/sensitive"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// detRand is a deterministic "random" stream: SHA-256 of a seed and a
// counter. For test vectors only.
type detRand struct {
	mu   sync.Mutex
	seed string
	n    uint64
	buf  []byte
}

func newDetRand(seed string) *detRand { return &detRand{seed: seed} }

func (r *detRand) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		if len(r.buf) == 0 {
			h := sha256.New()
			h.Write([]byte(r.seed))
			h.Write(binary.BigEndian.AppendUint64(nil, r.n))
			r.n++
			r.buf = h.Sum(nil)
		}
		p[i], r.buf = r.buf[0], r.buf[1:]
	}
	return len(p), nil
}

// testRoot is a fixed root key.
var testRoot = sensitive.Bytes(bytes.Repeat([]byte{0x42}, RootKeySize))

// bundle is what most tests need: a Manager on an in-memory store with a
// hand-driven clock, and the region "eu-west-1" created.
type bundle struct {
	ctx   context.Context
	m     *Manager
	store *MemKeyStore
	clock *testClock
}

const testRegion = "eu-west-1"

func setup(t testing.TB) *bundle {
	t.Helper()
	b := &bundle{ctx: context.Background(), store: NewMemKeyStore(), clock: newTestClock()}
	b.m = b.newManager(t)
	if err := b.m.EnsureRegion(b.ctx, testRegion); err != nil {
		t.Fatalf("EnsureRegion: %v", err)
	}
	return b
}

// newManager opens another Manager (another daemon) on the bundle's store.
func (b *bundle) newManager(t testing.TB) *Manager {
	t.Helper()
	m, err := New(b.ctx, Config{Store: b.store, Root: testRoot, Now: b.clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func (b *bundle) seal(t testing.TB, m *Manager, p SealParams) Sealed {
	t.Helper()
	s, err := m.Seal(b.ctx, p)
	if err != nil {
		t.Fatalf("Seal(%s/%s v%d) err = %v", p.Region, p.Secret, p.Version, err)
	}
	return s
}

func (b *bundle) mustOpen(t testing.TB, m *Manager, p OpenParams, want []byte) {
	t.Helper()
	got, err := m.Open(b.ctx, p)
	if err != nil {
		t.Fatalf("Open(%s/%s v%d) err = %v, want nil", p.Region, p.Secret, p.Version, err)
	}
	if !bytes.Equal(got.Reveal(), want) {
		t.Fatalf("Open(%s/%s v%d) returned different plaintext", p.Region, p.Secret, p.Version)
	}
}

func (b *bundle) openFails(t testing.TB, m *Manager, p OpenParams) {
	t.Helper()
	got, err := m.Open(b.ctx, p)
	if !isUniformDecryptErr(err) {
		t.Fatalf("Open(%s/%s v%d) err = %v, want exactly ErrDecrypt", p.Region, p.Secret, p.Version, err)
	}
	if got != nil {
		t.Fatalf("Open returned %d bytes with an error", got.Len())
	}
}

// isUniformDecryptErr reports whether err is ErrDecrypt itself: not a
// wrapped error with a more telling message.
func isUniformDecryptErr(err error) bool {
	return err == ErrDecrypt //nolint:errorlint // the point is identity
}

func wantErr(t testing.TB, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s err = %v, want %v", call, err, want)
	}
}

func openParams(s SealParams, env []byte) OpenParams {
	return OpenParams{Region: s.Region, Secret: s.Secret, Version: s.Version, Envelope: env}
}
