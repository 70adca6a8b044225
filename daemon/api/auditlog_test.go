package api

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

var testKey = func() audit.Key {
	k, err := audit.NewKey(bytes.Repeat([]byte{0x42}, audit.KeySize))
	if err != nil {
		panic(err)
	}
	return k
}()

// sharedStore is one fresh store per backend, opened twice (two daemons
// sharing it), and the raw database (someone with access to it).
type sharedStore struct {
	pair [2]store.Store
	raw  *sql.DB
}

func openStores(t *testing.T) map[string]sharedStore {
	t.Helper()
	ctx := context.Background()
	open := func(driver, dsn string, openStore func(context.Context, string) (store.Store, error)) sharedStore {
		var ss sharedStore
		for i := range ss.pair {
			st, err := openStore(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			ss.pair[i] = st
		}
		raw, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		ss.raw = raw
		return ss
	}
	path := filepath.Join(t.TempDir(), "rotary.db")
	dsn, _ := testenv.PostgresSchema(t)
	return map[string]sharedStore{
		"sqlite":   open("sqlite", path, func(ctx context.Context, p string) (store.Store, error) { return sqlite.Open(ctx, p) }),
		"postgres": open("postgres", dsn, func(ctx context.Context, d string) (store.Store, error) { return postgres.Open(ctx, d) }),
	}
}

// writeV1 appends n records chained the way the previous version did.
func writeV1(t *testing.T, st store.Store, n int) []store.AuditRecord {
	t.Helper()
	var recs []store.AuditRecord
	var prev []byte
	for i := range n {
		r := audit.SealV1(prev, int64(i+1), audit.Record{
			Time: time.Now(), TokenID: "tok", Action: "secret.get", Target: fmt.Sprint("app/", i), Result: "ok", Detail: "v1",
		})
		prev = r.Hash
		recs = append(recs, store.AuditRecord(r))
	}
	if err := st.AppendAudit(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	return recs
}

func verifyAll(t *testing.T, st store.Store) (int64, error) {
	t.Helper()
	w := newChainWalk(context.Background(), st, audit.LegacyChain)
	return testKey.Verify(w.next)
}

// TestMigrateAuditLog: a version 1 log is re-chained once, even when two
// daemons start at once on a shared store, and verifies under the key.
func TestMigrateAuditLog(t *testing.T) {
	t.Parallel()
	for name, ss := range openStores(t) {
		pair := ss.pair
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			old := writeV1(t, pair[0], 30)
			if _, err := verifyAll(t, pair[0]); err == nil {
				t.Fatal("control: a version 1 log verifies under the key")
			}
			var (
				wg     sync.WaitGroup
				counts [2]int64
				errs   [2]error
			)
			for i := range pair {
				wg.Go(func() { counts[i], errs[i] = MigrateAuditLog(ctx, pair[i], testKey, time.Now()) })
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil || counts[0]+counts[1] != 30 || counts[0]*counts[1] != 0 {
				t.Fatalf("two concurrent migrations = %v, %v; want one of 30 and one of 0, no errors", counts, errs)
			}
			n, err := verifyAll(t, pair[0])
			if err != nil || n != 31 {
				t.Fatalf("Verify after migration = %d, %v; want 31 (30 and the audit.migrate record), nil", n, err)
			}
			recs, _ := pair[0].ListAudit(ctx, store.AuditFilter{})
			for i, r := range old {
				if recs[i].Target != r.Target || bytes.Equal(recs[i].Hash, r.Hash) {
					t.Fatalf("record %d after migration = %+v", r.Seq, recs[i])
				}
			}
			if m := recs[30]; m.Action != "audit.migrate" || m.TokenID != "system" {
				t.Fatalf("record 31 = %+v, want audit.migrate", m)
			}
			if n, err := MigrateAuditLog(ctx, pair[1], testKey, time.Now()); n != 0 || err != nil {
				t.Fatalf("MigrateAuditLog again = %d, %v; want 0, nil", n, err)
			}
			// With the marker gone (deleted with SQL), the audit.migrate
			// record shows the store was migrated: no second migration.
			if _, err := ss.raw.ExecContext(ctx, `DELETE FROM meta WHERE name = 'audit.chain'`); err != nil {
				t.Fatal(err)
			}
			if n, err := MigrateAuditLog(ctx, pair[1], testKey, time.Now()); n != 0 || err == nil || !strings.Contains(err.Error(), "record 31 says it was moved already") {
				t.Fatalf("MigrateAuditLog with the marker removed = %d, %v; want an error naming record 31", n, err)
			}
		})
	}
}

// TestMigrateAuditLogRefusesBrokenV1: a version 1 log with an altered
// record is refused naming the record, and nothing is rewritten or marked.
func TestMigrateAuditLogRefusesBrokenV1(t *testing.T) {
	t.Parallel()
	for name, ss := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := ss.pair[0]
			old := writeV1(t, st, 10)
			// Record 4's hash no longer matches its contents, as after an
			// edit with SQL.
			r4 := old[3]
			r4.Hash = bytes.Repeat([]byte{1}, audit.HashSize)
			if err := st.RehashAudit(ctx, r4); err != nil {
				t.Fatal(err)
			}
			_, err := MigrateAuditLog(ctx, st, testKey, time.Now())
			var be *audit.BrokenError
			if !errors.As(err, &be) || be.Seq != 4 {
				t.Fatalf("MigrateAuditLog(v1 log broken at 4) err = %v, want a BrokenError at 4", err)
			}
			if _, err := st.GetMeta(ctx, MetaAuditChain); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("marker after a refused migration: err = %v, want ErrNotFound", err)
			}
			recs, _ := st.ListAudit(ctx, store.AuditFilter{})
			if len(recs) != 10 || !bytes.Equal(recs[0].Hash, old[0].Hash) || !bytes.Equal(recs[9].Hash, old[9].Hash) {
				t.Fatal("a refused migration changed records")
			}
		})
	}
}

// TestMigrateAuditLogMarkerRemoved: on a store that was keyed from the
// start, removing the marker with SQL does not get the log "migrated": its
// records are keyed already, and the daemon says so.
func TestMigrateAuditLogMarkerRemoved(t *testing.T) {
	t.Parallel()
	for name, ss := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := ss.pair[0]
			if n, err := MigrateAuditLog(ctx, st, testKey, time.Now()); n != 0 || err != nil {
				t.Fatalf("MigrateAuditLog(new store) = %d, %v; want 0, nil", n, err)
			}
			if _, err := st.GetMeta(ctx, MetaAuditChain); err != nil {
				t.Fatalf("a new store is not marked keyed: %v", err)
			}
			r := testKey.Seal(nil, 1, audit.Record{Time: time.Now(), Action: "secret.get", Result: "ok"})
			if err := st.AppendAudit(ctx, store.AuditRecord(r)); err != nil {
				t.Fatal(err)
			}
			if _, err := ss.raw.ExecContext(ctx, `DELETE FROM meta WHERE name = 'audit.chain'`); err != nil {
				t.Fatal(err)
			}
			_, err := MigrateAuditLog(ctx, st, testKey, time.Now())
			if !errors.Is(err, errNoMigration) || !strings.Contains(err.Error(), "record 1 is sealed under the keyed chain already") {
				t.Fatalf("MigrateAuditLog(keyed log, marker removed) err = %v, want a refusal naming record 1", err)
			}
		})
	}
}
