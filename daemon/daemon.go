// Package daemon builds every part of rotary from a Config and runs them:
// the store, the KMS, the secrets service and the HTTP API. It is the one
// place that knows every implementation; everything else talks through
// interfaces.
//
// Start order: store (migrations) → root key → KMS (key check) → regions →
// secrets service → root token bootstrap → API → listener. Stop runs the
// other way round and is bounded by Config.ShutdownTimeout.
//
// On PostgreSQL the secrets service's read cache follows the other
// daemons' writes through a postgres.Listener (LISTEN/NOTIFY; see package
// store/postgres), started with the API and stopped just before the store
// closes; its state is exported as the rotary_read_cache_* metrics.
package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon/api"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/rotation"
	mysqlrot "github.com/rotary-secrets/rotary/rotators/mysql"
	pgrot "github.com/rotary-secrets/rotary/rotators/postgres"
	"github.com/rotary-secrets/rotary/rotators/random"
	redisrot "github.com/rotary-secrets/rotary/rotators/redis"
	"github.com/rotary-secrets/rotary/schedules"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// Defaults.
const (
	DefaultListen              = client.DefaultListen
	DefaultMinRotationInterval = time.Hour
	DevMinRotationInterval     = time.Second
	DefaultRotationConcurrency = 8
	DefaultShutdownTimeout     = 10 * time.Second
)

// ErrWrongRootKey is returned when the root key does not open the store.
var ErrWrongRootKey = kms.ErrWrongRootKey

// Daemon is a running rotary server.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	st      store.Store
	kms     *kms.Manager
	secrets *secrets.Service
	changes *postgres.Listener // PostgreSQL only: other daemons' writes invalidate the read cache
	engine  *rotation.Engine
	// builtin are the built-in rotators; Stop closes those that hold
	// connections (the database rotators' admin pools).
	builtin rotation.Registry
	runner  *schedules.Runner
	house   *schedules.Housekeeper
	api     *api.Server
	ev      eventParts
	plugins *pluginHost

	schedMetrics *schedulerMetrics
	srv          *http.Server
	ln           net.Listener

	// lock keeps other daemons off a SQLite store (nil on PostgreSQL).
	lock *storeLock
	// devToken is what a dev daemon says about its root token once it
	// listens: the token itself where it is printed, else nothing (it is
	// in RootTokenFile).
	devToken string

	stopOnce sync.Once
	served   chan error
	// bg is cancelled at Stop; background work (resumed rotations) runs
	// under it. bgDone is closed when it has all returned.
	bg     context.Context
	cancel context.CancelFunc
	bgWG   sync.WaitGroup // background work of Start (the schedule check)
}

