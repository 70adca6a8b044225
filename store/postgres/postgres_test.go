package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
	"github.com/rotary-secrets/rotary/store/storetest"
)

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func baseDSN() string {
	if v := os.Getenv("ROTARY_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return defaultDSN
}

var (
	adminOnce sync.Once
	adminDB   *sql.DB
	adminErr  error
)

// admin returns a pool on the test database, waiting up to 30 s for the
// server to answer. It fails the test (never skips) when it does not.
func admin(t testing.TB) *sql.DB {
	t.Helper()
	adminOnce.Do(func() {
		db, err := sql.Open("postgres", baseDSN())
		if err != nil {
			adminErr = err
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err = db.PingContext(ctx)
			cancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			db.Close()
			adminErr = err
			return
		}
		adminDB = db
	})
	if adminErr != nil {
		t.Fatalf("PostgreSQL at %s did not answer within 30s (set ROTARY_TEST_POSTGRES_DSN, or start it with scripts/): %v",
			redact(baseDSN()), adminErr)
	}
	return adminDB
}

// redact hides a password in a URL DSN.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return u.String()
		}
	}
	return dsn
}

// freshSchema creates an empty schema with a unique name, drops it when
// the test ends, and returns a DSN whose search_path points at it.
func freshSchema(t testing.TB) (schema, dsn string) {
	t.Helper()
	db := admin(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema = "rotary_t_" + hex.EncodeToString(b)
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("CREATE SCHEMA %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
	})
	return schema, withSearchPath(t, baseDSN(), schema)
}

// withSearchPath adds search_path to a URL or key=value DSN; lib/pq sends
// parameters it does not know as run-time parameters.
func withSearchPath(t testing.TB, dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parse DSN: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open err = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t *testing.T) store.Store {
	_, dsn := freshSchema(t)
	return open(t, dsn)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, newStore)
}

func TestConcurrentStores(t *testing.T) {
	storetest.RunConcurrentStores(t, func(t *testing.T) (store.Store, store.Store) {
		_, dsn := freshSchema(t)
		return open(t, dsn), open(t, dsn)
	})
}

// TestSearchPath checks that the search_path DSN parameter reaches the
// server and that the schema lands there.
func TestSearchPath(t *testing.T) {
	schema, dsn := freshSchema(t)
	open(t, dsn)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cur string
	if err := db.QueryRow(`SELECT current_schema()`).Scan(&cur); err != nil || cur != schema {
		t.Errorf("current_schema() = %q, %v; want %q", cur, err, schema)
	}
	var reg sql.NullString
	if err := admin(t).QueryRow(`SELECT to_regclass($1)::text`, schema+".secrets").Scan(&reg); err != nil || !reg.Valid {
		t.Errorf("to_regclass(%s.secrets) = %v, %v; want the table", schema, reg, err)
	}
}

func TestOpenTwice(t *testing.T) {
	ctx := t.Context()
	_, dsn := freshSchema(t)
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open err = %v", err)
	}
	if err := s.PutMetaIfAbsent(ctx, "check", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dsn)
	if got, err := s.GetMeta(ctx, "check"); err != nil || string(got) != "v" {
		t.Errorf("GetMeta(check) after reopen = %q, %v; want v", got, err)
	}
}

