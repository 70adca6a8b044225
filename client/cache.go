package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/sensitive"
)

// The cache: Get and Field answer from memory and keep it fresh from the
// daemon's events, so that a rotation reaches the application the moment
// it finishes. Values live only in memory (never on disk) and are wiped
// by Close.
//
// Freshness: an event that makes a newer version current refreshes the
// cached value at once (in the background; a Get meanwhile waits for that
// one fetch). Events come from GET /v1/events by default, or from Redis
// (WithRedis). After a reconnect the source catches up from its last
// position; when that is no longer possible (trimmed) every cached secret
// is read again. A slow jittered poll (WithPollInterval) is the last
// resort. When a refresh fails, Get goes on answering the value it has
// (stale while revalidating) and the next event or poll tries again.

// Default cache settings.
const (
	DefaultPollInterval = 5 * time.Minute
	reconnectMin        = 250 * time.Millisecond
	reconnectMax        = 30 * time.Second
)

// Current is a cached secret value.
type Current struct {
	Name    string
	Version int64
	// Value is the caller's own copy.
	Value []byte
}

// WithPollInterval sets the last-resort poll (DefaultPollInterval); 0 or
// less turns polling off.
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) { c.cacheOpts.poll = d; c.cacheOpts.pollSet = true }
}

// WithoutEvents keeps the cache fresh by polling only.
func WithoutEvents() Option { return func(c *Client) { c.cacheOpts.source = sourceNone } }

// WithLogger receives the cache's warnings (reconnects, failed refreshes).
// Never a value.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.cacheOpts.log = l } }

type eventSource int

const (
	sourceSSE eventSource = iota
	sourceRedis
	sourceNone
)

type cacheOptions struct {
	source  eventSource
	poll    time.Duration
	pollSet bool
	log     *slog.Logger
	redis   *redisSource
}

type cache struct {
	c    *Client
	opts cacheOptions
	sf   singleflight.Group

	mu      sync.Mutex
	entries map[string]*entry
	// deleted holds when a secret's deleted event came, until a read
	// made after it: a read that started before is not kept.
	deleted  map[string]time.Time
	watchers map[int]watcher
	nextW    int
	started  bool
	closed   bool
	cancel   context.CancelFunc
	done     chan struct{}
	// connected is closed when the event source is live for the first time.
	connected chan struct{}
	// seen remembers recent events, which can come twice (the Redis
	// stream and pub/sub; redelivery), so that watchers see each once.
	seen     map[string]struct{}
	seenRing []string
	seenNext int
}

const seenSize = 4096

type entry struct {
	version int64
	value   sensitive.Bytes
	// wanted is the newest current version events announced; above
	// version means a refresh is due.
	wanted int64
	// fetched is when the request that read the value started.
	fetched time.Time
}

type watcher struct {
	pattern string
	fn      func(Event)
}

func (c *Client) cacheState() *cache {
	c.cacheOnce.Do(func() {
		o := c.cacheOpts
		if !o.pollSet {
			o.poll = DefaultPollInterval
		}
		if o.log == nil {
			o.log = slog.New(slog.DiscardHandler)
		}
		c.cache = &cache{c: c, opts: o, entries: map[string]*entry{}, deleted: map[string]time.Time{}, watchers: map[int]watcher{}, connected: make(chan struct{}), seen: map[string]struct{}{}}
	})
	return c.cache
}

// start begins the background refresh once.
func (k *cache) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	if k.started {
		return nil
	}
	k.started = true
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel, k.done = cancel, make(chan struct{})
	go func() {
		defer close(k.done)
		var wg sync.WaitGroup
		switch k.opts.source {
		case sourceSSE:
			wg.Go(func() { k.runSSE(ctx) })
		case sourceRedis:
			wg.Go(func() { k.opts.redis.run(ctx, k) })
		default:
			close(k.connected)
		}
		if k.opts.poll > 0 {
			wg.Go(func() { k.runPoll(ctx) })
		}
		wg.Wait()
	}()
	return nil
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("rotary client: closed")

