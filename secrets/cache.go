package secrets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// ChangeFeed brings the secret changes that other daemons sharing the
// store commit to this daemon's read cache (store/postgres.Listener, over
// PostgreSQL LISTEN/NOTIFY). The writing side is store.Ops'
// NotifySecretChanged, which every write of the Service calls inside its
// transaction.
type ChangeFeed interface {
	// Subscribe registers the cache: changed(name) after a change to the
	// secret name committed, on any daemon; reset() when changes may have
	// been missed (the feed's connection was lost and is back), so that
	// everything cached must go.
	Subscribe(changed func(name string), reset func())
	// Current reports whether every change committed more than a short,
	// fixed time ago (the feed's bound) has been passed to changed or
	// covered by reset. While it is false the cache is not used.
	Current() bool
}

// readCache keeps the hot read path off the store: a secret's metadata and
// stages (for ttl), and sealed envelopes of versions (immutable, so kept
// until evicted). It holds ciphertext only, never plaintext.
//
// Freshness: every write made through this Service invalidates the secret
// at once, so a daemon always reads its own writes. A write made by another
// daemon sharing the store is seen within ttl, or, with a ChangeFeed
// (PostgreSQL LISTEN/NOTIFY), as soon as its notice arrives: the feed
// invalidates the secret, or everything after a reconnection, and while
// the feed cannot vouch that it is current (see ChangeFeed.Current) the
// cache is bypassed, so a lost feed costs store reads, never stale stages
// beyond the feed's bound. Clients that refresh on events fetch by version
// number, which is exact: a version, once written, never changes its
// value. Envelopes are keyed by the secret's creation time as well as name
// and version, so a secret deleted and created again under the same name
// never serves its predecessor's ciphertext once its metadata has been
// refreshed.
type readCache struct {
	ttl      time.Duration
	maxBytes int
	now      func() time.Time
	feed     ChangeFeed // nil: ttl alone bounds other daemons' writes

	mu   sync.Mutex
	meta map[string]metaEntry
	// versions, by secret name, so that invalidating one secret does
	// not scan every cached envelope.
	versions map[string]map[versionKey]store.SecretVersion
	nvers    int
	bytes    int
	// gen counts invalidations. A reader stores what it fetched only if
	// no invalidation of that secret (or of everything) happened
	// meanwhile, so a write that commits while a read is in flight cannot
	// leave the read's stale copy behind. Per secret, so that the stream
	// of other daemons' writes to other secrets does not keep a miss from
	// filling the cache.
	gen      uint64
	genOf    map[string]uint64 // the gen of each secret's latest invalidation
	genOfAll uint64            // the gen of the latest invalidateAll
}

// fillable reports whether a read of name that started at gen g may
// store what it fetched. c.mu is held.
func (c *readCache) fillable(name string, g uint64) bool {
	return c.genOfAll <= g && c.genOf[name] <= g
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

func newReadCache(ttl time.Duration, maxBytes int, now func() time.Time, feed ChangeFeed) *readCache {
	return &readCache{ttl: ttl, maxBytes: maxBytes, now: now, feed: feed, meta: map[string]metaEntry{}, versions: map[string]map[versionKey]store.SecretVersion{}, genOf: map[string]uint64{}}
}

// current reports whether cached metadata may be served: always without
// a feed (ttl bounds it), and while the feed is current with one.
func (c *readCache) current() bool { return c.feed == nil || c.feed.Current() }

func (c *readCache) enabled() bool { return c != nil && c.ttl > 0 }

// invalidate forgets a secret's metadata and envelopes.
func (c *readCache) invalidate(name string) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if len(c.genOf) >= 100_000 {
		clear(c.genOf) // forget the oldest the coarse way
		c.genOfAll = c.gen
	}
	c.genOf[name] = c.gen
	delete(c.meta, name)
	for _, v := range c.versions[name] {
		c.bytes -= len(v.Envelope)
		c.nvers--
	}
	delete(c.versions, name)
}

// invalidateAll forgets everything (the feed may have missed changes).
func (c *readCache) invalidateAll() {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.genOfAll = c.gen
	clear(c.genOf)
	clear(c.meta)
	clear(c.versions)
	c.bytes, c.nvers = 0, 0
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
		if ok && c.now().Sub(e.fetched) < c.ttl && c.current() {
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
		if c.fillable(name, gen) {
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
		ver, ok := c.versions[k.name][k]
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
		for c.bytes+len(ver.Envelope) > c.maxBytes && c.nvers > 0 {
			c.evictOne()
		}
		if _, dup := c.versions[k.name][k]; !dup && c.fillable(k.name, gen) {
			vs := c.versions[k.name]
			if vs == nil {
				vs = map[versionKey]store.SecretVersion{}
				c.versions[k.name] = vs
			}
			vs[k] = ver
			c.bytes += len(ver.Envelope)
			c.nvers++
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
	if ver, ok := c.versions[k.name][k]; ok {
		c.bytes -= len(ver.Envelope)
		c.nvers--
		delete(c.versions[k.name], k)
		if len(c.versions[k.name]) == 0 {
			delete(c.versions, k.name)
		}
	}
	c.mu.Unlock()
}

// evictOne drops one envelope, chosen by map order (random). c.mu is held.
func (c *readCache) evictOne() {
	for name, vs := range c.versions {
		for k, v := range vs {
			c.bytes -= len(v.Envelope)
			c.nvers--
			delete(vs, k)
			break
		}
		if len(vs) == 0 {
			delete(c.versions, name)
		}
		return
	}
}
