package rotation_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/store"
)

// rollbackRotator is the fake rotator with a Rollback that removes the
// pending password from the target.
type rollbackRotator struct {
	*fakeRotator
	mu    sync.Mutex
	calls []rotators.RollbackRequest
	err   error
}

func (r *rollbackRotator) Rollback(_ context.Context, req rotators.RollbackRequest) error {
	r.mu.Lock()
	r.calls = append(r.calls, req)
	err := r.err
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.t.mu.Lock()
	delete(r.t.accepted, string(req.Pending.Reveal()))
	r.t.mu.Unlock()
	return nil
}

// TestRollbackUndoesSetOnTheTarget: Set made the pending password valid
// beside the current one (as Redis does), the test step refused it, the
// current one still works: the engine rolls back and calls Rollback with
// current and pending, so the target no longer takes the pending password.
// A failing Rollback is reported on the run (scrubbed), and the rotation
// is rolled back all the same.
func TestRollbackUndoesSetOnTheTarget(t *testing.T) {
	for _, fail := range []bool{false, true} {
		b := setup(t)
		rb := &rollbackRotator{fakeRotator: b.rot}
		if fail {
			rb.err = errors.New("ACL SETUSER refused")
		}
		eng, err := rotation.New(rotation.Config{
			Store: b.st, Secrets: b.svc, Rotators: rotation.Registry{"fake": rb}, Owner: "daemon-rb", Now: b.clock.Now,
			TestAttempts: 1, BackoffBase: time.Minute, BackoffMax: 10 * time.Minute, FailingAfter: 3, FailingInterval: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		b.rot.SetFunc = func(r rotators.SetRequest) error {
			b.target.mu.Lock()
			b.target.accepted[string(r.Pending.Reveal())] = true
			b.target.mu.Unlock()
			return nil
		}
		b.rot.TestFunc = func(r rotators.TestRequest) error {
			if string(r.Value.Reveal()) != "initial-password-1" {
				return errors.New("the test query failed")
			}
			return nil
		}
		run, err := eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
		if err == nil || run.State != store.RunRolledBack {
			t.Fatalf("Rotate = %v, state %s; want a rolled-back failure", err, run.State)
		}
		if len(rb.calls) != 1 {
			t.Fatalf("Rollback called %d times; want once", len(rb.calls))
		}
		call := rb.calls[0]
		if string(call.Current.Reveal()) != "initial-password-1" || call.Pending.Len() == 0 || call.Pending.Equal(call.Current) || call.Secret.Version != 2 {
			t.Fatalf("Rollback request: version %d, current ok %v, pending set %v", call.Secret.Version, string(call.Current.Reveal()) == "initial-password-1", call.Pending.Len() > 0)
		}
		if got := b.target.accepts(call.Pending); got == !fail {
			t.Errorf("fail=%v: the target accepts the pending password after the rollback: %v", fail, got)
		}
		if !b.target.accepts(call.Current) {
			t.Errorf("the current password stopped working")
		}
		if fail && (!strings.Contains(run.Error, "rollback on the target failed") || strings.Contains(run.Error, string(call.Pending.Reveal()))) {
			t.Errorf("run error %q: want the rollback failure named, no value", run.Error)
		}
		b.checkInvariant(t)
	}
}
