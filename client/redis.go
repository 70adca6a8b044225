package client

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// WithRedis makes the cache follow the daemon's Redis stream (and its
// pub/sub channels as a fast path) instead of GET /v1/events. prefix is
// the daemon's redis prefix ("" for "rotary:"). The caller closes rdb
// after Close.
func WithRedis(rdb goredis.UniversalClient, prefix string) Option {
	if prefix == "" {
		prefix = "rotary:"
	}
	return func(c *Client) {
		c.cacheOpts.source = sourceRedis
		c.cacheOpts.redis = &redisSource{rdb: rdb, prefix: prefix}
	}
}

// WithRedisURL is WithRedis with a client of its own, from a redis:// or
// rediss:// URL; Close closes it.
func WithRedisURL(rawURL, prefix string) (Option, error) {
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, errors.New("redis url: " + strings.ReplaceAll(err.Error(), rawURL, "REDACTED"))
	}
	o.Protocol, o.DisableIdentity = 2, true
	rdb := goredis.NewClient(o)
	opt := WithRedis(rdb, prefix)
	return func(c *Client) { opt(c); c.cacheOpts.redis.own = true }, nil
}

type redisSource struct {
	rdb    goredis.UniversalClient
	prefix string
	own    bool
}

func (r *redisSource) close() {
	if r.own {
		_ = r.rdb.Close()
	}
}

func (r *redisSource) stream() string { return r.prefix + "events" }

// run follows the stream from the position it connected at; after an
// error it resumes from the last entry it handled, and reads every cached
// secret again when the stream was trimmed past that entry.
func (r *redisSource) run(ctx context.Context, k *cache) {
	go r.fastPath(ctx, k)
	last := ""
	backoff := reconnectMin
	for ctx.Err() == nil {
		if last == "" {
			// The stream's end is where this client starts.
			ents, err := r.rdb.XRevRangeN(ctx, r.stream(), "+", "-", 1).Result()
			if err != nil {
				k.opts.log.Warn("rotary client: redis unavailable; retrying", "in", backoff, "err", err)
				if !sleepCtx(ctx, jitter(backoff)) {
					return
				}
				backoff = min(backoff*2, reconnectMax)
				continue
			}
			last = "0-0"
			if len(ents) == 1 {
				last = ents[0].ID
			}
			k.markConnected()
			_ = k.refreshAll(ctx)
		}
		res, err := r.rdb.XRead(ctx, &goredis.XReadArgs{Streams: []string{r.stream(), last}, Count: 500, Block: 5 * time.Second}).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.opts.log.Warn("rotary client: reading the redis stream failed; retrying", "in", backoff, "err", err)
			if !sleepCtx(ctx, jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, reconnectMax)
			if r.trimmedPast(ctx, last) {
				_ = k.refreshAll(ctx)
			}
			continue
		}
		backoff = reconnectMin
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				if e, ok := streamEvent(m.Values); ok {
					k.handle(ctx, e)
				}
			}
		}
	}
}

// trimmedPast reports whether entries after last may be gone: the oldest
// entry is newer than last, or the stream is gone.
func (r *redisSource) trimmedPast(ctx context.Context, last string) bool {
	ents, err := r.rdb.XRangeN(ctx, r.stream(), "-", "+", 1).Result()
	if err != nil {
		return true
	}
	if len(ents) == 0 {
		return last != "0-0"
	}
	return streamIDLess(last, ents[0].ID)
}

// fastPath takes the same events from pub/sub, which arrive as soon as
// the stream's; handle drops what it has seen.
func (r *redisSource) fastPath(ctx context.Context, k *cache) {
	sub := r.rdb.PSubscribe(ctx, r.prefix+"secret:*")
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			var e Event
			if json.Unmarshal([]byte(m.Payload), &e) == nil && e.Secret != "" {
				k.handle(ctx, e)
			}
		}
	}
}

func streamEvent(v map[string]any) (Event, bool) {
	raw, _ := v["event"].(string)
	var e Event
	if json.Unmarshal([]byte(raw), &e) != nil || e.Secret == "" {
		return Event{}, false
	}
	if id, ok := v["id"].(string); ok {
		e.ID, _ = strconv.ParseInt(id, 10, 64)
	}
	return e, true
}

func parseStreamID(id string) (ms, seq int64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseInt(a, 10, 64)
	seq, _ = strconv.ParseInt(b, 10, 64)
	return ms, seq
}

func streamIDLess(a, b string) bool {
	am, as := parseStreamID(a)
	bm, bs := parseStreamID(b)
	return am < bm || (am == bm && as < bs)
}
