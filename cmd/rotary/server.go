package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/daemon"
)

// serverFlags are the flags of rotary server.
type serverFlags struct {
	config       string
	dev          bool
	listen       string
	dataDir      string
	devRootToken string
	redis        string
	logLevel     string
	logFormat    string
}

func (a *app) serverCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "server (--config FILE | --dev)",
		Short: "Run the rotary daemon",
		Long: `Run the rotary daemon until SIGINT or SIGTERM, then stop gracefully and exit 0:
no new rotations start, running ones end their current step (for up to
shutdown_timeout, 10s by default; the log names them) and resume from the
next step at the next start, here or on another daemon. A second SIGINT or
SIGTERM during the shutdown exits at once (128+signal number); rotations cut
off then resume from their last persisted step.

--config reads a YAML file (see the README); string values there may use
$env{NAME} and $file{PATH}. On the first start against an empty store the
ROTARY_ROOT_TOKEN environment variable, when set, becomes the root token.

--dev runs a development daemon: an embedded store in --data-dir (a fresh
temporary folder by default), a generated root key kept beside it, the root
token printed once (or the one given by --dev-root-token) and a minimum
rotation interval of 1s. Once it listens it prints the export lines that
point the CLI at it (PATH when rotary is not on it, ROTARY_ADDR, and
ROTARY_TOKEN read from its file).
Never use it for real secrets.

A SQLite store (--data-dir, store.sqlite) serves one daemon at a time: a
second one is refused, naming the pid and address of the first.`,
		Example: `  rotary server --config /etc/rotary/rotary.yaml
  rotary server --dev
  rotary server --dev --listen 127.0.0.1:9000 --data-dir .rotary-dev --dev-root-token devroot`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.serverConfig(cmd, sf)
			if err != nil {
				return err
			}
			logger, err := newLogger(a.stderr, sf.logLevel, sf.logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.Stdout = a.stdout
			cfg.Failpoint = failpoint(a.getenv)
			ctx, stop := a.shutdownSignals(cmd.Context(), cmp.Or(cfg.ShutdownTimeout, daemon.DefaultShutdownTimeout))
			defer stop()
			if err := daemon.Run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sf.config, "config", "", "YAML configuration file")
	f.BoolVar(&sf.dev, "dev", false, "run a development daemon (see above)")
	f.StringVar(&sf.listen, "listen", "", "host:port to listen on (default "+daemon.DefaultListen+"; overrides the config file)")
	f.StringVar(&sf.dataDir, "data-dir", "", "with --dev: where the store and root key live (default: a new temporary folder)")
	f.StringVar(&sf.devRootToken, "dev-root-token", "", "with --dev: use this root token instead of a generated one")
	f.StringVar(&sf.redis, "redis", "", "redis:// URL for events (overrides the config file)")
	f.StringVar(&sf.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&sf.logFormat, "log-format", "text", "text or json")
	return cmd
}

// serverConfig turns the server flags (and the config file) into a
// daemon.Config.
func (a *app) serverConfig(cmd *cobra.Command, sf serverFlags) (daemon.Config, error) {
	switch {
	case sf.dev && sf.config != "":
		return daemon.Config{}, usageErrorf("--dev and --config are mutually exclusive")
	case !sf.dev && sf.config == "":
		return daemon.Config{}, usageErrorf("server: give --config FILE, or --dev for a development daemon")
	case !sf.dev && cmd.Flags().Changed("data-dir"):
		return daemon.Config{}, usageErrorf("--data-dir: only with --dev (set store.sqlite in the config file)")
	case !sf.dev && cmd.Flags().Changed("dev-root-token"):
		return daemon.Config{}, usageErrorf("--dev-root-token: only with --dev (use ROTARY_ROOT_TOKEN with --config)")
	}
	envToken, err := a.rootTokenFromEnv(sf.dev)
	if err != nil {
		return daemon.Config{}, err
	}
	var cfg daemon.Config
	if sf.dev {
		if sf.devRootToken != "" {
			if err := checkRootToken(sf.devRootToken, true); err != nil {
				return daemon.Config{}, usageErrorf("--dev-root-token: %v", err)
			}
		}
		// The variable is unset by now: hand devConfig the value read.
		cfg, err = devConfig(sf, func(k string) string {
			if k == rootTokenEnv {
				return envToken
			}
			return a.getenv(k)
		})
	} else {
		cfg, err = loadConfigFile(sf.config, osConfigEnv())
		if sf.listen != "" {
			cfg.Listen = sf.listen
		}
		if sf.redis != "" {
			cfg.Redis = daemon.RedisConfig{URL: sf.redis, Prefix: cfg.Redis.Prefix, MaxLen: cfg.Redis.MaxLen}
		}
		cfg.RootToken = envToken
	}
	if err != nil {
		return cfg, err
	}
	// The flags are checked with the file, in the one place that checks
	// the configuration.
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if err := checkRootFiles(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// devConfig builds the configuration of rotary server --dev.
func devConfig(sf serverFlags, getenv func(string) string) (daemon.Config, error) {
	dir := sf.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "rotary-dev-")
		if err != nil {
			return daemon.Config{}, fmt.Errorf("--dev: make a data folder: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return daemon.Config{}, fmt.Errorf("--data-dir: %w", err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return daemon.Config{
		Listen:              cmp.Or(sf.listen, daemon.DefaultListen),
		Store:               daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey:             daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootTokenFile:       filepath.Join(dir, "root-token"),
		RootToken:           cmp.Or(sf.devRootToken, getenv("ROTARY_ROOT_TOKEN")),
		Redis:               daemon.RedisConfig{URL: sf.redis},
		MinRotationInterval: time.Second,
		Dev:                 true,
	}, nil
}

// newLogger makes the daemon's slog logger on w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format: %q is not one of text, json", format)
}

// shutdownSignals returns a context that ends at the first SIGINT or
// SIGTERM (a graceful shutdown, said on stderr); a second one exits the
// process at once with 128+its number.
func (a *app) shutdownSignals(parent context.Context, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(a.stderr, "rotary: %s: shutting down; running rotations end their step (up to %s). Send it again to exit at once.\n", sig, timeout)
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(a.stderr, "rotary: %s again: exiting now; rotations cut off resume from their last step at the next start\n", sig)
			code := 1
			if n, ok := sig.(syscall.Signal); ok {
				code = 128 + int(n)
			}
			os.Exit(code)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