// Validate fills the defaults and checks the configuration; every error
// names the setting as the config file spells it. It is the one place the
// configuration is validated: cmd/rotary calls it after reading the file
// and flags, and New calls it again (filling is idempotent).
func (c *Config) Validate() error {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
	if c.MinRotationInterval == 0 {
		c.MinRotationInterval = DefaultMinRotationInterval
		if c.Dev {
			c.MinRotationInterval = DevMinRotationInterval
		}
	}
	switch {
	case c.RotationConcurrency < 0:
		return errors.New("config: rotation_concurrency: must not be negative")
	case c.AuditWriters < 0 || c.AuditWriters > 64:
		return errors.New("config: audit_writers: between 0 (the default) and 64")
	case c.AuditAnchorEvery < 0:
		return errors.New("config: audit_anchor_every: must not be negative")
	case c.AuditAnchorInterval < 0 || (c.AuditAnchorInterval > 0 && c.AuditAnchorInterval < 10*time.Millisecond):
		return errors.New("config: audit_anchor_interval: at least 10ms")
	case c.ShutdownTimeout < 0:
		return errors.New("config: shutdown_timeout: must not be negative")
	case c.RotationLease < 0 || (c.RotationLease > 0 && c.RotationLease < time.Second):
		return errors.New("config: rotation_lease: at least 1s")
	case c.RetryBackoffBase < 0 || c.RetryBackoffMax < 0:
		return errors.New("config: retry_backoff: must not be negative")
	case c.EventsPoll < 0 || (c.EventsPoll > 0 && c.EventsPoll < 10*time.Millisecond):
		return errors.New("config: events.poll: at least 10ms")
	case c.EventsHeartbeat < 0 || (c.EventsHeartbeat > 0 && c.EventsHeartbeat < time.Second):
		return errors.New("config: events.heartbeat: at least 1s")
	case c.MinRotationInterval < time.Second:
		return fmt.Errorf("config: min_rotation_interval %s: must be at least 1s", c.MinRotationInterval)
	}
	c.RotationConcurrency = cmp.Or(c.RotationConcurrency, DefaultRotationConcurrency)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.RotationLease = cmp.Or(c.RotationLease, time.Minute)
	if err := c.fillEvents(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if len(c.Regions) == 0 {
		c.Regions = []string{secrets.DefaultRegion}
	}
	for i, r := range c.Regions {
		if r == "" {
			return fmt.Errorf("config: regions[%d]: empty region name", i)
		}
		if slices.Index(c.Regions, r) != i {
			return fmt.Errorf("config: regions[%d]: %q listed twice", i, r)
		}
	}
	switch {
	case c.Store.SQLite != "" && c.Store.Postgres != "":
		return errors.New("config: store: set either store.sqlite or store.postgres, not both")
	case c.Store.SQLite == "" && c.Store.Postgres == "":
		return errors.New("config: store: set store.sqlite or store.postgres")
	case c.Store.Postgres != "" && !strings.HasPrefix(c.Store.Postgres, "postgres://") &&
		!strings.HasPrefix(c.Store.Postgres, "postgresql://") && !strings.Contains(c.Store.Postgres, "="):
		return errors.New("config: store.postgres: want a postgres:// URL or a key=value DSN")
	}
	n := 0
	for _, s := range []string{c.RootKey.File, c.RootKey.Env, c.RootKey.PassphraseFile} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("config: root_key: set one of root_key.file, root_key.env or root_key.passphrase_file")
	case n > 1:
		return errors.New("config: root_key: set only one of root_key.file, root_key.env and root_key.passphrase_file")
	case c.RootKey.Keep && c.RootKey.PassphraseFile == "":
		return errors.New("config: root_key.keep: only applies to root_key.passphrase_file")
	}
	if err := c.Redis.Check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.PluginStartTimeout < 0 || c.PluginCallTimeout < 0 {
		return errors.New("config: plugin_start_timeout and plugin_call_timeout must not be negative")
	}
	c.PluginStartTimeout = cmp.Or(c.PluginStartTimeout, plugins.DefaultStartTimeout)
	c.PluginCallTimeout = cmp.Or(c.PluginCallTimeout, plugins.DefaultCallTimeout)
	if c.PluginDir != "" && !filepath.IsAbs(c.PluginDir) {
		return fmt.Errorf("config: plugin_dir %q: not an absolute path", c.PluginDir)
	}
	if c.RotationConcurrency > 1024 {
		return fmt.Errorf("config: rotation_concurrency %d: must be between 1 and 1024", c.RotationConcurrency)
	}
	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		return errors.New("config: tls.key_file: required with tls.cert_file")
	case c.TLS.KeyFile != "" && c.TLS.CertFile == "":
		return errors.New("config: tls.cert_file: required with tls.key_file")
	case c.TLS.ClientCAFile != "" && c.TLS.CertFile == "":
		return errors.New("config: tls.client_ca_file: needs tls.cert_file and tls.key_file")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("config: listen: %q is not host:port", c.Listen)
	}
	if c.TLS.CertFile == "" && !c.AllowInsecureHTTP && !isLoopback(host) {
		return fmt.Errorf("config: listen %q: plain HTTP is only allowed on loopback; configure tls or set allow_insecure_http", c.Listen)
	}
	if c.RootTokenFile == "" && c.Store.SQLite != "" {
		c.RootTokenFile = filepath.Join(filepath.Dir(c.Store.SQLite), "root-token")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New opens the store and builds every part. It does not listen yet.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, served: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			d.closeStore()
		}
	}()

	if cfg.Store.SQLite != "" {
		l, err := acquireStoreLock(cfg.Store.SQLite)
		if errors.Is(err, errStoreInUse) {
			return nil, storeInUseError(cfg, err)
		} else if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		d.lock = l
	}
	// A port in use is said now, before a dev daemon makes its keys and
	// token in a new data folder for nothing.
	if err := checkListen(cfg); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	d.st = st

	root, err := d.rootKey(ctx)
	if err != nil {
		return nil, err
	}
	d.kms, err = kms.New(ctx, kms.Config{Store: secrets.KeyStore(d.st), Root: root, Logger: d.log, Now: cfg.Now})
	var (
		auditKey    audit.Key
		auditSigner audit.Signer
		hooksKey    []byte
	)
	if err == nil {
		auditKey, auditSigner, err = auditKeys(root)
	}
	if err == nil {
		hooksKey, err = hookKey(root)
	}
	root.Wipe()
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	// Before anything appends to the audit log: make it the keyed chain.
	if n, err := api.MigrateAuditLog(ctx, d.st, auditKey, cfg.Now()); err != nil {
		return nil, err
	} else if n > 0 {
		d.log.Warn("audit: re-chained the unkeyed (version 1) audit log under the key derived from the root key; export a checkpoint now (rotary audit checkpoint)", "records", n)
	}
	for _, r := range cfg.Regions {
		if err := d.kms.EnsureRegion(ctx, r); err != nil {
			return nil, fmt.Errorf("config: regions: %q: %w", r, err)
		}
	}
	var changes secrets.ChangeFeed // a nil interface on SQLite, never a nil *Listener
	if pg, ok := d.st.(*postgres.Store); ok {
		pg.SetLogger(d.log)
		if cfg.Failpoint != nil { // test builds: crash tests stop between a commit and its notice
			pg.SetNotifyFailpoint(cfg.Failpoint)
		}
		d.changes = pg.NewListener(postgres.ListenerConfig{Logger: d.log})
		changes = d.changes
	}
	d.secrets, err = secrets.New(secrets.Config{Store: wakingStore{Store: d.st, wake: d.wakeRelay}, Keys: d.kms, Logger: d.log, AuditKey: auditKey, Now: cfg.Now, Changes: changes})
	if err != nil {
		return nil, err
	}
	if err := d.bootstrapRootToken(ctx); err != nil {
		return nil, err
	}
	base, maxB := cfg.RetryBackoffBase, cfg.RetryBackoffMax
	if cfg.Dev {
		base, maxB = cmp.Or(base, time.Second), cmp.Or(maxB, 10*time.Second)
	}
	// The configured root token never shows in a plugin's log lines.
	d.plugins = newPluginHost(d.st, d.log, cfg.PluginStartTimeout, cfg.PluginCallTimeout, func() []sensitive.Bytes {
		if cfg.RootToken == "" {
			return nil
		}
		return []sensitive.Bytes{sensitive.Bytes(cfg.RootToken)}
	})
	d.builtin = d.rotators()
	d.engine, err = rotation.New(rotation.Config{
		// The engine commits its steps' events (rotated, rotation_failed)
		// in its own transactions: through the store that wakes the relay.
		Store: wakingStore{Store: d.st, wake: d.wakeRelay}, Secrets: d.secrets, Rotators: resolver{builtin: d.builtin, host: d.plugins}, Logger: d.log, Owner: leaseOwner(cfg.Listen),
		MinInterval: cfg.MinRotationInterval, BackoffBase: base, BackoffMax: maxB,
		LeaseFor: cfg.RotationLease, Failpoint: cfg.Failpoint, Now: cfg.Now, After: cfg.After,
		OnResult: func(rotator, result string) {
			if d.api != nil {
				d.api.EventsWritten()
			}
			if d.schedMetrics != nil {
				d.schedMetrics.results.WithLabelValues(rotator, result).Inc()
			}
		},
		OnScheduleChange: func() {
			if d.runner != nil {
				d.runner.Wake()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	d.ev.hookPlugins = d.plugins
	if err := d.newHooks(hooksKey); err != nil {
		return nil, err
	}
	d.api, err = api.New(api.Config{
		Store: d.st, Secrets: d.secrets, KMS: d.kms, Engine: d.engine, Logger: d.log,
		AuditKey: auditKey, AuditSigner: auditSigner, Hooks: d.ev.hooks,
		AuditWriters: cfg.AuditWriters, AuditAnchorEvery: cfg.AuditAnchorEvery, AuditAnchorInterval: cfg.AuditAnchorInterval,
		EventsPoll: cfg.EventsPoll, EventsHeartbeat: cfg.EventsHeartbeat,
		Plugins: d.plugins, PluginDir: cfg.PluginDir, Now: cfg.Now,
		Ready: func(ctx context.Context) error {
			_, err := d.st.CountKeys(ctx)
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	d.plugins.sup, err = plugins.NewSupervisor(plugins.SupervisorConfig{
		Lookup: d.plugins.lookup, Logger: d.log, Registerer: d.api.Registry(),
		StartTimeout: cfg.PluginStartTimeout, CallTimeout: cfg.PluginCallTimeout,
		StateDir: pluginStateDir(cfg), OnStart: d.plugins.onStart,
		Secrets: d.plugins.secrets,
	})
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	running := func() int {
		if d.runner == nil {
			return 0
		}
		return d.runner.Running()
	}
	if err := d.newRelay(d.api.Registry()); err != nil {
		return nil, err
	}
	d.schedMetrics = newSchedulerMetrics(d.api.Registry(), d.st, cfg.Now, running, d.engine.Failing, d.engine.Unschedulable,
		func(r store.Rotation, now time.Time) time.Duration { return rotationOverdue(d.engine, r, now) })
	if d.changes != nil {
		registerListenerMetrics(d.api.Registry(), d.changes)
	}
	d.runner = schedules.NewRunner(schedules.RunnerConfig{
		Queue:  rotationQueue{st: d.st, owner: d.engine.Owner(), leaseFor: cfg.RotationLease, claimed: d.schedMetrics.claimed},
		Handle: d.handleDue, Concurrency: cfg.RotationConcurrency, Logger: d.log,
		Now: cfg.Now, After: cfg.After,
	})
	d.house, err = schedules.NewHousekeeper(d.housekeepingJobs(), storeLocker{st: d.st, owner: d.engine.Owner(), now: cfg.Now}, d.log)
	if err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// registerListenerMetrics exports the PostgreSQL change listener's state.
func registerListenerMetrics(reg prometheus.Registerer, l *postgres.Listener) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rotary_read_cache_current",
			Help: "1 while the change listener vouches for the read cache (reads are answered from it), 0 while reads bypass it.",
		}, func() float64 {
			if l.Current() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rotary_read_cache_invalidations_total",
			Help: "Secret changes committed by any daemon that dropped a secret from this daemon's read cache.",
		}, func() float64 { return float64(l.Stats().Changes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rotary_read_cache_check_invalidations_total",
			Help: "Of those, changes found by the listener's periodic check of secret_changes before any notice of them (a notice late, or lost with a daemon that died after its commit).",
		}, func() float64 { return float64(l.Stats().Found) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rotary_read_cache_resets_total",
			Help: "Times the whole read cache was dropped because the change listener (re)connected.",
		}, func() float64 { return float64(l.Stats().Resets) }),
	)
}

// auditKeys derives the audit chain's HMAC key and the checkpoint
// signer from the root key.
func auditKeys(root sensitive.Bytes) (audit.Key, audit.Signer, error) {
	kb, err := kms.DeriveKey(root, kms.LabelAuditChain)
	if err != nil {
		return audit.Key{}, audit.Signer{}, err
	}
	defer kb.Wipe()
	key, err := audit.NewKey(kb.Reveal())
	if err != nil {
		return audit.Key{}, audit.Signer{}, err
	}
	seed, err := kms.DeriveKey(root, kms.LabelAuditCheckpoint)
	if err != nil {
		return audit.Key{}, audit.Signer{}, err
	}
	defer seed.Wipe()
	signer, err := audit.NewSigner(seed.Reveal())
	return key, signer, err
}

func (d *Daemon) rootKey(ctx context.Context) (sensitive.Bytes, error) {
	rk := d.cfg.RootKey
	switch {
	case rk.File != "":
		if rk.Generate {
			if _, err := os.Stat(rk.File); errors.Is(err, os.ErrNotExist) {
				if err := kms.WriteRootKeyFile(rk.File); err != nil {
					return nil, fmt.Errorf("root key: %w", err)
				}
				d.log.Warn("generated a new root key (development only)", "file", rk.File)
			}
		}
		return kms.FileSource{Path: rk.File}.RootKey(ctx)
	case rk.Env != "":
		// Read once, then gone from the environment: nothing the daemon
		// starts (hooks, plugins) may inherit the root key.
		defer os.Unsetenv(rk.Env)
		return kms.EnvSource{Name: rk.Env}.RootKey(ctx)
	default:
		salt, err := kms.PassphraseSalt(ctx, secrets.KeyStore(d.st))
		if err != nil {
			return nil, fmt.Errorf("root key: passphrase salt: %w", err)
		}
		return kms.PassphraseSource{Path: rk.PassphraseFile, Salt: salt, Keep: rk.Keep}.RootKey(ctx)
	}
}

// bootstrapRootToken makes the root token on the first start against an
// empty store: the configured one, or a new random one written to
// RootTokenFile (0600). It is never logged. In dev mode it is printed
// (once the daemon listens, with the lines to paste: see printDevLines).
func (d *Daemon) bootstrapRootToken(ctx context.Context) error {
	now := d.cfg.Now().UTC()
	if d.cfg.Dev && d.cfg.RootToken != "" {
		// Dev mode takes the given token on every start.
		if _, err := d.st.GetTokenByHash(ctx, auth.HashToken(d.cfg.RootToken)); err == nil {
			d.devToken = d.cfg.RootToken
			return nil
		}
	}
	if err := d.st.PutMetaIfAbsent(ctx, "auth.root_token_created", []byte(now.Format(time.RFC3339))); err != nil {
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("root token: %w", err)
		}
		if !(d.cfg.Dev && d.cfg.RootToken != "") {
			return nil // made on an earlier start: in RootTokenFile
		}
	}
	plain, id, hash, err := auth.NewToken()
	if err != nil {
		return err
	}
	if d.cfg.RootToken != "" {
		plain, hash = d.cfg.RootToken, auth.HashToken(d.cfg.RootToken)
	}
	tok := store.Token{ID: id, Hash: hash, Name: "root", Policies: []string{api.RootPolicyName}, CreatedAt: now}
	if err := d.st.CreateToken(ctx, tok); err != nil {
		return fmt.Errorf("root token: %w", err)
	}
	if d.cfg.RootToken == "" && d.cfg.RootTokenFile != "" {
		if err := writeSecretFile(d.cfg.RootTokenFile, plain+"\n"); err != nil {
			return fmt.Errorf("root token: %w", err)
		}
		d.log.Info("wrote the root token", "file", d.cfg.RootTokenFile, "token_id", id)
	}
	if d.cfg.Dev {
		d.devToken = plain
	}
	return nil
}

func writeSecretFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// An existing file keeps its mode through O_TRUNC: make it private
	// before the token is written.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Start listens and serves in the background.
func (d *Daemon) Start(ctx context.Context) error {
	if err := d.api.Start(ctx); err != nil {
		return err
	}
	d.bg, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if d.changes != nil {
		if err := d.changes.Start(ctx); err != nil {
			return err
		}
	}
	if err := d.runner.Start(d.bg); err != nil {
		return err
	}
	if err := d.house.Start(d.bg); err != nil {
		return err
	}
	d.startEvents(ctx)
	// Rotations left unfinished by a crash or a stop resume now.
	if err := d.engine.Start(d.bg); err != nil {
		return err
	}
	d.bgWG.Go(func() {
		// A schedule this daemon cannot follow (saved under a smaller
		// min_rotation_interval) is logged now, not when it is next due.
		if n, err := d.engine.CheckSchedules(d.bg); err != nil && d.bg.Err() == nil {
			d.log.Warn("check rotation schedules", "err", err)
		} else if n > 0 {
			d.log.Warn("rotations with a schedule this daemon does not follow (see rotary status)", "count", n, "min_rotation_interval", d.cfg.MinRotationInterval.String())
		}
	})
	d.srv = &http.Server{
		Handler:           d.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      10 * time.Minute, // rewrap streams and waited rotations
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	// Event streams never end on their own: Shutdown would wait for them.
	d.srv.RegisterOnShutdown(d.api.CloseStreams)
	if d.cfg.TLS.CertFile != "" {
		tc, err := d.tlsConfig()
		if err != nil {
			return err
		}
		d.srv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return listenError(d.cfg, err)
	}
	d.ln = ln
	scheme, useTLS := "http", d.srv.TLSConfig != nil
	if useTLS {
		scheme = "https"
	}
	if d.lock != nil {
		if err := d.lock.write(scheme + "://" + clientAddr(ln.Addr())); err != nil {
			d.log.Warn("the store's lock file does not say this daemon's address", "err", err)
		}
	}
	go func() {
		var err error
		if useTLS {
			err = d.srv.ServeTLS(ln, "", "")
		} else {
			err = d.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		d.served <- err
	}()
	if d.cfg.Dev {
		d.log.Warn("DEVELOPMENT MODE: embedded store, root key kept beside the data, root token printed, rotations allowed every second. Never use this for real secrets.",
			"data", d.cfg.Store.SQLite)
	}
	d.log.Info("rotary is listening", "addr", scheme+"://"+ln.Addr().String(), "store", d.st.Dialect())
	if d.cfg.Dev {
		d.printDevLines(scheme + "://" + clientAddr(ln.Addr()))
	}
	return nil
}

func (d *Daemon) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(d.cfg.TLS.CertFile, d.cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("config: tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if d.cfg.TLS.ClientCAFile != "" {
		pem, err := os.ReadFile(d.cfg.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("config: tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config: tls.client_ca_file %s: no certificates found", d.cfg.TLS.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// leaseOwner names this daemon in rotation leases: host and listen
// address, so that a daemon restarted after a crash recognizes its own
// leases and resumes their rotations at once instead of waiting for them
// to expire. Two live daemons cannot share it (they cannot listen on the
// same address). With an ephemeral port the name is random.
func leaseOwner(listen string) string {
	host, _ := os.Hostname()
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "0" {
		return host + "/" + listen
	}
	return ""
}

// rotators is the registry of built-in rotators.
func (d *Daemon) rotators() rotation.Registry {
	return rotation.Registry{
		"random":   random.Rotator{},
		"mysql":    mysqlrot.New(),
		"redis":    redisrot.Rotator{},
		"postgres": pgrot.New(),
	}
}

// Addr is the address the API listens on.
func (d *Daemon) Addr() string {
	if d.ln == nil {
		return ""
	}
	return d.ln.Addr().String()
}

// Stop shuts down gracefully within ShutdownTimeout. Idempotent.
func (d *Daemon) Stop() error {
	var err error
	d.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout)
		defer cancel()
		// Nothing new starts; running rotations end at their next step
		// boundary (the rest of a step in flight gets until the timeout,
		// then its context ends) and resume from their persisted step at
		// the next start, here or on another daemon. Requests waiting for
		// a rotation get their answer when it ends.
		if d.cancel != nil {
			d.runner.Stop()
			d.house.Stop()
		}
		if d.engine != nil {
			if running := d.engine.Running(); len(running) > 0 {
				d.log.Info("shutting down: waiting for running rotations to end their step",
					"rotations", strings.Join(running, ","), "up_to", d.cfg.ShutdownTimeout)
			}
		}
		engineDone := make(chan []string, 1)
		if d.engine != nil {
			go func() { engineDone <- d.engine.Stop(ctx) }()
		} else {
			engineDone <- nil
		}
		if d.srv != nil {
			if e := d.srv.Shutdown(ctx); e != nil {
				// Requests still open at the timeout are cut off: part of
				// a clean shutdown that had to end, not a failure.
				d.log.Warn("shutting down: requests still open at the timeout were cut off", "timeout", d.cfg.ShutdownTimeout)
				_ = d.srv.Close()
			}
		}
		if left := <-engineDone; len(left) > 0 {
			d.log.Warn("rotations still running at shutdown; they resume from their step at the next start", "rotations", strings.Join(left, ","))
		}
		// The database rotators' pooled admin sessions end with the
		// rotations (a step still running closes its session when it
		// gives it back).
		for name, r := range d.builtin {
			if c, ok := r.(io.Closer); ok {
				if e := c.Close(); e != nil {
					d.log.Warn("shutting down: close the rotator", "rotator", name, "err", e)
				}
			}
		}
		if d.cancel != nil {
			d.cancel()
			d.bgWG.Wait()
		}
		d.stopEvents()
		if d.plugins != nil {
			d.plugins.close()
		}
		if d.api != nil {
			d.api.Stop()
		}
		if d.changes != nil {
			d.changes.Stop()
		}
		d.closeStore()
	})
	return err
}

// pluginStateDir is where the plugin supervisor records the process
// groups it runs, so that a restart after a crash ends what is left:
// beside the SQLite store, or beside the root token file.
func pluginStateDir(cfg Config) string {
	switch {
	case cfg.Store.SQLite != "":
		return filepath.Join(filepath.Dir(cfg.Store.SQLite), "plugins.state")
	case cfg.RootTokenFile != "":
		return filepath.Join(filepath.Dir(cfg.RootTokenFile), "plugins.state")
	}
	return ""
}

func (d *Daemon) closeStore() {
	if d.st != nil {
		_ = d.st.Close()
	}
	d.lock.release()
}

// openStore opens the configured store. It returns a nil interface on
// error, never an interface holding a nil pointer: a typed nil would pass
// the d.st != nil check in closeStore and crash in Close.
func openStore(ctx context.Context, cfg StoreConfig) (store.Store, error) {
	if cfg.Postgres != "" {
		st, err := postgres.Open(ctx, cfg.Postgres)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.SQLite), 0o700); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, cfg.SQLite)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Run builds, starts and runs the daemon until ctx is done, then stops it.
func Run(ctx context.Context, cfg Config) error {
	d, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		_ = d.Stop()
		return err
	}
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case err := <-d.served:
		if err != nil {
			_ = d.Stop()
			return fmt.Errorf("serve: %w", err)
		}
	}
	if err := d.Stop(); err != nil {
		return err
	}
	d.log.Info("stopped")
	return nil
}
