package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
	"github.com/rotary-secrets/rotary/kms"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	base := func() daemon.Config {
		return daemon.Config{
			Store:   daemon.StoreConfig{SQLite: filepath.Join(dir, "x.db")},
			RootKey: daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
			Logger:  discardLogger(),
		}
	}
	cases := []struct {
		name string
		mod  func(*daemon.Config)
		want string
	}{
		{"no store", func(c *daemon.Config) { c.Store = daemon.StoreConfig{} }, "store"},
		{"two stores", func(c *daemon.Config) { c.Store.Postgres = "postgres://x" }, "store"},
		{"two root keys", func(c *daemon.Config) { c.RootKey.Env = "X" }, "root_key"},
		{"public plain http", func(c *daemon.Config) { c.Listen = "0.0.0.0:8420" }, "listen"},
		{"half tls", func(c *daemon.Config) { c.TLS.CertFile = "/x" }, "tls"},
		{"tiny interval", func(c *daemon.Config) { c.MinRotationInterval = 1 }, "min_rotation_interval"},
		{"bad region", func(c *daemon.Config) { c.Regions = []string{"Bad Region"} }, "regions"},
		{"tiny outbox retention", func(c *daemon.Config) { c.OutboxRetention = time.Second }, "outbox_retention"},
		{"negative hook attempts", func(c *daemon.Config) { c.HookMaxAttempts = -1 }, "hook_max_attempts"},
		{"tiny hook age", func(c *daemon.Config) { c.HookMaxAge = time.Second }, "hook_max_age"},
		{"negative hook backlog", func(c *daemon.Config) { c.HookMaxBacklog = -5 }, "hook_max_backlog"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			_, err := daemon.New(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestWrongRootKeyStopsStart(t *testing.T) {
	dir := t.TempDir()
	cfg := daemon.Config{
		Listen:  "127.0.0.1:0",
		Store:   daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey: daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		Logger:  discardLogger(),
	}
	d, err := daemon.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = d.Stop()
	if err := os.Remove(cfg.RootKey.File); err != nil {
		t.Fatal(err)
	}
	cfg.RootKey.Generate = true // a new, different key
	_, err = daemon.New(context.Background(), cfg)
	if !errors.Is(err, kms.ErrWrongRootKey) {
		t.Fatalf("New with another root key err = %v, want ErrWrongRootKey", err)
	}
	if !strings.Contains(err.Error(), "root key") {
		t.Errorf("error %q does not say root key", err)
	}
}

// TestRootTokenBootstrap: the first start writes a root token to a 0600
// file and never logs it; the second start keeps it.
func TestRootTokenBootstrap(t *testing.T) {
	dir := t.TempDir()
	var logs lockedBuf
	cfg := daemon.Config{
		Listen:  "127.0.0.1:0",
		Store:   daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey: daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	d, err := daemon.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "root-token"))
	if err != nil {
		t.Fatalf("root token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("root token file mode = %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "root-token"))
	tok := strings.TrimSpace(string(raw))
	c, _ := client.New("http://"+d.Addr(), client.WithToken(tok))
	if _, err := c.ListSecrets(context.Background(), ""); err != nil {
		t.Fatalf("root token refused: %v", err)
	}
	bad, _ := client.New("http://"+d.Addr(), client.WithToken(tok+"x"))
	if _, err := bad.ListSecrets(context.Background(), ""); client.StatusOf(err) != 401 {
		t.Fatalf("wrong token: err = %v, want 401", err)
	}
	_ = d.Stop()
	if strings.Contains(logs.String(), tok) {
		t.Errorf("the root token is in the logs")
	}
	// Second start: same token file, same token works.
	d2, err := daemon.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d2.Stop()
	raw2, _ := os.ReadFile(filepath.Join(dir, "root-token"))
	if string(raw2) != string(raw) {
		t.Errorf("second start rewrote the root token")
	}
	c2, _ := client.New("http://"+d2.Addr(), client.WithToken(tok))
	if _, err := c2.ListSecrets(context.Background(), ""); err != nil {
		t.Fatalf("root token refused after restart: %v", err)
	}
}