// Get returns the current value of secret name, from memory when it is
// known and fresh.
func (c *Client) Get(ctx context.Context, name string) (Current, error) {
	k := c.cacheState()
	if err := k.start(); err != nil {
		return Current{}, err
	}
	k.mu.Lock()
	e := k.entries[name]
	if e != nil && e.wanted <= e.version {
		cur := Current{Name: name, Version: e.version, Value: append([]byte(nil), e.value...)}
		k.mu.Unlock()
		return cur, nil
	}
	k.mu.Unlock()
	err := k.fetch(ctx, name)
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.entries[name]; e != nil {
		if err != nil {
			k.opts.log.Warn("rotary client: refresh failed; answering the cached version", "secret", name, "version", e.version, "err", err)
		}
		return Current{Name: name, Version: e.version, Value: append([]byte(nil), e.value...)}, nil
	}
	return Current{}, err
}

// Field returns one field of a secret whose value is a JSON object
// (db-credentials, key-value), as a string.
func (c *Client) Field(ctx context.Context, name, field string) (string, error) {
	cur, err := c.Get(ctx, name)
	if err != nil {
		return "", err
	}
	defer sensitive.Bytes(cur.Value).Wipe()
	return FieldOf(name, cur.Value, field)
}

// FieldOf extracts field from a JSON object value; strings come as they
// are, other JSON values as their JSON text. Errors never show the value.
func FieldOf(name string, value []byte, field string) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil {
		return "", fmt.Errorf("secret %q: its value is not a JSON object, so it has no field %q", name, field)
	}
	raw, ok := obj[field]
	if !ok {
		return "", fmt.Errorf("secret %q has no field %q", name, field)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	return string(raw), nil
}

