package kms

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/sensitive"
)

// DefaultCacheTTL is how long a Manager trusts its cached copy of a key's
// metadata (state, primary version) before reading it again.
const DefaultCacheTTL = 5 * time.Second

// MetaRootCheck is the meta name of the root key check value.
const MetaRootCheck = "kms.root_check"

// Config configures a Manager.
type Config struct {
	// Store persists regions and keys. Required.
	Store KeyStore
	// Root is the 32-byte root key, from a KeySource. Required. The
	// Manager keeps only a cipher made from it, not the slice.
	Root sensitive.Bytes
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// CacheTTL bounds how stale cached key metadata may be: a key disabled
	// by another daemon stops working here within CacheTTL. Zero means
	// DefaultCacheTTL; a negative value disables metadata caching.
	CacheTTL time.Duration
	// Logger receives lifecycle events (region and key creation, rotation,
	// state changes, purges). It never receives values or key material.
	// Discarded if nil.
	Logger *slog.Logger
}

// Manager is the KMS: it owns regions and master keys, seals and opens
// envelopes, and serves the application KMS operations. It is safe for
// concurrent use, and several Managers (one per daemon) may share a
// KeyStore.
type Manager struct {
	store KeyStore
	root  cipher.AEAD
	now   func() time.Time
	ttl   time.Duration
	log   *slog.Logger
	rand  io.Reader // nil: crypto/rand; tests put a deterministic stream here

	mu       sync.RWMutex
	keys     map[string]cachedKey              // by key id; trusted for ttl
	aliases  map[aliasRef]cachedAlias          // (region, alias) → key id; trusted for ttl
	versions map[string]map[uint32]cipher.AEAD // key id → version → cipher; immutable
	regions  map[string][]byte                 // region → unwrapped fingerprint key; immutable
}

type cachedKey struct {
	key     Key
	fetched time.Time
}

type aliasRef struct{ region, alias string }

type cachedAlias struct {
	id      string
	fetched time.Time
}

// New returns a Manager for cfg.Store under cfg.Root. The first Manager to
// open a store records a check value of the root key in it; every later
// one verifies its root key against that value and fails with
// ErrWrongRootKey on a mismatch, so a wrong key is caught here rather than
// as undecryptable values later.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("kms: Config.Store is required")
	}
	if len(cfg.Root) != RootKeySize {
		return nil, fmt.Errorf("kms: Config.Root must be %d bytes, got %d", RootKeySize, len(cfg.Root))
	}
	m := &Manager{
		store:    cfg.Store,
		root:     newGCM(cfg.Root.Reveal()),
		now:      cfg.Now,
		ttl:      cmp.Or(cfg.CacheTTL, DefaultCacheTTL),
		log:      cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		keys:     make(map[string]cachedKey),
		aliases:  make(map[aliasRef]cachedAlias),
		versions: make(map[string]map[uint32]cipher.AEAD),
		regions:  make(map[string][]byte),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if err := m.checkRoot(ctx, rootCheckValue(cfg.Root.Reveal())); err != nil {
		return nil, err
	}
	return m, nil
}

// rootCheckValue is a key check value: a format byte and
// HMAC-SHA-256(root, label). It reveals nothing about the root key.
func rootCheckValue(root []byte) []byte {
	h := hmac.New(sha256.New, root)
	h.Write([]byte(aadCheck))
	return h.Sum([]byte{FormatV1})
}

func (m *Manager) checkRoot(ctx context.Context, want []byte) error {
	for range 2 {
		got, err := m.store.GetMeta(ctx, MetaRootCheck)
		switch {
		case err == nil:
			if len(got) != len(want) || got[0] != FormatV1 {
				return fmt.Errorf("kms: meta %s is malformed (%d bytes); the store is damaged or from a newer rotary", MetaRootCheck, len(got))
			}
			if subtle.ConstantTimeCompare(got, want) != 1 {
				return ErrWrongRootKey
			}
			return nil
		case !errors.Is(err, ErrNotFound):
			return fmt.Errorf("kms: read meta %s: %w", MetaRootCheck, err)
		}
		err = m.store.PutMetaIfAbsent(ctx, MetaRootCheck, want)
		if err == nil {
			m.log.Info("kms: recorded root key check value; this root key now guards the store")
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return fmt.Errorf("kms: write meta %s: %w", MetaRootCheck, err)
		}
		// Another daemon initialised the store first: verify against its value.
	}
	return fmt.Errorf("kms: meta %s: conflicting writes", MetaRootCheck)
}

