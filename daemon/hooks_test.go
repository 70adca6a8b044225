package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// wakingStore wakes the relay after, and only after, a commit that wrote
// an outbox event.
func TestWakingStore(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rotary.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	wakes := 0
	ws := wakingStore{Store: st, wake: func() { wakes++ }}
	ev := store.OutboxEvent{Type: "rotated", Secret: "s", CreatedAt: time.Now()}

	if err := ws.InTx(ctx, func(tx store.Ops) error { _, err := tx.CountSecrets(ctx); return err }); err != nil || wakes != 0 {
		t.Fatalf("InTx without an event: err %v, wakes %d, want nil, 0", err, wakes)
	}
	boom := errors.New("boom")
	err = ws.InTx(ctx, func(tx store.Ops) error {
		if _, err := tx.AppendOutbox(ctx, ev); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || wakes != 0 {
		t.Fatalf("InTx rolled back: err %v, wakes %d, want boom, 0", err, wakes)
	}
	if err := ws.InTx(ctx, func(tx store.Ops) error { _, err := tx.AppendOutbox(ctx, ev); return err }); err != nil || wakes != 1 {
		t.Fatalf("InTx with an event: err %v, wakes %d, want nil, 1", err, wakes)
	}
	if _, err := ws.AppendOutbox(ctx, ev); err != nil || wakes != 2 {
		t.Fatalf("AppendOutbox: err %v, wakes %d, want nil, 2", err, wakes)
	}
}