// TestOpenConcurrently starts several daemons at once on an empty schema.
func TestOpenConcurrently(t *testing.T) {
	schema, dsn := freshSchema(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open #%d err = %v", i, err)
		}
	}
	var count, heads int
	db := admin(t)
	// Each migration applied exactly once, however many daemons raced.
	files, _ := filepath.Glob("migrations/*.sql")
	if err := db.QueryRow(`SELECT COUNT(*) FROM ` + schema + `.schema_migrations`).Scan(&count); err != nil || count != len(files) || count == 0 {
		t.Errorf("schema_migrations rows = %d, %v; want %d (one per migration)", count, err, len(files))
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM ` + schema + `.audit_heads`).Scan(&heads); err != nil || heads != 2 {
		t.Errorf("audit_heads rows = %d, %v; want 2 (the legacy and the anchor chain)", heads, err)
	}
}

func TestOpenNoSchema(t *testing.T) {
	admin(t)
	_, err := postgres.Open(t.Context(), withSearchPath(t, baseDSN(), "rotary_does_not_exist"))
	if err == nil {
		t.Fatal("Open with a missing search_path schema err = nil, want an error")
	}
}

// TestInTxRetriesDeadlock makes two transactions lock two rows in opposite
// orders. PostgreSQL aborts one with a deadlock; InTx runs it again and
// both succeed.
func TestInTxRetriesDeadlock(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	for _, n := range []string{"a", "b"} {
		if err := s.CreateSecret(ctx, store.Secret{Name: n, Type: "x", Region: "r", KeyID: "k", NextVersion: 1}); err != nil {
			t.Fatal(err)
		}
	}
	touch := func(tx store.Ops, name string) error {
		sec, err := tx.GetSecret(ctx, name)
		if err != nil {
			return err
		}
		sec.NextVersion++
		return tx.UpdateSecret(ctx, sec)
	}
	var (
		wg       sync.WaitGroup
		barrier  sync.WaitGroup
		attempts [2]int
		errs     [2]error
		done     = [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	)
	barrier.Add(2)
	for i, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		wg.Go(func() {
			defer close(done[i])
			errs[i] = s.InTx(ctx, func(tx store.Ops) error {
				attempts[i]++
				if attempts[i] > 1 {
					// The retry starts once the winner has committed: under
					// READ COMMITTED an earlier read-modify-write could read
					// the winner's rows before its commit and lose its update,
					// which is the isolation level's doing, not InTx's.
					<-done[1-i]
				}
				if err := touch(tx, order[0]); err != nil {
					return err
				}
				if attempts[i] == 1 {
					barrier.Done()
					barrier.Wait()
				}
				return touch(tx, order[1])
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("InTx #%d err = %v, want nil after retry", i, err)
		}
	}
	if attempts[0]+attempts[1] < 3 {
		t.Errorf("attempts = %v, want one transaction retried", attempts)
	}
	for _, n := range []string{"a", "b"} {
		sec, err := s.GetSecret(ctx, n)
		if err != nil || sec.NextVersion != 3 {
			t.Errorf("GetSecret(%s).NextVersion = %d, %v; want 3 (both transactions applied once)", n, sec.NextVersion, err)
		}
	}
}

// TestConflictKeepsTxUsable: on PostgreSQL a raised unique violation would
// abort the transaction; the backend reports ErrConflict without raising.
func TestConflictKeepsTxUsable(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	err := s.InTx(ctx, func(tx store.Ops) error {
		if err := tx.PutMetaIfAbsent(ctx, "m", []byte("1")); err != nil {
			return err
		}
		if err := tx.PutMetaIfAbsent(ctx, "m", []byte("2")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutMetaIfAbsent(m) again err = %v, want ErrConflict", err)
		}
		return tx.PutMetaIfAbsent(ctx, "n", []byte("3"))
	})
	if err != nil {
		t.Fatalf("InTx err = %v", err)
	}
	if got, err := s.GetMeta(ctx, "n"); err != nil || string(got) != "3" {
		t.Errorf("GetMeta(n) = %q, %v; want 3", got, err)
	}
}

func TestDialect(t *testing.T) {
	if got := newStore(t).Dialect(); got != "postgres" {
		t.Errorf("Dialect() = %q, want postgres", got)
	}
}

// --- benchmarks ---

func benchStore(b *testing.B) store.Store {
	_, dsn := freshSchema(b)
	return open(b, dsn)
}

func BenchmarkPutVersion(b *testing.B) { storetest.BenchmarkPutVersion(b, benchStore(b), false) }

func BenchmarkPutVersionParallel(b *testing.B) { storetest.BenchmarkPutVersion(b, benchStore(b), true) }

func BenchmarkGetVersion(b *testing.B) { storetest.BenchmarkGetVersion(b, benchStore(b), false) }

func BenchmarkGetVersionParallel(b *testing.B) { storetest.BenchmarkGetVersion(b, benchStore(b), true) }

// TestOpenErrorHidesPassword: a DSN that does not parse or does not
// connect fails with an error that names the problem but never the
// password, and the failed Open's nil *Store closes as a no-op.
func TestOpenErrorHidesPassword(t *testing.T) {
	const canary = "CanaryPw-7f3a9c"
	for _, dsn := range []string{
		"postgres://rotary:" + canary + "@127.0.0.1:notaport/test?sslmode=disable",
		"postgres://rotary:" + canary + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 password=" + canary + " sslmode=bogus",
		"host=127.0.0.1 port=1 password='" + canary + " x' sslmode=disable connect_timeout=2",
	} {
		s, err := postgres.Open(t.Context(), dsn)
		if err == nil {
			t.Fatalf("Open(%q) err = nil, want an error", strings.ReplaceAll(dsn, canary, "CANARY"))
		}
		if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "x'") {
			t.Errorf("Open err = %q, holds the password", err)
		}
		if !strings.HasPrefix(err.Error(), "postgres: open: ") {
			t.Errorf("Open err = %q, want it to start with postgres: open:", err)
		}
		if s != nil {
			t.Errorf("Open returned a non-nil store with its error")
		}
		if cerr := s.Close(); cerr != nil {
			t.Errorf("(*Store)(nil).Close() = %v, want nil", cerr)
		}
	}
}

// TestMigrateAuditChains opens a schema written before audit chains
// (migrations up to 0004, one chain, the audit_head row): its records
// become the legacy chain, unchanged.
func TestMigrateAuditChains(t *testing.T) {
	schema, dsn := freshSchema(t)
	db := admin(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SET LOCAL search_path TO ` + schema); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("migrations/*.sql")
	for _, f := range files {
		var v int
		fmt.Sscanf(filepath.Base(f), "%04d", &v)
		if v >= 5 {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := tx.Exec(`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v, filepath.Base(f)); err != nil {
			t.Fatal(err)
		}
	}
	old := storetest.LegacyAuditRecords()
	for _, r := range old {
		if _, err := tx.Exec(`INSERT INTO audit (seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, r.Seq, r.Time.Truncate(time.Microsecond), r.TokenID, r.Action, r.Target, r.Result, r.RequestID, r.Detail, r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(`UPDATE audit_head SET seq = 3, hash = $1 WHERE id = 1`, old[2].Hash); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	storetest.CheckLegacyAuditMigrated(t, open(t, dsn))
}
