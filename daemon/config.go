package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Config is everything the daemon needs, already parsed: cmd/rotary is the
// only place that reads flags, YAML and the environment. New fills
// defaults and validates, naming the field that is wrong.
type Config struct {
	// Listen is host:port for the HTTP API (default 127.0.0.1:8420).
	Listen string
	TLS    TLSConfig
	// AllowInsecureHTTP permits plain HTTP on a non-loopback address.
	AllowInsecureHTTP bool

	Store   StoreConfig
	RootKey RootKeyConfig

	// RootTokenFile is where the first start on an empty store writes the
	// root token (mode 0600). RootToken, when set, becomes the root token
	// on the first start instead of a generated one (ROTARY_ROOT_TOKEN,
	// --dev-root-token).
	RootTokenFile string
	RootToken     string

	Redis     RedisConfig // optional: where events are published
	Regions   []string    // regions to prepare at start (default: default)
	PluginDir string

	// PluginStartTimeout bounds a plugin's start, handshake and Info
	// (default 10s); PluginCallTimeout is the deadline of every call to a
	// plugin (default 30s).
	PluginStartTimeout time.Duration
	PluginCallTimeout  time.Duration

	MinRotationInterval time.Duration // default 1h; 1s in dev mode
	RotationConcurrency int           // default 8
	// AuditWriters, AuditAnchorEvery and AuditAnchorInterval: how many
	// group-commit writers append request records, each on its own audit
	// chain (default 2 on PostgreSQL, 1 on SQLite), and how often an
	// anchor binds every chain's head (default 1,000 records or 1s).
	AuditWriters        int
	AuditAnchorEvery    int64
	AuditAnchorInterval time.Duration

	// Dev marks a development daemon: it prints the root token on Stdout
	// and logs loudly that it is for development only.
	Dev bool

	// ShutdownTimeout bounds graceful shutdown (default 10s).
	ShutdownTimeout time.Duration

	// RotationLease is how long a claimed rotation stays this daemon's
	// without renewal: after a crash, other daemons take over its
	// rotations once it expires (default 1m).
	RotationLease time.Duration

	// Rotation retry backoff (defaults 30s base, 30m cap; 1s and 10s in
	// dev mode).
	RetryBackoffBase time.Duration
	RetryBackoffMax  time.Duration

	// OutboxRetention is how long delivered outbox events (and ended hook
	// deliveries) are kept (default 24h).
	OutboxRetention time.Duration
	// Hook delivery bounds: attempts and age before a delivery is given
	// up (defaults 20, 24h), and pending deliveries kept per hook (10000).
	HookMaxAttempts int
	HookMaxAge      time.Duration
	HookMaxBacklog  int

	// Failpoint is called at named points inside rotation steps; only test
	// builds set it (cmd/rotary with the failpoints build tag).
	Failpoint func(name string)

	// EventsPoll is how often GET /v1/events looks for events written by
	// other daemons (default 1s); EventsHeartbeat the keepalive of the
	// stream, when the token is checked again (default 15s).
	EventsPoll      time.Duration
	EventsHeartbeat time.Duration

	Logger *slog.Logger
	Stdout io.Writer // where dev mode prints the root token (default os.Stdout)

	// Now and After are the daemon's clock (default time.Now and
	// time.After): the store writes, KMS, secrets, the engine and its
	// leases, the scheduler, housekeeping, hooks, the relay and the API
	// all take their time from it, so tests can drive time (catch-up,
	// lease expiry, DST) in process. After is the scheduler's wait.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// RedisConfig is the Redis that events are published to (events/redis):
// a URL (redis://, rediss:// for TLS), or Sentinel addresses with a master
// name, or Cluster nodes. Empty: no Redis (clients use GET /v1/events).
type RedisConfig struct {
	URL        string
	Addrs      []string
	MasterName string
	Username   string
	Password   string
	DB         int
	// TLS: a CA to verify the server with, a client certificate, the name
	// to verify. Any of them turns TLS on.
	CAFile, CertFile, KeyFile, ServerName string
	Prefix                                string // default "rotary:"
	MaxLen                                int64  // stream length, about (default 100000)
}

// Enabled reports whether a Redis is configured.
func (r RedisConfig) Enabled() bool { return r.URL != "" || len(r.Addrs) > 0 }

// Check validates r without connecting, naming the field that is wrong.
func (r RedisConfig) Check() error {
	if !r.Enabled() {
		if r.MasterName != "" || r.Username != "" || r.Password != "" || r.CAFile != "" || r.CertFile != "" || r.Prefix != "" {
			return errors.New("redis: settings given but neither redis.url nor redis.addrs")
		}
		return nil
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "redis://") && !strings.HasPrefix(r.URL, "rediss://") {
		return errors.New("redis.url: want a redis:// or rediss:// URL")
	}
	if (r.CertFile == "") != (r.KeyFile == "") {
		return errors.New("redis.tls: cert_file and key_file go together")
	}
	if r.Prefix != "" && (strings.ContainsAny(r.Prefix, " \t\r\n") || len(r.Prefix) > 64) {
		return fmt.Errorf("redis.prefix: %q: no spaces, at most 64 characters", r.Prefix)
	}
	if r.MaxLen < 0 {
		return errors.New("redis.max_len: must not be negative")
	}
	_, err := r.sinkConfig()
	return err
}

// TLSConfig enables HTTPS; ClientCAFile also requires client certificates
// signed by that CA.
type TLSConfig struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// StoreConfig picks the store: SQLite by path (the default) or PostgreSQL
// by DSN. Exactly one may be set.
type StoreConfig struct {
	SQLite   string
	Postgres string
}

// RootKeyConfig names the root key source. Exactly one of File, Env and
// PassphraseFile is set. Generate creates File with a new random key when
// it does not exist (dev mode keeps its generated key beside the data).
type RootKeyConfig struct {
	File           string
	Env            string
	PassphraseFile string
	Keep           bool // keep the passphrase file after reading it
	Generate       bool
}
