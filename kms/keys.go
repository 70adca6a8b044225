package kms

import (
	"cmp"
	"context"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultAlias is the alias of the key a region uses when a caller names
// none. It is created on first use.
const DefaultAlias = "default"

// AliasPrefix starts a key reference that names an alias.
const AliasPrefix = "alias/"

// Limits on key parameters.
const (
	MinDeletionWindow    = 7 * 24 * time.Hour
	MaxDeletionWindow    = 30 * 24 * time.Hour
	MinRotationPeriod    = 24 * time.Hour
	MaxRotationPeriod    = 10 * 365 * 24 * time.Hour
	maxDescriptionLength = 8192
)

// CreateKeyParams describes a new master key.
type CreateKeyParams struct {
	Region string
	// Alias names the key within its region, with or without the "alias/"
	// prefix: letters, digits, '/', '_' and '-', at most 128. Optional; a
	// key without an alias is referred to by its id.
	Alias       string
	Description string
	// RotationPeriod, if non-zero, makes RotateDueKeys add a key version
	// this often (at least a day).
	RotationPeriod time.Duration
}

// CreateKey creates an enabled master key with one version of fresh
// material in an existing region. A taken alias is an error matching
// ErrConflict.
func (m *Manager) CreateKey(ctx context.Context, p CreateKeyParams) (Key, error) {
	if err := validateRegion(p.Region); err != nil {
		return Key{}, err
	}
	alias := strings.TrimPrefix(p.Alias, AliasPrefix)
	if p.Alias != "" {
		if err := validateAlias(alias); err != nil {
			return Key{}, err
		}
	}
	if len(p.Description) > maxDescriptionLength {
		return Key{}, invalidf("description is %d bytes, at most %d allowed", len(p.Description), maxDescriptionLength)
	}
	if p.RotationPeriod != 0 && (p.RotationPeriod < MinRotationPeriod || p.RotationPeriod > MaxRotationPeriod) {
		return Key{}, invalidf("rotation period %s: must be 0 (none) or between %s and %s", p.RotationPeriod, MinRotationPeriod, MaxRotationPeriod)
	}
	if _, err := m.regionKey(ctx, p.Region); err != nil {
		return Key{}, err
	}
	for attempt := 0; ; attempt++ {
		now := m.now()
		k := Key{
			ID:             "mk-" + hex.EncodeToString(m.random(8)),
			Region:         p.Region,
			Alias:          alias,
			Description:    p.Description,
			State:          KeyEnabled,
			PrimaryVersion: 1,
			RotationPeriod: p.RotationPeriod,
			NextRotationAt: nextRotation(now, p.RotationPeriod),
			CreatedAt:      now,
			UpdatedAt:      now,
		}
		v, aead := m.newKeyVersion(k.ID, 1, now)
		err := m.store.CreateKey(ctx, k, v)
		if errors.Is(err, ErrConflict) {
			if alias != "" {
				if _, aerr := m.store.GetKeyByAlias(ctx, p.Region, alias); aerr == nil {
					return Key{}, &kmsError{msg: fmt.Sprintf("kms: alias/%s already exists in region %s", alias, p.Region), kind: ErrConflict}
				}
			}
			if attempt < 3 {
				continue // a key id collision: vanishingly rare, draw again
			}
		}
		if err != nil {
			return Key{}, fmt.Errorf("kms: create key in region %s: %w", p.Region, err)
		}
		m.rememberVersion(k.ID, 1, aead)
		m.remember(k, now)
		m.log.Info("kms: created key", "region", k.Region, "key", k.ID, "alias", k.Alias)
		return k, nil
	}
}

// DefaultKey returns the region's alias/default key, creating it on first
// use. When several daemons race to create it, one wins and all return
// that key.
func (m *Manager) DefaultKey(ctx context.Context, region string) (Key, error) {
	if err := validateRegion(region); err != nil {
		return Key{}, err
	}
	k, err := m.byAlias(ctx, region, DefaultAlias, false)
	if !errors.Is(err, ErrNotFound) {
		return k, err
	}
	k, err = m.CreateKey(ctx, CreateKeyParams{
		Region:      region,
		Alias:       DefaultAlias,
		Description: "default key of region " + region,
	})
	if errors.Is(err, ErrConflict) {
		return m.byAlias(ctx, region, DefaultAlias, true)
	}
	return k, err
}

// DescribeKey returns the key's metadata, read from the store. ref is a
// key id or "alias/NAME"; the key must belong to region.
func (m *Manager) DescribeKey(ctx context.Context, region, ref string) (Key, error) {
	return m.resolve(ctx, region, ref, true)
}

// ListKeys returns the keys of region (of every region if region is ""),
// sorted by region, then alias, then id.
func (m *Manager) ListKeys(ctx context.Context, region string) ([]Key, error) {
	if region != "" {
		if err := validateRegion(region); err != nil {
			return nil, err
		}
	}
	ks, err := m.store.ListKeys(ctx, region)
	if err != nil {
		return nil, fmt.Errorf("kms: list keys: %w", err)
	}
	slices.SortFunc(ks, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Alias, b.Alias), cmp.Compare(a.ID, b.ID))
	})
	return ks, nil
}

