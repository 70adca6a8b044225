package hooks

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/shlex"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// Hook kinds and triggers.
const (
	KindExec    = "exec"
	KindWebhook = "webhook"
	KindPlugin  = "plugin"

	OnFinished = "finished" // events.Rotated
	OnFailed   = "failed"   // events.RotationFailed
	OnAll      = "all"      // every event type
)

// Defaults and limits.
const (
	DefaultTimeout     = 30 * time.Second
	MaxTimeout         = 10 * time.Minute
	DefaultMaxAttempts = 20
	DefaultMaxAge      = 24 * time.Hour
	DefaultMaxBacklog  = 10000
	DefaultConcurrency = 8
	// MaxOutput bounds the exec output kept for the log.
	MaxOutput = 4 << 10
)

// ErrInvalid marks a hook definition that is refused.
var ErrInvalid = errors.New("invalid hook")

// PluginCaller calls a hook plugin (plugins.Supervisor satisfies it).
type PluginCaller interface {
	OnEvent(ctx context.Context, name string, event []byte) error
}

// Config configures a Manager. Store and Key are required.
type Config struct {
	Store store.Store
	// Owner names this daemon in delivery leases (default: host and pid).
	Owner string
	// Key (32 bytes) seals webhook signing secrets; the daemon derives it
	// from the root key (kms.LabelHookSecrets).
	Key     []byte
	Plugins PluginCaller // nil: plugin hooks fail (and are retried)
	// MaxAttempts and MaxAge bound a delivery's retries (defaults 20,
	// 24h); MaxBacklog bounds each hook's pending deliveries (10000).
	MaxAttempts int
	MaxAge      time.Duration
	MaxBacklog  int
	// Concurrency bounds the deliveries running at once on this daemon
	// (default 8). Poll is how often due deliveries are looked for when
	// nothing woke the workers (default 1s).
	Concurrency int
	Poll        time.Duration
	// BackoffBase and BackoffMax shape the retry delays (defaults 1s, 5m).
	BackoffBase, BackoffMax time.Duration
	// Path is the PATH exec hooks get (default: the daemon's PATH, or
	// /usr/local/bin:/usr/bin:/bin).
	Path       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Manager stores hooks and delivers events to them.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	aead cipher.AEAD
	wake chan struct{}
	m    *metrics

	mu      sync.Mutex
	running int
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("hooks: Store is required")
	}
	if len(cfg.Key) != 32 {
		return nil, errors.New("hooks: Key must be 32 bytes")
	}
	block, err := aes.NewCipher(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = host + "/hooks/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(randBytes(6))
	}
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.MaxBacklog = cmp.Or(cfg.MaxBacklog, DefaultMaxBacklog)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.Poll = cmp.Or(cfg.Poll, time.Second)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, time.Second)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, 5*time.Minute)
	cfg.Path = cmp.Or(cfg.Path, os.Getenv("PATH"), "/usr/local/bin:/usr/bin:/bin")
	switch {
	case cfg.MaxAttempts < 1:
		return nil, fmt.Errorf("hooks: max attempts %d: must be at least 1", cfg.MaxAttempts)
	case cfg.MaxAge < time.Minute:
		return nil, fmt.Errorf("hooks: max age %s: must be at least 1m", cfg.MaxAge)
	case cfg.MaxBacklog < 1:
		return nil, fmt.Errorf("hooks: max backlog %d: must be at least 1", cfg.MaxBacklog)
	case cfg.Concurrency < 1 || cfg.Concurrency > 1024:
		return nil, fmt.Errorf("hooks: concurrency %d: must be between 1 and 1024", cfg.Concurrency)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	mg := &Manager{cfg: cfg, log: cfg.Logger, aead: aead, wake: make(chan struct{}, 1)}
	mg.m = newMetrics(cfg.Store)
	if cfg.Registerer != nil {
		if err := mg.Register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return mg, nil
}

// Register registers the hook metrics with reg.
func (m *Manager) Register(reg prometheus.Registerer) error {
	for _, c := range m.m.collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("hooks: metrics: %w", err)
		}
	}
	return nil
}

// Owner is the name this manager's delivery leases carry.
func (m *Manager) Owner() string { return m.cfg.Owner }

