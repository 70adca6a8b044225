package daemon

import (
	"io"
	"log/slog"
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

	Redis     string   // optional redis:// URL
	Regions   []string // regions to prepare at start (default: default)
	PluginDir string   // when set, registered plugins must live in it

	// PluginStartTimeout bounds a plugin's start, handshake and Info
	// (default 10s); PluginCallTimeout is the deadline of every call to a
	// plugin (default 30s).
	PluginStartTimeout time.Duration
	PluginCallTimeout  time.Duration

	MinRotationInterval time.Duration // default 1h; 1s in dev mode
	RotationConcurrency int           // default 8

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

	// Failpoint is called at named points inside rotation steps; only test
	// builds set it (cmd/rotary with the failpoints build tag).
	Failpoint func(name string)

	Logger *slog.Logger
	Stdout io.Writer // where dev mode prints the root token (default os.Stdout)
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
