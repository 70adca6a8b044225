// Package redis is the relay's Redis sink: it publishes every outbox event
// to Redis so that clients refresh at once. For an event of secret NAME it
//
//   - appends the event JSON to the stream PREFIX+"events" (XADD, trimmed to
//     about MaxLen entries), with the outbox id, type, secret and version
//     as fields beside it, so that a client catches up from its last id;
//   - publishes the same JSON on the channel PREFIX+"secret:"+NAME;
//   - raises the key PREFIX+"version:"+NAME to the event's version when the
//     event makes a version current and the stored number is lower (a Lua
//     script: a late redelivery never moves it back), and deletes it when
//     the secret is purged (a "deleted" event with reason "purge"), so that
//     a secret created again under the name starts from version 1.
//
// Redis never holds a secret value: events carry none. Delivery is at
// least once; a redelivered event may appear twice in the stream, with the
// same id field, and clients drop what they have seen.
package redis

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// Defaults of Config.
const (
	DefaultPrefix = "rotary:"
	DefaultMaxLen = 100_000
)

// Config says where Redis is and how to name things in it.
type Config struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS.
	// Either URL or Addrs is set.
	URL string
	// Addrs are Sentinel addresses (with MasterName) or Cluster nodes.
	Addrs      []string
	MasterName string
	// Username and Password are the ACL user (they override the URL's).
	Username string
	Password string
	DB       int
	// TLS, when set, is used for every connection (rediss:// sets one).
	TLS *tls.Config
	// Prefix of every key and channel (DefaultPrefix).
	Prefix string
	// MaxLen bounds the stream, approximately (DefaultMaxLen).
	MaxLen int64
}

// Options turns c into go-redis options, naming the field that is wrong.
func (c Config) Options() (*goredis.UniversalOptions, error) {
	if (c.URL == "") == (len(c.Addrs) == 0) {
		return nil, errors.New("redis: set exactly one of url and addrs")
	}
	o := &goredis.UniversalOptions{
		Addrs: c.Addrs, MasterName: c.MasterName, DB: c.DB, TLSConfig: c.TLS,
		Protocol: 2, DisableIdentity: true,
	}
	if c.URL != "" {
		if c.MasterName != "" {
			return nil, errors.New("redis: master_name needs addrs (the Sentinel addresses), not url")
		}
		po, err := goredis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: url: %s", redactURLError(err, c.URL))
		}
		o.Addrs = []string{po.Addr}
		o.Username, o.Password, o.DB = po.Username, po.Password, po.DB
		if c.DB != 0 {
			o.DB = c.DB
		}
		if o.TLSConfig == nil {
			o.TLSConfig = po.TLSConfig
		}
	}
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
	}
	for _, a := range o.Addrs {
		if a == "" || !strings.Contains(a, ":") {
			return nil, fmt.Errorf("redis: address %q: want host:port", a)
		}
	}
	if c.MaxLen < 0 {
		return nil, fmt.Errorf("redis: max_len %d: must not be negative", c.MaxLen)
	}
	return o, nil
}

// redactURLError keeps a password in a URL out of an error message.
func redactURLError(err error, raw string) string {
	msg := err.Error()
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				if pw := rest[colon+1 : at]; pw != "" {
					msg = strings.ReplaceAll(msg, pw, "REDACTED")
				}
			}
		}
	}
	return msg
}

// Sink publishes outbox events to Redis. Its methods are safe for
// concurrent use.
type Sink struct {
	rdb    goredis.UniversalClient
	own    bool
	prefix string
	maxLen int64
}

// New connects lazily (the first Deliver dials) and returns the sink.
func New(c Config) (*Sink, error) {
	o, err := c.Options()
	if err != nil {
		return nil, err
	}
	s := NewWithClient(goredis.NewUniversalClient(o), c.Prefix, c.MaxLen)
	s.own = true
	return s, nil
}

// NewWithClient uses rdb, which the caller closes.
func NewWithClient(rdb goredis.UniversalClient, prefix string, maxLen int64) *Sink {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if maxLen == 0 {
		maxLen = DefaultMaxLen
	}
	return &Sink{rdb: rdb, prefix: prefix, maxLen: maxLen}
}

// Name implements the relay's Sink.
func (s *Sink) Name() string { return "redis" }

// Close closes the connection New opened.
func (s *Sink) Close() error {
	if s.own {
		return s.rdb.Close()
	}
	return nil
}

// Stream is the stream key, Channel(name) the pub/sub channel and
// VersionKey(name) the version key of a secret.
func (s *Sink) Stream() string                  { return s.prefix + "events" }
func (s *Sink) Channel(secret string) string    { return s.prefix + "secret:" + secret }
func (s *Sink) VersionKey(secret string) string { return s.prefix + "version:" + secret }

// raise sets KEYS[1] to ARGV[1] when that is higher than what it holds.
var raise = goredis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local v = tonumber(ARGV[1])
if v > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// Deliver publishes evs, in their order, in one pipeline. It returns nil
// only when Redis accepted every command.
func (s *Sink) Deliver(ctx context.Context, evs []store.OutboxEvent) error {
	if len(evs) == 0 {
		return nil
	}
	// EVAL, not EVALSHA: a restarted Redis has forgotten its scripts, and
	// a NOSCRIPT answer would come after the XADD of the same pipeline.
	pipe := s.rdb.Pipeline()
	for _, e := range evs {
		pipe.XAdd(ctx, &goredis.XAddArgs{
			Stream: s.Stream(), MaxLen: s.maxLen, Approx: true,
			Values: []any{"id", e.ID, "type", e.Type, "secret", e.Secret, "version", e.Version, "event", e.Payload},
		})
		pipe.Publish(ctx, s.Channel(e.Secret), e.Payload)
		switch current, purged := versionEffect(e); {
		case current:
			raise.Eval(ctx, pipe, []string{s.VersionKey(e.Secret)}, strconv.FormatInt(e.Version, 10))
		case purged:
			// Gone for good: a secret of the same name created later
			// starts again at 1, which a raise-only key would ignore.
			pipe.Del(ctx, s.VersionKey(e.Secret))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis: deliver %d events: %w", len(evs), err)
	}
	return nil
}

// versionEffect reports whether e makes its version the current one, or
// says that its secret is gone for good (purged).
func versionEffect(e store.OutboxEvent) (current, purged bool) {
	if e.Secret == "" {
		return false, false
	}
	var p struct {
		Stages []string `json:"stages"`
		Reason string   `json:"reason"`
	}
	if json.Unmarshal(e.Payload, &p) != nil {
		return false, false
	}
	if e.Type == events.Deleted {
		return false, p.Reason == events.ReasonPurge
	}
	return e.Version > 0 && slices.Contains(p.Stages, store.StageCurrent), false
}