// RotateKey adds a version of fresh material to an enabled key and makes
// it primary: new seals use it, envelopes of older versions still open,
// and Rewrap moves them to it. It returns the updated key.
func (m *Manager) RotateKey(ctx context.Context, region, ref string) (Key, error) {
	k, err := m.resolve(ctx, region, ref, true)
	if err != nil {
		return Key{}, err
	}
	return m.rotate(ctx, k)
}

// rotate adds a key version to k, which the caller has just read.
func (m *Manager) rotate(ctx context.Context, k Key) (Key, error) {
	if err := usable(k); err != nil {
		return Key{}, err
	}
	for attempt := 0; ; attempt++ {
		vs, err := m.store.GetKeyVersions(ctx, k.ID)
		if err != nil {
			return Key{}, fmt.Errorf("kms: rotate key %s: read versions: %w", k.ID, err)
		}
		next := k.PrimaryVersion + 1
		if len(vs) > 0 {
			next = max(next, vs[len(vs)-1].Version+1)
		}
		now := m.now()
		v, aead := m.newKeyVersion(k.ID, uint32(next), now)
		err = m.store.AddKeyVersion(ctx, v)
		if errors.Is(err, ErrConflict) && attempt < 5 {
			continue // another daemon rotated at the same moment; go after it
		}
		if err != nil {
			return Key{}, fmt.Errorf("kms: rotate key %s: %w", k.ID, err)
		}
		m.rememberVersion(k.ID, uint32(next), aead)
		// AddKeyVersion moved PrimaryVersion; read the key back and restart
		// the automatic rotation clock, without undoing a change another
		// daemon made meanwhile (compare-and-swap, read again on ErrStale).
		for tries := 0; ; tries++ {
			k, err = m.store.GetKey(ctx, k.ID)
			if err != nil {
				return Key{}, fmt.Errorf("kms: rotate key %s: read back: %w", v.KeyID, err)
			}
			prev := k.UpdatedAt
			k.NextRotationAt = nextRotation(now, k.RotationPeriod)
			k.UpdatedAt = after(now, prev)
			err = m.store.UpdateKey(ctx, k, prev)
			if errors.Is(err, ErrStale) && tries < 10 {
				continue
			}
			if err != nil {
				return Key{}, fmt.Errorf("kms: rotate key %s: %w", k.ID, err)
			}
			break
		}
		m.remember(k, now)
		m.log.Info("kms: rotated key", "region", k.Region, "key", k.ID, "version", next)
		return k, nil
	}
}

