package rotation

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// TestBatcherSharesTransactionsAndIsolatesFailures: concurrent commits
// share transactions (fewer transactions than commits); every commit's
// writes are stored once; a commit that fails gets its own error, its
// writes are not stored, and the others in its batch are.
func TestBatcherSharesTransactionsAndIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := &batcher{st: st}
	const n = 200
	errBad := errors.New("bad commit")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = b.commit(ctx, func(tx store.Ops) error {
				if err := tx.PutMetaIfAbsent(ctx, fmt.Sprintf("batch-%d", i), []byte("x")); err != nil {
					return err
				}
				if i%50 == 7 {
					return errBad // after its write: the write must not stay
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		_, gerr := st.GetMeta(ctx, fmt.Sprintf("batch-%d", i))
		if i%50 == 7 {
			if !errors.Is(err, errBad) || !errors.Is(gerr, store.ErrNotFound) {
				t.Errorf("failing commit %d: %v, stored: %v", i, err, gerr)
			}
			continue
		}
		if err != nil || gerr != nil {
			t.Errorf("commit %d: %v, stored: %v", i, err, gerr)
		}
	}
	batches, items := b.stats()
	if items != n {
		t.Errorf("%d commits went through the batcher, want %d", items, n)
	}
	if batches >= n {
		t.Errorf("%d transactions for %d concurrent commits: none shared", batches, n)
	}
	t.Logf("%d commits in %d batches", items, batches)
}
