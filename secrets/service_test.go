package secrets_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// bundle is what each test gets: a service on a real store.
type bundle struct {
	st    store.Store
	km    *kms.Manager
	svc   *secrets.Service
	clock *clock
	logs  *bytes.Buffer
	root  []byte
	// raw dumps every byte the backend holds, for canary checks.
	raw func(t *testing.T) []byte
}

type backend struct {
	name string
	open func(t *testing.T) (store.Store, func(t *testing.T) []byte)
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) (store.Store, func(t *testing.T) []byte) {
			path := filepath.Join(t.TempDir(), "rotary.db")
			st, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatalf("sqlite.Open: %v", err)
			}
			return st, func(t *testing.T) []byte {
				var all []byte
				for _, suffix := range []string{"", "-wal", "-shm"} {
					b, err := os.ReadFile(path + suffix)
					if err == nil {
						all = append(all, b...)
					}
				}
				return all
			}
		}},
		{"postgres", func(t *testing.T) (store.Store, func(t *testing.T) []byte) {
			dsn, schema := testenv.PostgresSchema(t)
			st, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatalf("postgres.Open: %v", err)
			}
			return st, func(t *testing.T) []byte { return dumpSchema(t, dsn, schema) }
		}},
	}
}

// dumpSchema renders every row of every table of schema as text.
func dumpSchema(t *testing.T, dsn, schema string) []byte {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	var out bytes.Buffer
	for _, tb := range tables {
		// Each row as text, and bytea columns decoded, so a canary hidden in
		// a blob would show.
		r, err := db.Query(fmt.Sprintf(`SELECT t::text FROM %q.%q t`, schema, tb))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var s string
			if err := r.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out.WriteString(s)
			out.WriteByte('\n')
		}
		r.Close()
	}
	// Also raw bytea contents.
	r, err := db.Query(`SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1 AND data_type = 'bytea'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ t, c string }
	var cols []col
	for r.Next() {
		var c col
		if err := r.Scan(&c.t, &c.c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	r.Close()
	for _, c := range cols {
		rr, err := db.Query(fmt.Sprintf(`SELECT %q FROM %q.%q`, c.c, schema, c.t))
		if err != nil {
			t.Fatal(err)
		}
		for rr.Next() {
			var b []byte
			if err := rr.Scan(&b); err != nil {
				t.Fatal(err)
			}
			out.Write(b)
		}
		rr.Close()
	}
	return out.Bytes()
}

func newRoot() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func setup(t *testing.T, be backend, cacheTTL time.Duration) *bundle {
	t.Helper()
	st, raw := be.open(t)
	t.Cleanup(func() { st.Close() })
	b := &bundle{st: st, raw: raw, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, logs: &bytes.Buffer{}, root: newRoot()}
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: b.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	b.km, err = kms.New(context.Background(), kms.Config{Store: secrets.KeyStore(st), Root: sensitive.Bytes(b.root), Now: b.clock.Now, Logger: logger, CacheTTL: time.Nanosecond})
	if err != nil {
		t.Fatalf("kms.New: %v", err)
	}
	if err := b.km.EnsureRegion(ctx, "default"); err != nil {
		t.Fatalf("EnsureRegion: %v", err)
	}
	b.svc, err = secrets.New(secrets.Config{Store: st, Keys: b.km, Now: b.clock.Now, Logger: logger, KeepVersions: 5, ReadCacheTTL: cacheTTL, AuditKey: testenv.AuditKey(t, b.root)})
	if err != nil {
		t.Fatalf("secrets.New: %v", err)
	}
	return b
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func forEach(t *testing.T, f func(t *testing.T, b *bundle)) { forEachCache(t, 0, f) }

// forEachCache runs f on every backend with the given read cache TTL (0:
// the default; negative: off, for tests that change the store behind the
// service's back).
func forEachCache(t *testing.T, cacheTTL time.Duration, f func(t *testing.T, b *bundle)) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			f(t, setup(t, be, cacheTTL))
		})
	}
}

var ctx = context.Background()

func mustCreate(t *testing.T, b *bundle, p secrets.CreateParams) secrets.Info {
	t.Helper()
	info, err := b.svc.Create(ctx, p)
	if err != nil {
		t.Fatalf("Create(%s): %v", p.Name, err)
	}
	return info
}

func mustGet(t *testing.T, b *bundle, p secrets.GetParams) secrets.Value {
	t.Helper()
	v, err := b.svc.Get(ctx, p)
	if err != nil {
		t.Fatalf("Get(%+v): %v", p, err)
	}
	return v
}

func TestPutMovesStages(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "app/db", Value: []byte("v1")})
		for i := 2; i <= 3; i++ {
			v, err := b.svc.Put(ctx, secrets.PutParams{Name: "app/db", Value: []byte(fmt.Sprintf("v%d", i))})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if v.Version != int64(i) {
				t.Fatalf("Put version = %d, want %d", v.Version, i)
			}
		}
		for _, tc := range []struct {
			p    secrets.GetParams
			want string
			ver  int64
		}{
			{secrets.GetParams{Name: "app/db"}, "v3", 3},
			{secrets.GetParams{Name: "app/db", Stage: "current"}, "v3", 3},
			{secrets.GetParams{Name: "app/db", Stage: "previous"}, "v2", 2},
			{secrets.GetParams{Name: "app/db", Version: 1}, "v1", 1},
		} {
			got := mustGet(t, b, tc.p)
			if string(got.Value.Reveal()) != tc.want || got.Version != tc.ver {
				t.Errorf("Get(%+v) = %q v%d, want %q v%d", tc.p, got.Value.Reveal(), got.Version, tc.want, tc.ver)
			}
		}
		if _, err := b.svc.Get(ctx, secrets.GetParams{Name: "app/db", Stage: "pending"}); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("Get(stage pending) err = %v, want ErrNotFound", err)
		}
		info, err := b.svc.Describe(ctx, "app/db")
		if err != nil {
			t.Fatal(err)
		}
		if info.Stages["current"] != 3 || info.Stages["previous"] != 2 || len(info.Stages) != 2 {
			t.Errorf("stages = %v, want current 3 previous 2", info.Stages)
		}
		if len(info.Versions) != 3 || info.Versions[0].Fingerprint == "" {
			t.Errorf("versions = %+v", info.Versions)
		}
	})
}

// TestEveryWriteHasOutboxAndAudit checks that each write committed its
// event and its audit record, and that the chain verifies.
func TestEveryWriteHasOutboxAndAudit(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		ctx := secrets.WithActor(ctx, secrets.Actor{TokenID: "tok_test", RequestID: "req1"})
		mustCreate(t, b, secrets.CreateParams{Name: "a", Value: []byte("one")})
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "a", Value: []byte("two")}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: "a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Restore(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		evs, err := b.st.ListOutboxAfter(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range evs {
			types = append(types, e.Type)
			if bytes.Contains(e.Payload, []byte("one")) || bytes.Contains(e.Payload, []byte("two")) {
				t.Errorf("event %s payload holds a value: %s", e.Type, e.Payload)
			}
		}
		want := []string{"version_created", "version_created", "deleted", "restored"}
		if !reflect.DeepEqual(types, want) {
			t.Errorf("outbox = %v, want %v", types, want)
		}
		recs, err := b.st.ListAudit(ctx, store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, r := range recs {
			actions = append(actions, r.Action)
		}
		wantA := []string{"secret.create", "secret.put", "secret.delete", "secret.restore"}
		if !reflect.DeepEqual(actions, wantA) {
			t.Errorf("audit actions = %v, want %v", actions, wantA)
		}
		if recs[1].TokenID != "tok_test" || recs[1].RequestID != "req1" {
			t.Errorf("audit record actor = %q/%q, want tok_test/req1", recs[1].TokenID, recs[1].RequestID)
		}
		i := 0
		n, err := testenv.AuditKey(t, b.root).Verify(func() (audit.Record, bool, error) {
			if i == len(recs) {
				return audit.Record{}, false, nil
			}
			i++
			return audit.Record(recs[i-1]), true, nil
		})
		if err != nil || n != 4 {
			t.Errorf("Verify = %d, %v; want 4, nil", n, err)
		}
	})
}

// TestTampering: ciphertexts moved, flipped or truncated in the store fail
// with the uniform error, and nothing else is affected.
func TestTampering(t *testing.T) {
	forEachCache(t, -1, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "x", Value: []byte("x-one")})
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "x", Value: []byte("x-two")}); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, b, secrets.CreateParams{Name: "y", Value: []byte("y-one")})
		vx1, _ := b.st.GetVersion(ctx, "x", 1)
		vx2, _ := b.st.GetVersion(ctx, "x", 2)
		vy1, _ := b.st.GetVersion(ctx, "y", 1)

		swap := func(secret string, version int64, old, new []byte) {
			t.Helper()
			if err := b.st.SwapEnvelope(ctx, store.SwapEnvelopeParams{Secret: secret, Version: version, Old: old, New: new, NewKeyVersion: 1}); err != nil {
				t.Fatalf("SwapEnvelope: %v", err)
			}
		}
		flipped := bytes.Clone(vy1.Envelope)
		flipped[len(flipped)-5] ^= 0x01
		cases := []struct {
			name string
			env  []byte
		}{
			{"moved from another secret", vx1.Envelope},
			{"moved from another version", nil}, // set below: y has one version; use x2 onto x1
			{"bit flipped", flipped},
			{"truncated", vy1.Envelope[:len(vy1.Envelope)-3]},
			{"empty", []byte{}},
		}
		for _, tc := range cases {
			if tc.env == nil {
				continue
			}
			swap("y", 1, vy1.Envelope, tc.env)
			_, err := b.svc.Get(ctx, secrets.GetParams{Name: "y"})
			if !errors.Is(err, kms.ErrDecrypt) {
				t.Errorf("%s: Get err = %v, want ErrDecrypt", tc.name, err)
			}
			swap("y", 1, tc.env, vy1.Envelope)
		}
		// Another version of the same secret.
		swap("x", 1, vx1.Envelope, vx2.Envelope)
		if _, err := b.svc.Get(ctx, secrets.GetParams{Name: "x", Version: 1}); !errors.Is(err, kms.ErrDecrypt) {
			t.Errorf("version moved: Get err = %v, want ErrDecrypt", err)
		}
		if got := mustGet(t, b, secrets.GetParams{Name: "x"}); string(got.Value.Reveal()) != "x-two" {
			t.Errorf("x current = %q, want x-two (unaffected)", got.Value.Reveal())
		}
		if got := mustGet(t, b, secrets.GetParams{Name: "y"}); string(got.Value.Reveal()) != "y-one" {
			t.Errorf("y after restore = %q, want y-one", got.Value.Reveal())
		}
	})
}

func TestWrongRootKey(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "s", Value: []byte("value")})
		_, err := kms.New(ctx, kms.Config{Store: secrets.KeyStore(b.st), Root: sensitive.Bytes(newRoot())})
		if !errors.Is(err, kms.ErrWrongRootKey) {
			t.Fatalf("kms.New(wrong root) err = %v, want ErrWrongRootKey", err)
		}
		// The right key still works.
		km, err := kms.New(ctx, kms.Config{Store: secrets.KeyStore(b.st), Root: sensitive.Bytes(b.root)})
		if err != nil {
			t.Fatalf("kms.New(right root): %v", err)
		}
		svc, _ := secrets.New(secrets.Config{Store: b.st, Keys: km, AuditKey: testenv.AuditKey(t, b.root)})
		v, err := svc.Get(ctx, secrets.GetParams{Name: "s"})
		if err != nil || string(v.Value.Reveal()) != "value" {
			t.Fatalf("Get with a second manager = %q, %v", v.Value.Reveal(), err)
		}
	})
}

func TestDisabledAndDeletedKeys(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		k, err := b.km.CreateKey(ctx, kms.CreateKeyParams{Region: "default", Alias: "doomed"})
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, b, secrets.CreateParams{Name: "on-doomed", KeyRef: "alias/doomed", Value: []byte("d-value")})
		mustCreate(t, b, secrets.CreateParams{Name: "on-default", Value: []byte("ok-value")})

		if _, err := b.km.DisableKey(ctx, "default", k.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Get(ctx, secrets.GetParams{Name: "on-doomed"}); !errors.Is(err, kms.ErrDecrypt) {
			t.Errorf("disabled key: Get err = %v, want ErrDecrypt", err)
		}
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "on-doomed", Value: []byte("new")}); err == nil {
			t.Errorf("disabled key: Put succeeded, want an error")
		}
		if got := mustGet(t, b, secrets.GetParams{Name: "on-default"}); string(got.Value.Reveal()) != "ok-value" {
			t.Errorf("other key affected: %q", got.Value.Reveal())
		}
		if _, err := b.km.EnableKey(ctx, "default", k.ID); err != nil {
			t.Fatal(err)
		}
		mustGet(t, b, secrets.GetParams{Name: "on-doomed"})

		if _, err := b.km.ScheduleKeyDeletion(ctx, "default", k.ID, 7*24*time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Get(ctx, secrets.GetParams{Name: "on-doomed"}); !errors.Is(err, kms.ErrDecrypt) {
			t.Errorf("pending deletion: Get err = %v, want ErrDecrypt", err)
		}
		b.clock.Add(8 * 24 * time.Hour)
		if n, err := b.km.PurgeDueKeys(ctx); err != nil || n != 1 {
			t.Fatalf("PurgeDueKeys = %d, %v; want 1", n, err)
		}
		if _, err := b.svc.Get(ctx, secrets.GetParams{Name: "on-doomed"}); !errors.Is(err, kms.ErrDecrypt) {
			t.Errorf("purged key: Get err = %v, want ErrDecrypt", err)
		}
		if got := mustGet(t, b, secrets.GetParams{Name: "on-default"}); string(got.Value.Reveal()) != "ok-value" {
			t.Errorf("other key affected after purge: %q", got.Value.Reveal())
		}
	})
}

// TestBadInputLeavesStoreUnchanged: each refusal names the problem and
// the stored data stays as it was.
func TestBadInputLeavesStoreUnchanged(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "db", Type: "db-credentials",
			Value: []byte(`{"engine":"postgres","host":"h","port":5432,"username":"u","password":"p","dbname":"d"}`)})
		before, _ := b.svc.Describe(ctx, "db")
		cases := []struct {
			name string
			call func() error
			want string
		}{
			{"bad name", func() error {
				_, err := b.svc.Create(ctx, secrets.CreateParams{Name: "bad name", Value: []byte("x")})
				return err
			}, "bad name"},
			{"unknown type", func() error {
				_, err := b.svc.Create(ctx, secrets.CreateParams{Name: "t", Type: "blob", Value: []byte("x")})
				return err
			}, "blob"},
			{"oversize", func() error {
				_, err := b.svc.Put(ctx, secrets.PutParams{Name: "db", Value: bytes.Repeat([]byte("a"), 64<<10+1)})
				return err
			}, "65536"},
			{"bad JSON", func() error {
				_, err := b.svc.Put(ctx, secrets.PutParams{Name: "db", Value: []byte(`{"engine":`)})
				return err
			}, "db-credentials"},
			{"bad port", func() error {
				_, err := b.svc.Put(ctx, secrets.PutParams{Name: "db", Value: []byte(`{"engine":"postgres","host":"h","port":99999,"username":"u","password":"p","dbname":"d"}`)})
				return err
			}, "port"},
			{"bad PEM", func() error {
				_, err := b.svc.Create(ctx, secrets.CreateParams{Name: "cert", Type: "certificate", Value: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")})
				return err
			}, "certificate"},
			{"exists", func() error {
				_, err := b.svc.Create(ctx, secrets.CreateParams{Name: "db", Value: []byte("x")})
				return err
			}, "exists"},
			{"bad window", func() error {
				_, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: "db", RecoveryWindow: time.Hour})
				return err
			}, "recovery window"},
		}
		for _, tc := range cases {
			err := tc.call()
			if err == nil {
				t.Errorf("%s: no error", tc.name)
				continue
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, tc.want)
			}
		}
		after, _ := b.svc.Describe(ctx, "db")
		if !reflect.DeepEqual(before, after) {
			t.Errorf("store changed by refused input:\nbefore %+v\nafter  %+v", before, after)
		}
		if _, err := b.svc.Describe(ctx, "cert"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("refused create left a secret behind: %v", err)
		}
	})
}

func TestDeleteRestorePurge(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "gone", Value: []byte("v")})
		mustCreate(t, b, secrets.CreateParams{Name: "kept", Value: []byte("v")})
		info, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: "gone", RecoveryWindow: 2 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if info.PurgeAt == nil || !info.PurgeAt.Equal(b.clock.Now().Add(48*time.Hour)) {
			t.Errorf("PurgeAt = %v, want now+48h", info.PurgeAt)
		}
		if _, err := b.svc.Get(ctx, secrets.GetParams{Name: "gone"}); !errors.Is(err, secrets.ErrDeleted) {
			t.Errorf("Get deleted err = %v, want ErrDeleted", err)
		}
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "gone", Value: []byte("x")}); !errors.Is(err, secrets.ErrDeleted) {
			t.Errorf("Put deleted err = %v, want ErrDeleted", err)
		}
		if _, err := b.svc.Restore(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		mustGet(t, b, secrets.GetParams{Name: "gone"})
		if _, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: "gone"}); err != nil {
			t.Fatal(err)
		}
		b.clock.Add(6 * 24 * time.Hour)
		if n, _ := b.svc.PurgeDue(ctx); n != 0 {
			t.Errorf("PurgeDue before the window = %d, want 0", n)
		}
		b.clock.Add(24*time.Hour + time.Second)
		if n, err := b.svc.PurgeDue(ctx); n != 1 || err != nil {
			t.Errorf("PurgeDue after the window = %d, %v, want 1", n, err)
		}
		if _, err := b.svc.Describe(ctx, "gone"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("purged secret still described: %v", err)
		}
		if _, err := b.svc.Restore(ctx, "gone"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("restore after purge err = %v, want ErrNotFound", err)
		}
		mustGet(t, b, secrets.GetParams{Name: "kept"})
		// Force deletes at once, and the name can be reused.
		if _, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: "kept", Force: true}); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, b, secrets.CreateParams{Name: "kept", Value: []byte("again")})
	})
}

func TestRetention(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "r", Value: []byte("v1")})
		for i := 2; i <= 8; i++ {
			if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "r", Value: []byte(fmt.Sprintf("v%d", i))}); err != nil {
				t.Fatal(err)
			}
		}
		// Young versions are never pruned, even past the count.
		if info, _ := b.svc.Describe(ctx, "r"); len(info.Versions) != 8 {
			t.Fatalf("versions = %d, want 8 (none older than 24h)", len(info.Versions))
		}
		b.clock.Add(25 * time.Hour)
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "r", Value: []byte("v9")}); err != nil {
			t.Fatal(err)
		}
		info, _ := b.svc.Describe(ctx, "r")
		var got []int64
		for _, v := range info.Versions {
			got = append(got, v.Version)
		}
		// Keep 5: 9 versions, 4 unstaged old ones pruned (1-4); 8 previous, 9 current.
		want := []int64{5, 6, 7, 8, 9}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("versions after prune = %v, want %v", got, want)
		}
	})
}

func TestRewrap(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		for i := range 12 {
			mustCreate(t, b, secrets.CreateParams{Name: fmt.Sprintf("rw/%02d", i), Value: []byte(fmt.Sprintf("value-%d", i))})
		}
		k, err := b.km.RotateKey(ctx, "default", "alias/default")
		if err != nil {
			t.Fatal(err)
		}
		if k.PrimaryVersion != 2 {
			t.Fatalf("PrimaryVersion = %d, want 2", k.PrimaryVersion)
		}
		mustCreate(t, b, secrets.CreateParams{Name: "rw/new", Value: []byte("new")})
		calls := 0
		rep, err := b.svc.Rewrap(ctx, "default", func(done, total int) { calls++ })
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rewrapped != 12 || rep.Scanned != 12 || calls != 12 {
			t.Errorf("Rewrap = %+v (progress calls %d), want 12 rewrapped", rep, calls)
		}
		vs, _ := b.st.ListVersions(ctx, "rw/03", false)
		if vs[0].KeyVersion != 2 {
			t.Errorf("KeyVersion after rewrap = %d, want 2", vs[0].KeyVersion)
		}
		for i := range 12 {
			got := mustGet(t, b, secrets.GetParams{Name: fmt.Sprintf("rw/%02d", i)})
			if string(got.Value.Reveal()) != fmt.Sprintf("value-%d", i) {
				t.Errorf("after rewrap %d = %q", i, got.Value.Reveal())
			}
		}
		rep, err = b.svc.Rewrap(ctx, "default", nil)
		if err != nil || rep.Rewrapped != 0 {
			t.Errorf("second Rewrap = %+v, %v; want nothing to do", rep, err)
		}
	})
}

func TestConcurrentPuts(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		mustCreate(t, b, secrets.CreateParams{Name: "c", Value: []byte("v0")})
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "c", Value: []byte(fmt.Sprintf("g%d-%d", g, i))}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Put: %v", err)
		}
		info, _ := b.svc.Describe(ctx, "c")
		if n := len(info.Versions); n != 41 {
			t.Errorf("versions = %d, want 41", n)
		}
		for i, v := range info.Versions {
			if v.Version != int64(i+1) {
				t.Fatalf("versions not contiguous at %d: %d", i, v.Version)
			}
		}
		cur := mustGet(t, b, secrets.GetParams{Name: "c"})
		if cur.Version != 41 {
			t.Errorf("current = %d, want 41", cur.Version)
		}
	})
}

// TestCanary: a canary value never appears in the store's bytes, the logs
// or any error string.
func TestCanary(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		canary := "CANARY-" + testenv.Unique("")
		mustCreate(t, b, secrets.CreateParams{Name: "canary", Type: "password", Value: []byte(canary)})
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "canary", Value: []byte(canary + "-2")}); err != nil {
			t.Fatal(err)
		}
		mustGet(t, b, secrets.GetParams{Name: "canary"})
		var errs []error
		collect := func(err error) {
			if err != nil {
				errs = append(errs, err)
			}
		}
		_, err := b.svc.Create(ctx, secrets.CreateParams{Name: "c2", Type: "db-credentials", Value: []byte(`{"password":"` + canary + `"`)})
		collect(err)
		_, err = b.svc.Create(ctx, secrets.CreateParams{Name: "c3", Type: "api-key", Value: []byte(canary + " with space")})
		collect(err)
		_, err = b.svc.Create(ctx, secrets.CreateParams{Name: "c4", Type: "jwt", Value: []byte(canary)})
		collect(err)
		_, err = b.svc.Create(ctx, secrets.CreateParams{Name: "c5", Type: "private-key", Value: []byte(canary)})
		collect(err)
		_, err = b.svc.Create(ctx, secrets.CreateParams{Name: "c6", Type: "key-value", Value: []byte(`{"a":` + canary + `}`)})
		collect(err)
		if len(errs) != 5 {
			t.Fatalf("want 5 refusals, got %d", len(errs))
		}
		for _, e := range errs {
			if strings.Contains(e.Error(), canary) || strings.Contains(fmt.Sprintf("%+v", e), canary) {
				t.Errorf("error leaks the canary: %v", e)
			}
		}
		if raw := b.raw(t); bytes.Contains(raw, []byte(canary)) {
			t.Errorf("the canary is stored in plaintext")
		}
		if bytes.Contains(b.logs.Bytes(), []byte(canary)) {
			t.Errorf("the canary is in the logs")
		}
		// Negative control: the dump does see plaintext that is stored as
		// such, so the check above can fail.
		mustCreate(t, b, secrets.CreateParams{Name: "control", Description: canary + "-in-description"})
		if raw := b.raw(t); !bytes.Contains(raw, []byte(canary+"-in-description")) {
			t.Errorf("negative control: the store dump does not show plain metadata; the canary check proves nothing")
		}
	})
}

// TestReadCache: a second service on the same store (another daemon) sees
// a write within the cache TTL, and the writing service sees it at once.
func TestReadCache(t *testing.T) {
	forEach(t, func(t *testing.T, b *bundle) {
		other, err := secrets.New(secrets.Config{Store: b.st, Keys: b.km, Now: b.clock.Now, ReadCacheTTL: time.Minute, AuditKey: testenv.AuditKey(t, b.root)})
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, b, secrets.CreateParams{Name: "cached", Value: []byte("one")})
		if v, _ := other.Get(ctx, secrets.GetParams{Name: "cached"}); string(v.Value.Reveal()) != "one" {
			t.Fatalf("other daemon reads %q, want one", v.Value.Reveal())
		}
		if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "cached", Value: []byte("two")}); err != nil {
			t.Fatal(err)
		}
		// The writer reads its own write at once.
		if v := mustGet(t, b, secrets.GetParams{Name: "cached"}); string(v.Value.Reveal()) != "two" {
			t.Errorf("writer reads %q, want two", v.Value.Reveal())
		}
		// The other daemon still has the old stages cached, but a read by
		// version number is exact.
		if v, _ := other.Get(ctx, secrets.GetParams{Name: "cached"}); string(v.Value.Reveal()) != "one" {
			t.Errorf("other daemon within TTL reads %q; the cache is not in use (want one)", v.Value.Reveal())
		}
		if v, err := other.Get(ctx, secrets.GetParams{Name: "cached", Version: 2}); err != nil || string(v.Value.Reveal()) != "two" {
			t.Errorf("other daemon by version = %q, %v; want two", v.Value.Reveal(), err)
		}
		b.clock.Add(time.Minute + time.Second)
		if v, _ := other.Get(ctx, secrets.GetParams{Name: "cached"}); string(v.Value.Reveal()) != "two" {
			t.Errorf("other daemon after TTL reads %q, want two", v.Value.Reveal())
		}
		// Force delete and re-create under the same name: no old ciphertext.
		if _, err := b.svc.Delete(ctx, secrets.DeleteParams{Name: "cached", Force: true}); err != nil {
			t.Fatal(err)
		}
		b.clock.Add(time.Second)
		mustCreate(t, b, secrets.CreateParams{Name: "cached", Value: []byte("reborn")})
		b.clock.Add(time.Minute + time.Second)
		if v, err := other.Get(ctx, secrets.GetParams{Name: "cached", Version: 1}); err != nil || string(v.Value.Reveal()) != "reborn" {
			t.Errorf("other daemon after re-create reads %q, %v; want reborn", v.Value.Reveal(), err)
		}
	})
}
