// Package testenv gives tests the machine's real services: a PostgreSQL
// schema of their own, and a wait until a service answers. Only _test.go
// files import it.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq" // the PostgreSQL driver
)

// PostgresBaseDSN is the superuser DSN of the test PostgreSQL
// (ROTARY_TEST_POSTGRES_DSN, default the machine's trusted local server).
func PostgresBaseDSN() string {
	if v := os.Getenv("ROTARY_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Unique returns prefix followed by random hex, for names that must not
// collide between runs.
func Unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// WaitPostgres opens the base DSN and waits up to 30 s for it to answer.
// It fails the test (never skips) when PostgreSQL does not come up.
func WaitPostgres(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", PostgresBaseDSN())
	if err != nil {
		t.Fatalf("open PostgreSQL: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return db
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL at %s does not answer (run scripts/services.sh): %v", PostgresBaseDSN(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// PostgresSchema creates a fresh schema, drops it when the test ends, and
// returns a DSN whose search_path is that schema.
func PostgresSchema(t testing.TB) (dsn, schema string) {
	t.Helper()
	db := WaitPostgres(t)
	schema = Unique("rotary_t_")
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(PostgresBaseDSN())
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}

// PostgresListenerPIDs returns the backends LISTENing on the change
// channel of the rotary store in schema (store/postgres names the channel
// after the schema), as the superuser sees them.
func PostgresListenerPIDs(t testing.TB, schema string) []int {
	t.Helper()
	rows, err := WaitPostgres(t).Query(`SELECT pid FROM pg_stat_activity
		WHERE query = 'LISTEN "rotary_changes_' || left(md5($1), 16) || '"'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pids
}
