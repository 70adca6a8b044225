package client_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// TestMain runs the package's examples against a real daemon: an
// in-process daemon on the embedded store, with ROTARY_ADDR and
// ROTARY_TOKEN pointing at it, holding the secrets the examples read
// ("app/api-key"; "app/db", the credential of a PostgreSQL role made for
// this run on the machine's PostgreSQL).
func TestMain(m *testing.M) {
	code, err := withDaemon(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client examples:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func withDaemon(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "rotary-client-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	token := testenv.Unique("client-examples-")
	d, err := daemon.New(ctx, daemon.Config{
		Listen:              "127.0.0.1:0",
		Store:               daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey:             daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootToken:           token,
		MinRotationInterval: time.Second,
		EventsPoll:          100 * time.Millisecond,
		Stdout:              io.Discard,
		Logger:              slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return 0, fmt.Errorf("daemon: %w", err)
	}
	if err := d.Start(ctx); err != nil {
		return 0, fmt.Errorf("daemon start: %w", err)
	}
	defer func() { _ = d.Stop() }()
	addr := "http://" + d.Addr()
	os.Setenv("ROTARY_ADDR", addr)
	os.Setenv("ROTARY_TOKEN", token)
	c, err := client.New(addr, client.WithToken(token))
	if err != nil {
		return 0, err
	}
	if _, err := c.CreateSecret(ctx, client.CreateSecretRequest{Name: "app/api-key", Value: client.NewValue([]byte(testenv.Unique("key-")))}); err != nil {
		return 0, err
	}
	if _, err := c.SetRotation(ctx, "app/api-key", client.RotationSettings{Rotator: "random", Schedule: "@every 24h"}); err != nil {
		return 0, err
	}

	// A PostgreSQL role of this run's own for the sqlconn example, in
	// rotary_pwcheck so that the server checks its password (scripts/services.sh).
	pg, err := sql.Open("postgres", testenv.PostgresBaseDSN())
	if err != nil {
		return 0, err
	}
	defer pg.Close()
	for deadline := time.Now().Add(30 * time.Second); pg.PingContext(ctx) != nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("PostgreSQL at %s does not answer (scripts/services.sh starts it)", testenv.PostgresBaseDSN())
		}
	}
	role, pw := testenv.Unique("client_example_"), testenv.Unique("Pw-")
	if _, err := pg.ExecContext(ctx, "CREATE ROLE "+pq.QuoteIdentifier(role)+" LOGIN PASSWORD "+pq.QuoteLiteral(pw)+" IN ROLE rotary_pwcheck"); err != nil {
		return 0, fmt.Errorf("create role: %w", err)
	}
	defer func() {
		_, _ = pg.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		_, _ = pg.Exec("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(role))
	}()
	cred, _ := json.Marshal(map[string]any{"engine": "postgres", "host": "127.0.0.1", "port": 5432,
		"username": role, "password": pw, "dbname": "test", "sslmode": "disable"})
	if _, err := c.CreateSecret(ctx, client.CreateSecretRequest{Name: "app/db", Type: "db-credentials", Value: client.NewValue(cred)}); err != nil {
		return 0, err
	}
	return m.Run(), nil
}