// EnsureRegion creates the region if it does not exist, with a fresh
// fingerprint key. It is idempotent and safe to call from several daemons
// at once.
func (m *Manager) EnsureRegion(ctx context.Context, name string) error {
	if err := validateRegion(name); err != nil {
		return err
	}
	_, err := m.regionKey(ctx, name)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	fp := m.random(RootKeySize)
	defer clear(fp)
	r := Region{Name: name, FingerprintKey: m.wrapRoot(fp, regionKeyAAD(name)), CreatedAt: m.now()}
	err = m.store.CreateRegion(ctx, r)
	if err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("kms: create region %s: %w", name, err)
	}
	if err == nil {
		m.log.Info("kms: created region", "region", name)
	}
	// Read back, so that when another daemon won the race we use its key.
	_, err = m.regionKey(ctx, name)
	return err
}

// ListRegions returns every region, sorted by name. FingerprintKey is
// left empty: it is of no use outside the Manager.
func (m *Manager) ListRegions(ctx context.Context) ([]Region, error) {
	rs, err := m.store.ListRegions(ctx)
	if err != nil {
		return nil, fmt.Errorf("kms: list regions: %w", err)
	}
	for i := range rs {
		rs[i].FingerprintKey = nil
	}
	slices.SortFunc(rs, func(a, b Region) int { return strings.Compare(a.Name, b.Name) })
	return rs, nil
}

// regionKey returns the region's unwrapped fingerprint key, which also
// proves the region exists. Regions are never deleted, so it is cached for
// good.
func (m *Manager) regionKey(ctx context.Context, name string) ([]byte, error) {
	m.mu.RLock()
	key, ok := m.regions[name]
	m.mu.RUnlock()
	if ok {
		return key, nil
	}
	r, err := m.store.GetRegion(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, notFoundf("region %s does not exist", name)
	}
	if err != nil {
		return nil, fmt.Errorf("kms: read region %s: %w", name, err)
	}
	key, ok = m.unwrapRoot(r.FingerprintKey, regionKeyAAD(name))
	if !ok || len(key) != RootKeySize {
		return nil, fmt.Errorf("kms: region %s: stored fingerprint key does not open under the root key", name)
	}
	m.mu.Lock()
	m.regions[name] = key
	m.mu.Unlock()
	return key, nil
}

// wrapRoot seals key material under the root key: a format byte, a random
// nonce and the AES-256-GCM ciphertext with tag.
func (m *Manager) wrapRoot(plain, aad []byte) []byte {
	out := make([]byte, 0, 1+nonceSize+len(plain)+tagSize)
	nonce := m.random(nonceSize)
	out = append(out, FormatV1)
	out = append(out, nonce...)
	return m.root.Seal(out, nonce, plain, aad)
}

func (m *Manager) unwrapRoot(wrapped, aad []byte) ([]byte, bool) {
	if len(wrapped) < 1+nonceSize+tagSize || wrapped[0] != FormatV1 {
		return nil, false
	}
	plain, err := m.root.Open(nil, wrapped[1:1+nonceSize], wrapped[1+nonceSize:], aad)
	return plain, err == nil
}

// random returns n bytes from the Manager's random source.
func (m *Manager) random(n int) []byte { return randomBytes(m.rand, n) }

// read fills b from the Manager's random source.
func (m *Manager) read(b []byte) {
	if m.rand == nil {
		rand.Read(b) // never fails
		return
	}
	if _, err := io.ReadFull(m.rand, b); err != nil {
		panic("kms: random source failed: " + err.Error())
	}
}

func randomBytes(r io.Reader, n int) []byte {
	b := make([]byte, n)
	if r == nil {
		rand.Read(b) // never fails
		return b
	}
	if _, err := io.ReadFull(r, b); err != nil {
		// crypto/rand never fails (it crashes the program instead since
		// Go 1.24); neither may a substitute.
		panic("kms: random source failed: " + err.Error())
	}
	return b
}

// newGCM returns AES-256-GCM with a 96-bit nonce for a 32-byte key.
func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("kms: " + err.Error()) // only for a wrong key size, a bug here
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic("kms: " + err.Error())
	}
	return gcm
}