// fetch reads the current version of name into the cache; concurrent
// fetches of one name share one request.
func (k *cache) fetch(ctx context.Context, name string) error {
	ch := k.sf.DoChan(name, func() (any, error) {
		// Not the caller's context: a caller that gives up must not fail
		// the others waiting for the same fetch.
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		asked := time.Now()
		sv, err := k.c.GetSecret(fctx, name, 0, "")
		if err != nil {
			return nil, err
		}
		b, err := sv.Bytes()
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.closed {
			sensitive.Bytes(b).Wipe()
			return nil, ErrClosed
		}
		if at, ok := k.deleted[name]; ok {
			if !asked.After(at) {
				// Read before the secret was deleted: not to be kept.
				sensitive.Bytes(b).Wipe()
				return nil, nil
			}
			delete(k.deleted, name)
		}
		e := k.entries[name]
		if e == nil {
			e = &entry{}
			k.entries[name] = e
		}
		if sv.Version >= e.version {
			e.value.Wipe()
			e.version, e.value = sv.Version, sensitive.Bytes(b)
			e.fetched = asked
		} else {
			sensitive.Bytes(b).Wipe()
		}
		return nil, nil
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Watch calls fn for every event of a secret matching pattern (a name or
// a glob such as "prod/*"), after the cache holds the version the event
// made current. fn runs on the cache's event goroutine: keep it short.
// The returned func stops the watch.
func (c *Client) Watch(pattern string, fn func(Event)) (stop func(), err error) {
	k := c.cacheState()
	if err := k.start(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	id := k.nextW
	k.nextW++
	k.watchers[id] = watcher{pattern: pattern, fn: fn}
	k.mu.Unlock()
	return func() {
		k.mu.Lock()
		delete(k.watchers, id)
		k.mu.Unlock()
	}, nil
}

// WaitConnected blocks until the event source is live (or ctx ends):
// events after it returns are not missed.
func (c *Client) WaitConnected(ctx context.Context) error {
	k := c.cacheState()
	if err := k.start(); err != nil {
		return err
	}
	select {
	case <-k.connected:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Refresh reads secret name from the daemon now, whether cached or not,
// and returns what the cache then holds (a newer version another read
// stored meanwhile wins). Use it when a credential from Get was refused.
func (c *Client) Refresh(ctx context.Context, name string) (Current, error) {
	k := c.cacheState()
	if err := k.start(); err != nil {
		return Current{}, err
	}
	if err := k.fetch(ctx, name); err != nil {
		return Current{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.entries[name]
	if e == nil { // deleted while it was read
		return Current{}, fmt.Errorf("secret %q: deleted", name)
	}
	return Current{Name: name, Version: e.version, Value: append([]byte(nil), e.value...)}, nil
}

// RefreshNow reads every cached secret again.
func (c *Client) RefreshNow(ctx context.Context) error {
	return c.cacheState().refreshAll(ctx)
}

func (k *cache) refreshAll(ctx context.Context) error { return k.refreshBefore(ctx, time.Time{}) }

// refreshBefore reads again every cached secret last read before t (all
// of them when t is zero): a value read after the event source went live
// cannot have missed an event.
func (k *cache) refreshBefore(ctx context.Context, t time.Time) error {
	k.mu.Lock()
	names := make([]string, 0, len(k.entries))
	for n, e := range k.entries {
		if t.IsZero() || e.fetched.Before(t) {
			names = append(names, n)
		}
	}
	k.mu.Unlock()
	var errs []error
	for _, n := range names {
		if err := k.fetch(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the background refresh and wipes every cached value.
func (c *Client) Close() error {
	k := c.cacheState()
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	cancel, done := k.cancel, k.done
	for _, e := range k.entries {
		e.value.Wipe()
	}
	k.entries = map[string]*entry{}
	k.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if k.opts.redis != nil {
		k.opts.redis.close()
	}
	return nil
}

// handle applies one event: refresh what it made stale, then tell the
// watchers.
func (k *cache) handle(ctx context.Context, e Event) {
	k.mu.Lock()
	key := e.Event + "\x00" + e.Secret + "\x00" + strconv.FormatInt(e.Version, 10) + "\x00" + strconv.FormatInt(e.At.UnixNano(), 10)
	if _, dup := k.seen[key]; dup {
		k.mu.Unlock()
		return
	}
	if len(k.seenRing) < seenSize {
		k.seenRing = append(k.seenRing, key)
	} else {
		delete(k.seen, k.seenRing[k.seenNext])
		k.seenRing[k.seenNext] = key
		k.seenNext = (k.seenNext + 1) % seenSize
	}
	k.seen[key] = struct{}{}
	ent := k.entries[e.Secret]
	stale := false
	if ent != nil && e.Event == events.Deleted {
		// Deleted (or purged, and maybe created again from version 1):
		// the value is no longer to be used; the next Get asks the daemon.
		ent.value.Wipe()
		delete(k.entries, e.Secret)
		ent = nil
		k.deleted[e.Secret] = time.Now()
	}
	if ent != nil && e.Version > ent.version && makesCurrent(e) {
		if e.Version > ent.wanted {
			ent.wanted = e.Version
		}
		stale = true
	}
	k.mu.Unlock()
	if stale {
		if err := k.fetch(ctx, e.Secret); err != nil && ctx.Err() == nil {
			k.opts.log.Warn("rotary client: refresh after an event failed; the poll tries again", "secret", e.Secret, "err", err)
		}
	}
	k.mu.Lock()
	var fns []func(Event)
	for _, w := range k.watchers {
		if w.pattern == e.Secret || auth.Match(w.pattern, e.Secret) {
			fns = append(fns, w.fn)
		}
	}
	k.mu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}

func makesCurrent(e Event) bool {
	for _, s := range e.Stages {
		if s == "current" {
			return true
		}
	}
	return false
}

func (k *cache) markConnected() {
	select {
	case <-k.connected:
	default:
		close(k.connected)
	}
}

// runSSE follows GET /v1/events, reconnecting with backoff.
func (k *cache) runSSE(ctx context.Context) {
	var after int64
	resume := false
	backoff := reconnectMin
	for ctx.Err() == nil {
		st, err := k.c.Events(ctx, EventsOptions{After: after, Resume: resume})
		if err != nil {
			k.opts.log.Warn("rotary client: event stream unavailable; retrying", "in", backoff, "err", err)
			if !sleepCtx(ctx, jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, reconnectMax)
			continue
		}
		backoff = reconnectMin
		live := time.Now() // the daemon subscribed this stream before answering
		// From now on nothing is missed; what changed before is read again
		// (a first connect, or a reconnect that may have come too late).
		k.markConnected()
		if !resume {
			_ = k.refreshBefore(ctx, live)
		}
		stop := context.AfterFunc(ctx, func() { st.Close() })
		for {
			it, err := st.Next()
			if err != nil {
				break
			}
			if it.Type == EventReset {
				_ = k.refreshAll(ctx)
				continue
			}
			k.handle(ctx, it.Event)
		}
		stop()
		st.Close()
		if st.Positioned() {
			after, resume = st.LastID(), true
		}
		if !sleepCtx(ctx, jitter(reconnectMin)) {
			return
		}
	}
}

// runPoll reads everything cached again every poll interval (jittered).
func (k *cache) runPoll(ctx context.Context) {
	for sleepCtx(ctx, jitter(k.opts.poll)) {
		if err := k.refreshAll(ctx); err != nil && ctx.Err() == nil {
			k.opts.log.Warn("rotary client: poll failed", "err", err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
