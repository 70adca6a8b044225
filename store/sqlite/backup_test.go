package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// appendWrite commits, in one transaction, audit record n of writer chain
// 2 and a meta row naming n: a snapshot has both or neither.
func appendWrite(ctx context.Context, s *sqlite.Store, n int64) error {
	return s.InTx(ctx, func(tx store.Ops) error {
		h, err := tx.ClaimAuditChain(ctx)
		if err != nil {
			return err
		}
		if h.Seq != n-1 {
			return fmt.Errorf("chain %d head %d, want %d", h.Chain, h.Seq, n-1)
		}
		if err := tx.AppendAudit(ctx, store.AuditRecord{Chain: h.Chain, Seq: n, Time: time.Now(), Action: "test.write", Result: "ok",
			PrevHash: []byte("p"), Hash: []byte("h")}); err != nil {
			return err
		}
		return tx.PutMetaIfAbsent(ctx, fmt.Sprintf("w/%09d", n), []byte("x"))
	})
}

// saveSnapshot copies a Snapshot into a file of the test's and returns
// its path.
func saveSnapshot(t *testing.T, s *sqlite.Store) string {
	t.Helper()
	f, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot err = %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file mode = %v, want 0600", fi.Mode().Perm())
	}
	out := filepath.Join(t.TempDir(), "snap.db")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, f); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newBackupStore(t *testing.T) (*sqlite.Store, string) {
	dir := t.TempDir()
	s := open(t, filepath.Join(dir, "rotary.db"))
	if err := s.PutMetaIfAbsent(t.Context(), "kms.root_check", []byte("check")); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// TestSnapshotUnderConcurrentWrites takes snapshots while transactions
// commit: each snapshot verifies, holds whole transactions only (its audit
// records and meta rows agree), and holds at least what was committed
// before it began and at most what was committed when it ended.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	ctx := t.Context()
	s, dir := newBackupStore(t)
	var committed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for n := int64(1); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := appendWrite(ctx, s, n); err != nil {
				werr = err
				return
			}
			committed.Store(n)
		}
	})
	for committed.Load() < 50 {
		time.Sleep(time.Millisecond) // let the writer commit
	}
	for i := range 5 {
		before := committed.Load()
		path := saveSnapshot(t, s)
		after := committed.Load()
		info, err := sqlite.VerifySnapshot(ctx, path)
		if err != nil {
			t.Fatalf("snapshot %d: VerifySnapshot err = %v", i, err)
		}
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		var records, metas int64
		if err := db.QueryRow(`SELECT count(*) FROM audit WHERE chain = 2`).Scan(&records); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`SELECT count(*) FROM meta WHERE name LIKE 'w/%'`).Scan(&metas); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if records != metas {
			t.Errorf("snapshot %d: %d audit records but %d meta rows: a transaction was cut in two", i, records, metas)
		}
		if records < before || records > after {
			t.Errorf("snapshot %d: %d writes, want between %d (committed before) and %d (committed after)", i, records, before, after)
		}
		if info.AuditRecords != records {
			t.Errorf("snapshot %d: info.AuditRecords = %d, want %d", i, info.AuditRecords, records)
		}
	}
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	if committed.Load() < 60 {
		t.Errorf("only %d writes committed: the snapshots blocked the writer", committed.Load())
	}
	// Nothing is left beside the database.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "backup") {
			t.Errorf("%s left in the data folder", e.Name())
		}
	}
}

func TestVerifySnapshotRejects(t *testing.T) {
	ctx := t.Context()
	s, _ := newBackupStore(t)
	for n := int64(1); n <= 200; n++ {
		if err := appendWrite(ctx, s, n); err != nil {
			t.Fatal(err)
		}
	}
	good := saveSnapshot(t, s)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.VerifySnapshot(ctx, good); err != nil {
		t.Fatalf("VerifySnapshot(good) err = %v", err)
	}
	write := func(t *testing.T, b []byte) string {
		p := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edit := func(t *testing.T, q string) string {
		p := write(t, data)
		db, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := func(t *testing.T) string {
		b := append([]byte(nil), data...)
		// Garble a page in the middle, its b-tree page header included
		// (integrity_check checks structure, not what rows say).
		pageSize := 4096
		mid := (len(b) / pageSize / 2) * pageSize
		for i := mid; i < mid+pageSize; i++ {
			b[i] ^= 0x5a
		}
		return write(t, b)
	}
	fresh := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "fresh.db")
		st, err := sqlite.Open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		return p
	}
	cases := []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"truncated", func(t *testing.T) string { return write(t, data[:len(data)/2]) }, "is truncated"},
		{"shorter than a header", func(t *testing.T) string { return write(t, data[:50]) }, "less than a SQLite header"},
		{"not sqlite", func(t *testing.T) string { return write(t, []byte(strings.Repeat("not a database ", 100))) }, "not a SQLite database"},
		{"corrupted page", corrupt, "integrity"},
		{"no root check", fresh, "no root key check value"},
		{"audit record removed", func(t *testing.T) string { return edit(t, `DELETE FROM audit WHERE chain = 2 AND seq = 100`) }, "audit chain 2"},
		{"newer schema", func(t *testing.T) string {
			return edit(t, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)`)
		}, "newer than this binary"},
		{"table missing", func(t *testing.T) string { return edit(t, `DROP TABLE secret_stages`) }, "table secret_stages is missing"},
		{"beside a WAL", func(t *testing.T) string {
			p := write(t, data)
			if err := os.WriteFile(p+"-wal", []byte("wal frames"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "write-ahead log"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := sqlite.VerifySnapshot(ctx, c.path(t))
			if !errors.Is(err, sqlite.ErrBadSnapshot) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("VerifySnapshot err = %v, want ErrBadSnapshot saying %q", err, c.want)
			}
		})
	}
}

// TestSnapshotRemovesStaleLeftovers: a folder a killed snapshot left
// beside the database goes once it is an hour old; a younger one (another
// snapshot may be writing it) stays.
func TestSnapshotRemovesStaleLeftovers(t *testing.T) {
	s, dir := newBackupStore(t)
	old := filepath.Join(dir, ".rotary.db.backup-123")
	young := filepath.Join(dir, ".rotary.db.backup-456")
	for _, d := range []string{old, young} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	saveSnapshot(t, s)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale leftover %s: Stat err = %v, want it removed", old, err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("young leftover %s: Stat err = %v, want it kept", young, err)
	}
}
