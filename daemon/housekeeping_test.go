package daemon

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// TestHousekeepingJobs runs every job once against a real store whose
// records have been moved into the past, and checks each did its work.
func TestHousekeepingJobs(t *testing.T) {
	ctx := context.Background()
	d := newSQLiteDaemon(t)
	past := time.Now().Add(-time.Hour).UTC()

	// A secret past its recovery window.
	if _, err := d.secrets.Create(ctx, secrets.CreateParams{Name: "gone", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.secrets.Delete(ctx, secrets.DeleteParams{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	sec, _ := d.st.GetSecret(ctx, "gone")
	sec.PurgeAt = &past
	if err := d.st.UpdateSecret(ctx, sec); err != nil {
		t.Fatal(err)
	}
	// A key due for automatic rotation.
	k, err := d.kms.CreateKey(ctx, kms.CreateKeyParams{Region: "default", Alias: "auto", RotationPeriod: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := d.st.GetKey(ctx, k.ID)
	sk.NextRotationAt = &past
	if err := d.st.UpdateKey(ctx, sk, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// An expired rotation lease.
	if _, err := d.secrets.Create(ctx, secrets.CreateParams{Name: "leased", Type: "password", Value: []byte("password-1")}); err != nil {
		t.Fatal(err)
	}
	if err := d.st.PutRotation(ctx, store.Rotation{Secret: "leased", Rotator: "random", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.st.ClaimRotation(ctx, "leased", store.ClaimParams{Owner: "dead-daemon", Now: past.Add(-time.Minute), LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// A delivered event older than a day.
	old := time.Now().Add(-48 * time.Hour).UTC()
	id, err := d.st.AppendOutbox(ctx, store.OutboxEvent{Type: "version_created", Secret: "x", Payload: []byte("{}"), CreatedAt: old})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.st.MarkDelivered(ctx, []int64{id}, old); err != nil {
		t.Fatal(err)
	}

	d.house.RunNow(d.housekeepingJobs())

	if _, err := d.st.GetSecret(ctx, "gone"); err == nil {
		t.Errorf("purge-secrets: the secret past its window is still there")
	}
	if k2, _ := d.kms.DescribeKey(ctx, "default", k.ID); k2.PrimaryVersion != 2 {
		t.Errorf("rotate-keys: primary version %d, want 2", k2.PrimaryVersion)
	}
	if r, _ := d.st.GetRotation(ctx, "leased"); r.LeaseOwner != "" {
		t.Errorf("reclaim-leases: lease still held by %q", r.LeaseOwner)
	}
	if evs, _ := d.st.ListOutboxAfter(ctx, id-1, 10); len(evs) > 0 && evs[0].ID == id {
		t.Errorf("trim-outbox: the old delivered event is still there")
	}
}

// newSQLiteDaemon makes a daemon (not started) on a fresh SQLite store
// with a generated root key, stopped when the test ends.
func newSQLiteDaemon(t *testing.T) *Daemon {
	t.Helper()
	dir := t.TempDir()
	d, err := New(context.Background(), Config{
		Listen:  "127.0.0.1:0",
		Store:   StoreConfig{SQLite: filepath.Join(dir, "r.db")},
		RootKey: RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}
