package secrets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// readCache keeps the hot read path off the store: a secret's metadata and
// stages (for ttl), and sealed envelopes of versions (immutable, so kept
// until evicted). It holds ciphertext only, never plaintext.
//
// Freshness: every write made through this Service invalidates the secret
// at once, so a daemon always reads its own writes. A write made by another
// daemon sharing the store is seen within ttl. Clients that refresh on
// events fetch by version number, which is exact: a version, once written,
// never changes its value. Envelopes are keyed by the secret's creation
// time as well as name and version, so a secret deleted and created again
// under the same name never serves its predecessor's ciphertext once its
// metadata has been refreshed.
type readCache struct {
	ttl      time.Duration
	maxBytes int
	now      func() time.Time

	mu       sync.Mutex
	meta     map[string]metaEntry
	versions map[versionKey]store.SecretVersion
	bytes    int
	// gen counts invalidations. A reader stores what it fetched only if no
	// invalidation happened meanwhile, so a write that commits while a
	// read is in flight cannot leave the read's stale copy behind.
	gen uint64
}

type metaEntry struct {
	sec     store.Secret
	stages  map[string]int64
	fetched time.Time
}

type versionKey struct {
	name    string
	created int64
	version int64
}

func newReadCache(ttl time.Duration, maxBytes int, now func() time.Time) *readCache {
	return &readCache{ttl: ttl, maxBytes: maxBytes, now: now, meta: map[string]metaEntry{}, versions: map[versionKey]store.SecretVersion{}}
}

func (c *readCache) enabled() bool { return c != nil && c.ttl > 0 }

// invalidate forgets a secret's metadata and envelopes.
func (c *readCache) invalidate(name string) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.meta, name)
	for k, v := range c.versions {
		if k.name == name {
			c.bytes -= len(v.Envelope)
			delete(c.versions, k)
		}
	}
}

// secret returns the metadata and stages of a secret, from the cache when
// fresh.
func (c *readCache) secret(ctx context.Context, st store.Store, name string) (store.Secret, map[string]int64, error) {
	var gen uint64
	if c.enabled() {
		c.mu.Lock()
		e, ok := c.meta[name]
		gen = c.gen
		c.mu.Unlock()
		if ok && c.now().Sub(e.fetched) < c.ttl {
			return e.sec, e.stages, nil
		}
	}
	sec, err := st.GetSecret(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Secret{}, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return store.Secret{}, nil, err
	}
	stages, err := st.GetStages(ctx, name)
	if err != nil {
		return store.Secret{}, nil, err
	}
	if c.enabled() {
		c.mu.Lock()
		if len(c.meta) > 100_000 {
			clear(c.meta)
		}
		if c.gen == gen {
			c.meta[name] = metaEntry{sec: sec, stages: stages, fetched: c.now()}
		}
		c.mu.Unlock()
	}
	return sec, stages, nil
}

// version returns one sealed version.
func (c *readCache) version(ctx context.Context, st store.Store, sec store.Secret, v int64) (store.SecretVersion, error) {
	k := versionKey{name: sec.Name, created: sec.CreatedAt.UnixMicro(), version: v}
	var gen uint64
	if c.enabled() {
		c.mu.Lock()
		ver, ok := c.versions[k]
		gen = c.gen
		c.mu.Unlock()
		if ok {
			return ver, nil
		}
	}
	ver, err := st.GetVersion(ctx, sec.Name, v)
	if err != nil {
		return ver, err
	}
	if c.enabled() && len(ver.Envelope) <= c.maxBytes/16 {
		c.mu.Lock()
		for c.bytes+len(ver.Envelope) > c.maxBytes && len(c.versions) > 0 {
			for k2, v2 := range c.versions { // map order: random eviction
				c.bytes -= len(v2.Envelope)
				delete(c.versions, k2)
				break
			}
		}
		if _, dup := c.versions[k]; !dup && c.gen == gen {
			c.versions[k] = ver
			c.bytes += len(ver.Envelope)
		}
		c.mu.Unlock()
	}
	return ver, nil
}

// drop forgets one cached envelope (one that failed to open).
func (c *readCache) drop(sec store.Secret, v int64) {
	if !c.enabled() {
		return
	}
	k := versionKey{name: sec.Name, created: sec.CreatedAt.UnixMicro(), version: v}
	c.mu.Lock()
	if ver, ok := c.versions[k]; ok {
		c.bytes -= len(ver.Envelope)
		delete(c.versions, k)
	}
	c.mu.Unlock()
}
