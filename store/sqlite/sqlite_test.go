package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
	"github.com/rotary-secrets/rotary/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s) err = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "rotary.db"))
	})
}

func TestConcurrentStores(t *testing.T) {
	storetest.RunConcurrentStores(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "rotary.db")
		return open(t, path), open(t, path)
	})
}

func TestOpenTwice(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rotary.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open err = %v", err)
	}
	if err := s.PutMetaIfAbsent(ctx, "check", []byte("v")); err != nil {
		t.Fatalf("PutMetaIfAbsent err = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close err = %v", err)
	}
	s = open(t, path)
	got, err := s.GetMeta(ctx, "check")
	if err != nil || !bytes.Equal(got, []byte("v")) {
		t.Errorf("GetMeta(check) after reopen = %q, %v; want v", got, err)
	}
}

func TestOpenConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotary.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := sqlite.Open(t.Context(), path)
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
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotary.db")
	s := open(t, path)
	if err := s.PutMetaIfAbsent(t.Context(), "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("Stat(%s) err = %v", p, err)
			continue
		}
		if m := fi.Mode().Perm(); m&0o077 != 0 {
			t.Errorf("mode of %s = %v, want no group or other bits", filepath.Base(p), m)
		}
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db?mode=memory"} {
		if _, err := sqlite.Open(t.Context(), p); err == nil {
			t.Errorf("Open(%q) err = nil, want an error", p)
		}
	}
}

func TestDialect(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rotary.db"))
	if got := s.Dialect(); got != "sqlite" {
		t.Errorf("Dialect() = %q, want sqlite", got)
	}
}

// TestReadsDuringWrite shows the read pool answers while a write
// transaction holds the write lock.
func TestReadsDuringWrite(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "rotary.db"))
	if err := s.PutMetaIfAbsent(ctx, "x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.InTx(ctx, func(tx store.Ops) error {
			if err := tx.PutMetaIfAbsent(ctx, "y", []byte("2")); err != nil {
				return err
			}
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.GetMeta(rctx, "x"); err != nil {
		t.Errorf("GetMeta(x) during a write transaction err = %v", err)
	}
	if _, err := s.GetMeta(rctx, "y"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetMeta(y) before commit err = %v, want ErrNotFound", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// --- benchmarks ---

func benchStore(b *testing.B) *sqlite.Store {
	return open(b, filepath.Join(b.TempDir(), "rotary.db"))
}

func BenchmarkPutVersion(b *testing.B) { storetest.BenchmarkPutVersion(b, benchStore(b), false) }

func BenchmarkPutVersionParallel(b *testing.B) { storetest.BenchmarkPutVersion(b, benchStore(b), true) }

func BenchmarkGetVersion(b *testing.B) { storetest.BenchmarkGetVersion(b, benchStore(b), false) }

func BenchmarkGetVersionParallel(b *testing.B) { storetest.BenchmarkGetVersion(b, benchStore(b), true) }

// TestOpenDirectory: a path that is a directory fails with an error, and
// the failed Open's nil *Store closes as a no-op.
func TestOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), dir)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("Open(directory) err = %v, want one saying it is a directory", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("(*Store)(nil).Close() = %v, want nil", err)
	}
}

// countingStore counts the transactions opened through it.
type countingStore struct {
	store.Store
	txs atomic.Int32
}

func (c *countingStore) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	c.txs.Add(1)
	return c.Store.InTx(ctx, fn)
}

// TestSuiteModes: the conformance suite's InTx mode makes every call in a
// transaction of its own, through the transaction's Ops; the Store mode
// opens none.
func TestSuiteModes(t *testing.T) {
	want := map[string]int32{"Store": 0, "InTx": 3}
	for _, m := range storetest.Modes {
		t.Run(m.Name, func(t *testing.T) {
			ctx := t.Context()
			c := &countingStore{Store: open(t, filepath.Join(t.TempDir(), "rotary.db"))}
			s := m.Wrap(c)
			if err := s.PutMetaIfAbsent(ctx, "x", []byte("1")); err != nil {
				t.Fatal(err)
			}
			if got, err := s.GetMeta(ctx, "x"); err != nil || string(got) != "1" {
				t.Fatalf("GetMeta(x) = %q, %v; want 1", got, err)
			}
			if _, _, err := s.AuditHead(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if got := c.txs.Load(); got != want[m.Name] {
				t.Errorf("transactions opened by three calls = %d, want %d", got, want[m.Name])
			}
		})
	}
}

// TestMigrateAuditChains opens a store written with the schema before
// audit chains (migrations up to 0005, one chain, the audit_head row):
// its records become the legacy chain, unchanged.
func TestMigrateAuditChains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotary.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("migrations/*.sql")
	for _, f := range files {
		var v int
		fmt.Sscanf(filepath.Base(f), "%04d", &v)
		if v >= 6 {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, ?, 0)`, v, filepath.Base(f)); err != nil {
			t.Fatal(err)
		}
	}
	old := storetest.LegacyAuditRecords()
	for _, r := range old {
		if _, err := db.Exec(`INSERT INTO audit (seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.Seq, r.Time.UnixMicro(), r.TokenID, r.Action, r.Target, r.Result, r.RequestID, r.Detail, r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1`, old[2].Hash); err != nil {
		t.Fatal(err)
	}
	db.Close()
	storetest.CheckLegacyAuditMigrated(t, open(t, path))
}