// RotateDueKeys rotates every enabled key whose NextRotationAt has
// passed and returns how many it rotated. It goes on past a failing key
// and returns all failures joined. Meant for a housekeeping job.
func (m *Manager) RotateDueKeys(ctx context.Context) (int, error) {
	ks, err := m.store.ListKeys(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("kms: rotate due keys: %w", err)
	}
	n := 0
	var errs []error
	for _, k := range ks {
		if !rotationDue(k, m.now()) {
			continue
		}
		k, err := m.store.GetKey(ctx, k.ID) // another daemon may have got there first
		if errors.Is(err, ErrNotFound) || (err == nil && !rotationDue(k, m.now())) {
			continue
		}
		if err == nil {
			_, err = m.rotate(ctx, k)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func rotationDue(k Key, now time.Time) bool {
	return k.State == KeyEnabled && k.NextRotationAt != nil && !k.NextRotationAt.After(now)
}

// DisableKey disables the key: it no longer seals or opens anything until
// EnableKey. Disabling a disabled key does nothing.
func (m *Manager) DisableKey(ctx context.Context, region, ref string) (Key, error) {
	return m.transition(ctx, region, ref, "disabled key", func(k *Key) error {
		if k.State == KeyPendingDeletion {
			return stateError(*k, ErrKeyPendingDeletion)
		}
		k.State = KeyDisabled
		return nil
	})
}

// EnableKey enables a disabled key. Enabling an enabled key does nothing;
// a key pending deletion must first have its deletion cancelled.
func (m *Manager) EnableKey(ctx context.Context, region, ref string) (Key, error) {
	return m.transition(ctx, region, ref, "enabled key", func(k *Key) error {
		if k.State == KeyPendingDeletion {
			return stateError(*k, ErrKeyPendingDeletion)
		}
		k.State = KeyEnabled
		return nil
	})
}

// ScheduleKeyDeletion makes the key pending deletion: it neither seals nor
// opens, and once window (7 to 30 days) has passed PurgeDueKeys deletes it
// with all its material, after which nothing it protected can be opened
// by anyone. CancelKeyDeletion undoes it until then.
func (m *Manager) ScheduleKeyDeletion(ctx context.Context, region, ref string, window time.Duration) (Key, error) {
	if window < MinDeletionWindow || window > MaxDeletionWindow {
		return Key{}, invalidf("deletion window %s: must be between 7 and 30 days", window)
	}
	return m.transition(ctx, region, ref, "scheduled key deletion", func(k *Key) error {
		if k.State == KeyPendingDeletion {
			return stateError(*k, ErrKeyPendingDeletion)
		}
		date := m.now().Add(window)
		k.State = KeyPendingDeletion
		k.DeletionDate = &date
		return nil
	})
}

// CancelKeyDeletion takes a key out of pending deletion. As in AWS KMS it
// comes back disabled; EnableKey makes it usable again.
func (m *Manager) CancelKeyDeletion(ctx context.Context, region, ref string) (Key, error) {
	return m.transition(ctx, region, ref, "cancelled key deletion", func(k *Key) error {
		if k.State != KeyPendingDeletion {
			return &kmsError{msg: fmt.Sprintf("kms: key %s is not pending deletion", k.ID), kind: ErrInvalidState}
		}
		k.State = KeyDisabled
		k.DeletionDate = nil
		return nil
	})
}

// transition reads the key from the store, applies change and writes it
// back (unless change left it as it was), then refreshes the cache at
// once so the change takes effect here without waiting for the TTL.
//
// The write is a compare-and-swap on the key's UpdatedAt: when another
// daemon changed the key since it was read, it is read again and change
// decides again on what is there now (a disable racing a schedule-deletion
// ends as one of them, never as a mix).
func (m *Manager) transition(ctx context.Context, region, ref, event string, change func(*Key) error) (Key, error) {
	var k Key
	var now time.Time
	for tries := 0; ; tries++ {
		var err error
		k, err = m.resolve(ctx, region, ref, true)
		if err != nil {
			return Key{}, err
		}
		before := k
		if err := change(&k); err != nil {
			return Key{}, err
		}
		if k.State == before.State && sameTime(k.DeletionDate, before.DeletionDate) {
			return k, nil
		}
		now = m.now()
		k.UpdatedAt = after(now, before.UpdatedAt)
		err = m.store.UpdateKey(ctx, k, before.UpdatedAt)
		if errors.Is(err, ErrStale) && tries < 10 {
			continue
		}
		if err != nil {
			return Key{}, fmt.Errorf("kms: update key %s: %w", k.ID, err)
		}
		break
	}
	m.remember(k, now)
	m.log.Info("kms: "+event, "region", k.Region, "key", k.ID, "state", k.State)
	return k, nil
}

// PurgeDueKeys deletes, with all their material, the keys whose deletion
// date has passed, and returns how many it deleted. Meant for a
// housekeeping job.
func (m *Manager) PurgeDueKeys(ctx context.Context) (int, error) {
	ks, err := m.store.ListKeys(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("kms: purge due keys: %w", err)
	}
	n := 0
	var errs []error
	for _, k := range ks {
		if !deletionDue(k, m.now()) {
			continue
		}
		// Read again just before deleting: the deletion may have been
		// cancelled since the list was read.
		k, err := m.store.GetKey(ctx, k.ID)
		if errors.Is(err, ErrNotFound) || (err == nil && !deletionDue(k, m.now())) {
			continue
		}
		if err == nil {
			err = m.store.DeleteKey(ctx, k.ID)
		}
		if errors.Is(err, ErrNotFound) {
			continue // another daemon purged it
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kms: purge key %s: %w", k.ID, err))
			continue
		}
		m.forget(k.ID)
		m.log.Info("kms: purged key and its material", "region", k.Region, "key", k.ID)
		n++
	}
	return n, errors.Join(errs...)
}

func deletionDue(k Key, now time.Time) bool {
	return k.State == KeyPendingDeletion && k.DeletionDate != nil && !k.DeletionDate.After(now)
}

// usable reports why k cannot seal, if it cannot.
func usable(k Key) error {
	switch k.State {
	case KeyEnabled:
		return nil
	case KeyDisabled:
		return stateError(k, ErrKeyDisabled)
	case KeyPendingDeletion:
		return stateError(k, ErrKeyPendingDeletion)
	default:
		return &kmsError{msg: fmt.Sprintf("kms: key %s has unknown state %q", k.ID, k.State), kind: ErrInvalidState}
	}
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

func nextRotation(now time.Time, period time.Duration) *time.Time {
	if period <= 0 {
		return nil
	}
	t := now.Add(period)
	return &t
}

// newKeyVersion makes fresh material for version v of key id, returning the
// record to store (material wrapped by the root key) and a ready cipher.
func (m *Manager) newKeyVersion(id string, v uint32, now time.Time) (KeyVersion, cipher.AEAD) {
	material := m.random(RootKeySize)
	defer clear(material)
	return KeyVersion{
		KeyID:     id,
		Version:   int(v),
		Material:  m.wrapRoot(material, keyMaterialAAD(id, v)),
		CreatedAt: now,
	}, newGCM(material)
}

// resolve finds the key that ref names in region. ref is a key id or
// "alias/NAME". fresh bypasses the metadata cache (for administrative
// calls, which must see the latest state); otherwise cached metadata up to
// the TTL old is good enough.
func (m *Manager) resolve(ctx context.Context, region, ref string, fresh bool) (Key, error) {
	if err := validateRegion(region); err != nil {
		return Key{}, err
	}
	if alias, ok := strings.CutPrefix(ref, AliasPrefix); ok {
		if err := validateAlias(alias); err != nil {
			return Key{}, err
		}
		return m.byAlias(ctx, region, alias, fresh)
	}
	if !isKeyID(ref) {
		return Key{}, invalidf("key reference %q: want a key id (mk-…) or alias/NAME", ref)
	}
	k, err := m.byID(ctx, ref, fresh)
	if err == nil && k.Region != region {
		err = notFoundf("key %s not found in region %s", ref, region)
	}
	return k, err
}

// byID returns the key with this id, from the cache if allowed and fresh
// enough.
func (m *Manager) byID(ctx context.Context, id string, fresh bool) (Key, error) {
	now := m.now()
	if !fresh {
		m.mu.RLock()
		e, ok := m.keys[id]
		m.mu.RUnlock()
		if ok && now.Sub(e.fetched) < m.ttl {
			return e.key, nil
		}
	}
	k, err := m.store.GetKey(ctx, id)
	if errors.Is(err, ErrNotFound) {
		m.forget(id)
		return Key{}, notFoundf("key %s not found", id)
	}
	if err != nil {
		return Key{}, fmt.Errorf("kms: read key %s: %w", id, err)
	}
	m.remember(k, now)
	return k, nil
}

// byAlias returns the key of region with this alias (without prefix).
func (m *Manager) byAlias(ctx context.Context, region, alias string, fresh bool) (Key, error) {
	now := m.now()
	ref := aliasRef{region, alias}
	if !fresh {
		m.mu.RLock()
		a, ok := m.aliases[ref]
		e, kok := m.keys[a.id]
		m.mu.RUnlock()
		if ok && kok && now.Sub(a.fetched) < m.ttl && now.Sub(e.fetched) < m.ttl &&
			e.key.Region == region && e.key.Alias == alias {
			return e.key, nil
		}
	}
	k, err := m.store.GetKeyByAlias(ctx, region, alias)
	if errors.Is(err, ErrNotFound) {
		m.mu.Lock()
		delete(m.aliases, ref)
		m.mu.Unlock()
		return Key{}, notFoundf("key alias/%s not found in region %s", alias, region)
	}
	if err != nil {
		return Key{}, fmt.Errorf("kms: read key alias/%s in region %s: %w", alias, region, err)
	}
	m.remember(k, now)
	return k, nil
}

// remember caches k's metadata (and its alias) as read at time at.
func (m *Manager) remember(k Key, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[k.ID] = cachedKey{key: k, fetched: at}
	if k.Alias != "" {
		m.aliases[aliasRef{k.Region, k.Alias}] = cachedAlias{id: k.ID, fetched: at}
	}
}

// forget drops everything cached about a key that no longer exists.
func (m *Manager) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[id]; ok && e.key.Alias != "" {
		ref := aliasRef{e.key.Region, e.key.Alias}
		if m.aliases[ref].id == id {
			delete(m.aliases, ref)
		}
	}
	delete(m.keys, id)
	delete(m.versions, id)
}

func (m *Manager) rememberVersion(id string, v uint32, aead cipher.AEAD) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.versions[id]
	if vs == nil {
		vs = make(map[uint32]cipher.AEAD)
		m.versions[id] = vs
	}
	vs[v] = aead
}

// versionAEAD returns a ready cipher for version v of key id. Key versions
// never change, so unwrapped ones are kept until the key is purged; on a
// miss every version of the key is loaded at once.
func (m *Manager) versionAEAD(ctx context.Context, id string, v uint32) (cipher.AEAD, error) {
	m.mu.RLock()
	aead, ok := m.versions[id][v]
	m.mu.RUnlock()
	if ok {
		return aead, nil
	}
	vs, err := m.store.GetKeyVersions(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("kms: read versions of key %s: %w", id, err)
	}
	for _, kv := range vs {
		if kv.KeyID != id || kv.Version < 1 || int64(kv.Version) > int64(^uint32(0)) {
			return nil, fmt.Errorf("kms: key %s: store returned a version record with key %q version %d", id, kv.KeyID, kv.Version)
		}
		material, ok := m.unwrapRoot(kv.Material, keyMaterialAAD(id, uint32(kv.Version)))
		if !ok || len(material) != RootKeySize {
			return nil, fmt.Errorf("kms: key %s version %d: stored material does not open under the root key", id, kv.Version)
		}
		m.rememberVersion(id, uint32(kv.Version), newGCM(material))
		clear(material)
	}
	m.mu.RLock()
	aead, ok = m.versions[id][v]
	m.mu.RUnlock()
	if !ok {
		return nil, notFoundf("key %s has no version %d", id, v)
	}
	return aead, nil
}

// validateRegion checks a region name: 1 to 64 lowercase letters, digits
// and '-'.
func validateRegion(name string) error {
	if len(name) < 1 || len(name) > 64 || !onlyChars(name, func(c byte) bool {
		return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
	}) {
		return invalidf("region name %q: want 1 to 64 lowercase letters, digits or '-'", name)
	}
	return nil
}

// validateAlias checks an alias without its "alias/" prefix: 1 to 128
// letters, digits, '/', '_' and '-'.
func validateAlias(alias string) error {
	if len(alias) < 1 || len(alias) > 128 || !onlyChars(alias, func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '_' || c == '-'
	}) {
		return invalidf("alias %q: want 1 to 128 letters, digits, '/', '_' or '-' after alias/", alias)
	}
	return nil
}

// isKeyID reports whether s is a key id: "mk-" and 16 lowercase hex digits.
func isKeyID(s string) bool {
	rest, ok := strings.CutPrefix(s, "mk-")
	return ok && len(rest) == 16 && onlyChars(rest, func(c byte) bool {
		return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
	})
}

func onlyChars(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// after returns now, or a microsecond past prev when the clock has not
// moved past it: a compare-and-swap on UpdatedAt needs every write to
// change it (the stores keep microseconds).
func after(now, prev time.Time) time.Time {
	if next := prev.Add(time.Microsecond); now.Before(next) {
		return next
	}
	return now
}
