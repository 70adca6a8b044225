package kms

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MemKeyStore is an in-memory KeyStore for this package's tests and
// examples only; the daemon adapts its real store. It copies every record
// in and out, like a database would, and counts calls so tests can prove
// the cache spares the store.
type MemKeyStore struct {
	mu       sync.Mutex
	meta     map[string][]byte
	regions  map[string]Region
	keys     map[string]Key
	versions map[string][]KeyVersion
	calls    atomic.Int64
}

var _ KeyStore = (*MemKeyStore)(nil)

// NewMemKeyStore returns an empty in-memory KeyStore (test-only).
func NewMemKeyStore() *MemKeyStore {
	return &MemKeyStore{
		meta:     map[string][]byte{},
		regions:  map[string]Region{},
		keys:     map[string]Key{},
		versions: map[string][]KeyVersion{},
	}
}

func (s *MemKeyStore) lock() func() {
	s.calls.Add(1)
	s.mu.Lock()
	return s.mu.Unlock
}

func (s *MemKeyStore) GetMeta(_ context.Context, name string) ([]byte, error) {
	defer s.lock()()
	v, ok := s.meta[name]
	if !ok {
		return nil, ErrNotFound
	}
	return slices.Clone(v), nil
}

func (s *MemKeyStore) PutMetaIfAbsent(_ context.Context, name string, value []byte) error {
	defer s.lock()()
	if _, ok := s.meta[name]; ok {
		return ErrConflict
	}
	s.meta[name] = slices.Clone(value)
	return nil
}

func (s *MemKeyStore) CreateRegion(_ context.Context, r Region) error {
	defer s.lock()()
	if _, ok := s.regions[r.Name]; ok {
		return ErrConflict
	}
	r.FingerprintKey = slices.Clone(r.FingerprintKey)
	s.regions[r.Name] = r
	return nil
}

func (s *MemKeyStore) GetRegion(_ context.Context, name string) (Region, error) {
	defer s.lock()()
	r, ok := s.regions[name]
	if !ok {
		return Region{}, ErrNotFound
	}
	r.FingerprintKey = slices.Clone(r.FingerprintKey)
	return r, nil
}

func (s *MemKeyStore) ListRegions(context.Context) ([]Region, error) {
	defer s.lock()()
	var rs []Region
	for _, r := range s.regions {
		r.FingerprintKey = slices.Clone(r.FingerprintKey)
		rs = append(rs, r)
	}
	return rs, nil
}

func (s *MemKeyStore) aliasTaken(k Key) bool {
	for _, o := range s.keys {
		if k.Alias != "" && o.ID != k.ID && o.Region == k.Region && o.Alias == k.Alias {
			return true
		}
	}
	return false
}

func (s *MemKeyStore) CreateKey(_ context.Context, k Key, v KeyVersion) error {
	defer s.lock()()
	if _, ok := s.keys[k.ID]; ok || s.aliasTaken(k) {
		return ErrConflict
	}
	s.keys[k.ID] = copyKey(k)
	v.Material = slices.Clone(v.Material)
	s.versions[k.ID] = []KeyVersion{v}
	return nil
}

func (s *MemKeyStore) GetKey(_ context.Context, id string) (Key, error) {
	defer s.lock()()
	k, ok := s.keys[id]
	if !ok {
		return Key{}, ErrNotFound
	}
	return copyKey(k), nil
}

func (s *MemKeyStore) GetKeyByAlias(_ context.Context, region, alias string) (Key, error) {
	defer s.lock()()
	for _, k := range s.keys {
		if k.Region == region && k.Alias == alias && alias != "" {
			return copyKey(k), nil
		}
	}
	return Key{}, ErrNotFound
}

func (s *MemKeyStore) ListKeys(_ context.Context, region string) ([]Key, error) {
	defer s.lock()()
	var ks []Key
	for _, k := range s.keys {
		if region == "" || k.Region == region {
			ks = append(ks, copyKey(k))
		}
	}
	return ks, nil
}

func (s *MemKeyStore) UpdateKey(_ context.Context, k Key, ifUpdatedAt time.Time) error {
	defer s.lock()()
	old, ok := s.keys[k.ID]
	if !ok {
		return ErrNotFound
	}
	if !ifUpdatedAt.IsZero() && !old.UpdatedAt.Equal(ifUpdatedAt) {
		return ErrStale
	}
	if s.aliasTaken(k) {
		return ErrConflict
	}
	k.Region, k.CreatedAt, k.PrimaryVersion = old.Region, old.CreatedAt, old.PrimaryVersion
	s.keys[k.ID] = copyKey(k)
	return nil
}

func (s *MemKeyStore) AddKeyVersion(_ context.Context, v KeyVersion) error {
	defer s.lock()()
	k, ok := s.keys[v.KeyID]
	if !ok {
		return ErrNotFound
	}
	for _, o := range s.versions[v.KeyID] {
		if o.Version == v.Version {
			return ErrConflict
		}
	}
	v.Material = slices.Clone(v.Material)
	s.versions[v.KeyID] = append(s.versions[v.KeyID], v)
	slices.SortFunc(s.versions[v.KeyID], func(a, b KeyVersion) int { return a.Version - b.Version })
	k.PrimaryVersion = v.Version
	s.keys[k.ID] = k
	return nil
}

func (s *MemKeyStore) GetKeyVersions(_ context.Context, keyID string) ([]KeyVersion, error) {
	defer s.lock()()
	var vs []KeyVersion
	for _, v := range s.versions[keyID] {
		v.Material = slices.Clone(v.Material)
		vs = append(vs, v)
	}
	return vs, nil
}

func (s *MemKeyStore) DeleteKey(_ context.Context, keyID string) error {
	defer s.lock()()
	if _, ok := s.keys[keyID]; !ok {
		return ErrNotFound
	}
	delete(s.keys, keyID)
	delete(s.versions, keyID)
	return nil
}

// Calls reports how many KeyStore calls the store has served.
func (s *MemKeyStore) Calls() int64 { return s.calls.Load() }

func copyKey(k Key) Key {
	if k.NextRotationAt != nil {
		t := *k.NextRotationAt
		k.NextRotationAt = &t
	}
	if k.DeletionDate != nil {
		t := *k.DeletionDate
		k.DeletionDate = &t
	}
	return k
}