// Wake tells the workers deliveries may be due. It never blocks.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// AddParams is a hook to add, as the user gave it.
type AddParams struct {
	Name    string
	On      string
	Secrets string // glob; "" means every secret
	Kind    string
	Target  string
	Shell   bool
	Timeout time.Duration // 0: DefaultTimeout
	// Secret is a webhook's signing secret; empty: one is generated and
	// returned by Add.
	Secret []byte
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// secretNameChars are the characters of secret names; a secrets glob may
// use them and the wildcards * and ?.
const secretNameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+=.@-"

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks a hook definition and names the field that is wrong.
func (p AddParams) Validate() error {
	if !nameRE.MatchString(p.Name) {
		return invalid("name %q: use 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit", p.Name)
	}
	switch p.On {
	case OnFinished, OnFailed, OnAll:
	default:
		return invalid("--on %q: must be finished, failed or all", p.On)
	}
	if len(p.Secrets) > 512 {
		return invalid("--secrets: glob is %d characters, the limit is 512", len(p.Secrets))
	}
	for i, c := range p.Secrets {
		if c != '*' && c != '?' && (c >= 0x80 || !strings.ContainsRune(secretNameChars, c)) {
			return invalid("--secrets: character %q at position %d can never match a secret name", c, i+1)
		}
	}
	if p.Timeout < 0 || p.Timeout > MaxTimeout || (p.Timeout != 0 && p.Timeout < 100*time.Millisecond) {
		return invalid("--timeout %s: must be between 100ms and %s", p.Timeout, MaxTimeout)
	}
	if len(p.Target) > 4096 {
		return invalid("target is %d characters, the limit is 4096", len(p.Target))
	}
	if p.Shell && p.Kind != KindExec {
		return invalid("--shell goes only with --exec")
	}
	if len(p.Secret) > 0 && p.Kind != KindWebhook {
		return invalid("--secret-file goes only with --webhook")
	}
	switch p.Kind {
	case KindExec:
		if strings.TrimSpace(p.Target) == "" {
			return invalid("--exec: empty command")
		}
		if strings.ContainsRune(p.Target, 0) {
			return invalid("--exec: the command contains a NUL byte")
		}
		if !p.Shell {
			if _, err := shlex.Split(p.Target); err != nil {
				return invalid("--exec %q: %v (quote it, or use --shell)", p.Target, err)
			}
		}
	case KindWebhook:
		u, err := url.Parse(p.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("--webhook %q: must be an http:// or https:// URL with a host", p.Target)
		}
		if u.User != nil {
			return invalid("--webhook: credentials in the URL are not allowed (the request is signed; use --secret-file)")
		}
		if n := len(p.Secret); n > 0 && (n < 16 || n > 4096) {
			return invalid("--secret-file: the secret is %d bytes, must be 16 to 4096", n)
		}
	case KindPlugin:
		if !nameRE.MatchString(p.Target) {
			return invalid("--plugin %q: not a plugin name", p.Target)
		}
	default:
		return invalid("kind %q: give one of --exec, --webhook and --plugin", p.Kind)
	}
	return nil
}

// Add validates and stores a hook. For a webhook without a secret it
// generates one and returns it: the only time it leaves the daemon.
// ErrConflict (from store) when the name is taken.
func (m *Manager) Add(ctx context.Context, p AddParams) (generated string, err error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	secret := p.Secret
	if p.Kind == KindWebhook && len(secret) == 0 {
		generated = hex.EncodeToString(randBytes(32))
		secret = []byte(generated)
	}
	h := store.Hook{
		Name: p.Name, On: p.On, Secrets: p.Secrets, Kind: p.Kind, Target: p.Target, Shell: p.Shell,
		Timeout: p.Timeout, CreatedAt: m.cfg.Now().UTC(),
	}
	if p.Kind == KindWebhook {
		h.SealedSecret = m.seal(p.Name, secret)
	}
	err = m.cfg.Store.InTx(ctx, func(tx store.Ops) error {
		if _, err := tx.GetHook(ctx, p.Name); err == nil {
			return fmt.Errorf("hook %q exists (remove it first): %w", p.Name, store.ErrConflict)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return tx.PutHook(ctx, h)
	})
	if err != nil {
		return "", err
	}
	return generated, nil
}

// Remove deletes a hook and its pending deliveries; store.ErrNotFound if
// there is none.
func (m *Manager) Remove(ctx context.Context, name string) error {
	return m.cfg.Store.DeleteHook(ctx, name)
}

// List returns every hook with its delivery state (never a secret).
func (m *Manager) List(ctx context.Context) ([]store.Hook, error) {
	hs, err := m.cfg.Store.ListHooks(ctx)
	for i := range hs {
		hs[i].SealedSecret = nil
	}
	return hs, err
}

const secretAADPrefix = "rotary hook signing secret v1\x00"

func (m *Manager) seal(name string, secret []byte) []byte {
	nonce := randBytes(m.aead.NonceSize())
	return m.aead.Seal(nonce, nonce, secret, []byte(secretAADPrefix+name))
}

func (m *Manager) open(name string, sealed []byte) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("signing secret: cannot be opened")
	}
	pt, err := m.aead.Open(nil, sealed[:n], sealed[n:], []byte(secretAADPrefix+name))
	if err != nil {
		return nil, errors.New("signing secret: cannot be opened (wrong root key or tampered)")
	}
	return pt, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

// matches reports whether hook h wants event type typ of secret name.
func matches(h store.Hook, typ, secret string) bool {
	switch h.On {
	case OnFinished:
		if typ != events.Rotated {
			return false
		}
	case OnFailed:
		if typ != events.RotationFailed {
			return false
		}
	case OnAll:
	default:
		return false
	}
	return h.Secrets == "" || auth.Match(h.Secrets, secret)
}
