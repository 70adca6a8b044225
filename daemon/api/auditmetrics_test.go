package api

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// failingTxStore is a real store whose transactions fail while broken is
// set, as when the database is gone or full.
type failingTxStore struct {
	store.Store
	broken atomic.Bool
}

var errStoreBroken = errors.New("store broken by the test")

func (s *failingTxStore) InTx(ctx context.Context, fn func(store.Ops) error) error {
	if s.broken.Load() {
		return errStoreBroken
	}
	return s.Store.InTx(ctx, fn)
}

// TestAuditWriteFailuresMetric: rotary_audit_write_failures_total starts
// at 0 for every kind, stays there while audit writes succeed, and counts
// a failed group commit (kind records, the request sees the error) and a
// failed anchor (kind anchor).
func TestAuditWriteFailuresMetric(t *testing.T) {
	ctx := context.Background()
	base, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rotary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	st := &failingTxStore{Store: base}
	l := newAuditLog(st, testKey, time.Now, slog.New(slog.DiscardHandler), 1, 0, time.Hour)
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	count := func(kind string) float64 {
		var m dto.Metric
		if err := l.writeFailures.WithLabelValues(kind).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(l.writeFailures)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mfs[0].GetMetric()); n != len(auditWriteKinds) {
		t.Fatalf("series before any failure = %d, want %d (one per kind, at 0)", n, len(auditWriteKinds))
	}

	rec := store.AuditRecord{Time: time.Now(), TokenID: "tok", Action: "secret.get", Target: "app/db", Result: "ok"}
	if err := l.Append(ctx, rec); err != nil {
		t.Fatalf("Append on a working store = %v", err)
	}
	if _, err := l.Anchor(ctx); err != nil {
		t.Fatalf("Anchor on a working store = %v", err)
	}
	if r, a := count("records"), count("anchor"); r != 0 || a != 0 {
		t.Fatalf("after successful writes: records %v, anchor %v, want 0 and 0", r, a)
	}

	st.broken.Store(true)
	if err := l.Append(ctx, rec); !errors.Is(err, errStoreBroken) {
		t.Fatalf("Append on a broken store = %v, want %v", err, errStoreBroken)
	}
	if got := count("records"); got != 1 {
		t.Fatalf("rotary_audit_write_failures_total{kind=records} after a failed commit = %v, want 1", got)
	}
	// The anchor loop writes one at Stop; a chain moved, so it tries and fails.
	l.Stop()
	if got := count("anchor"); got != 1 {
		t.Fatalf("rotary_audit_write_failures_total{kind=anchor} after a failed anchor = %v, want 1", got)
	}
}
