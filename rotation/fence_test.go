package rotation_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/store"
)

// flakyRenewals is a store whose lease renewals fail, as if the database
// had become unreachable, once cut is set. Everything else works.
type flakyRenewals struct {
	store.Store
	cut     atomic.Bool
	renewed atomic.Int32 // successful renewals
	failed  atomic.Int32 // refused renewals
}

func (s *flakyRenewals) RenewRotationLease(ctx context.Context, secret, owner string, until time.Time) error {
	if s.cut.Load() {
		s.failed.Add(1)
		return errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	err := s.Store.RenewRotationLease(ctx, secret, owner, until)
	if err == nil {
		s.renewed.Add(1)
	}
	return err
}

// ctxRotator records its calls; its Set runs hook with the call's context.
type ctxRotator struct {
	calls   atomic.Pointer[[]string]
	SetHook func(ctx context.Context) error
}

func (r *ctxRotator) called(name string) {
	for {
		old := r.calls.Load()
		var next []string
		if old != nil {
			next = slices.Clone(*old)
		}
		next = append(next, name)
		if r.calls.CompareAndSwap(old, &next) {
			return
		}
	}
}

func (r *ctxRotator) Calls() []string {
	if p := r.calls.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *ctxRotator) Create(context.Context, rotators.CreateRequest) (rotators.CreateResponse, error) {
	r.called("create")
	v, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	return rotators.CreateResponse{Value: v}, err
}

func (r *ctxRotator) Set(ctx context.Context, _ rotators.SetRequest) error {
	r.called("set")
	return r.SetHook(ctx)
}

func (r *ctxRotator) Test(context.Context, rotators.TestRequest) error {
	r.called("test")
	return nil
}

func (r *ctxRotator) Finish(context.Context, rotators.FinishRequest) error {
	r.called("finish")
	return nil
}

// TestRenewalErrorsStopTheRun: the store becomes unreachable for lease
// renewals (a network error, not ErrLeaseLost) while Set runs. Within the
// lease minus its margin the run's context is cancelled, the run stops
// with ErrLeaseLapsed, and the rotator is never called again.
func TestRenewalErrorsStopTheRun(t *testing.T) {
	b := setup(t)
	flaky := &flakyRenewals{Store: b.st}
	rot := &ctxRotator{}
	const lease = 2 * time.Second // renewals every 333ms, margin 667ms
	var setCtxErr error
	var cutAt, stoppedAt time.Time
	rot.SetHook = func(ctx context.Context) error {
		// Wait for a renewal to succeed, then cut the store off.
		deadline := time.After(10 * time.Second)
		for flaky.renewed.Load() == 0 {
			select {
			case <-deadline:
				t.Error("no lease renewal within 10s")
				return errors.New("no renewal")
			case <-time.After(10 * time.Millisecond):
			}
		}
		flaky.cut.Store(true)
		cutAt = time.Now()
		select {
		case <-ctx.Done():
			stoppedAt = time.Now()
			setCtxErr = context.Cause(ctx)
			return ctx.Err()
		case <-time.After(10 * time.Second):
			t.Error("the run's context was not cancelled within 10s of the renewals failing")
			return errors.New("not stopped")
		}
	}
	eng, err := rotation.New(rotation.Config{
		Store: flaky, Secrets: b.svc, Rotators: rotation.Registry{"fake": rot}, Owner: "daemon-a",
		LeaseFor: lease, TestAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	run, err := eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if !errors.Is(err, rotation.ErrLeaseLapsed) || !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Rotate with failing renewals = %v, want ErrLeaseLapsed (wrapping store.ErrLeaseLost)", err)
	}
	if !errors.Is(setCtxErr, rotation.ErrLeaseLapsed) {
		t.Errorf("Set's context cause = %v, want ErrLeaseLapsed", setCtxErr)
	}
	if flaky.failed.Load() == 0 {
		t.Errorf("no renewal was attempted after the cut")
	}
	// The run stopped before the lease (last renewal + 1.5s) could expire:
	// at most lease − margin after the last successful renewal, which was
	// before the cut.
	if d := stoppedAt.Sub(cutAt); d >= lease {
		t.Errorf("the run stopped %s after the cut, want less than the lease (%s)", d, lease)
	}
	if got := strings.Join(rot.Calls(), " "); got != "create set" {
		t.Errorf("rotator calls = %q, want %q (nothing after the lease lapsed)", got, "create set")
	}
	// The run is left to be resumed from set; the current version still works.
	stored, err := b.st.GetRun(ctx, run.ID)
	if err != nil || stored.State != store.RunRunning || stored.Step != rotation.StepSet {
		t.Errorf("stored run = %s at %s, %v; want running at set", stored.State, stored.Step, err)
	}
	if cur := b.current(t); cur.Version != 1 {
		t.Errorf("current = %d, want 1", cur.Version)
	}
	// Negative control: with renewals working the same run succeeds,
	// even though it outlives several leases.
	flaky.cut.Store(false)
	rot.SetHook = func(ctx context.Context) error {
		n := flaky.renewed.Load()
		for flaky.renewed.Load() < n+8 { // longer than a lease (8 × 333ms)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}
	run, err = eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err != nil || run.State != store.RunSucceeded {
		t.Fatalf("Rotate with working renewals = %s, %v; want succeeded", run.State, err)
	}
}

// TestLapsedLeaseStopsBeforeTheNextStep: no renewal succeeded (the clock
// moved past the lease minus its margin while a step ran): the next step
// does not call the rotator, although the store would still accept the
// commit of the step before.
func TestLapsedLeaseStopsBeforeTheNextStep(t *testing.T) {
	b := setup(t)
	var after []string
	b.fp = func(name string) {
		if name == "set-after" {
			b.clock.Add(90 * time.Second) // lease 2m, margin 40s: lapsed at 80s
			after = b.rot.Calls()
		}
	}
	_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if !errors.Is(err, rotation.ErrLeaseLapsed) {
		t.Fatalf("Rotate = %v, want ErrLeaseLapsed", err)
	}
	if got := b.rot.Calls(); len(got) != len(after) {
		t.Errorf("rotator calls after the lease lapsed: %v", got[len(after):])
	}
	runs, _ := b.st.ListRuns(ctx, "db", 1)
	if runs[0].State != store.RunRunning || runs[0].Step != rotation.StepTest {
		t.Errorf("run = %s at %s, want running at test (set's commit was still inside the lease)", runs[0].State, runs[0].Step)
	}
	// It resumes (here, on the same daemon) and finishes.
	b.fp = nil
	if run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err != nil || run.State != store.RunSucceeded {
		t.Fatalf("resume = %s, %v", run.State, err)
	}
	b.checkInvariant(t)
}

// TestStolenLeaseRefusesTheStepCommit: daemon A stalls inside a step past
// its lease and daemon B claims the secret. A's commit of the step is
// refused (store.ErrLeaseLost, from the fencing check in the
// transaction), A writes nothing else (no step moved, no history, no
// failure record) and never calls the rotator again; B resumes the run and
// finishes it.
func TestStolenLeaseRefusesTheStepCommit(t *testing.T) {
	for _, tc := range []struct {
		point    string
		wantStep string // the stored step after A's refused commit
	}{
		{"create-before-store", rotation.StepCreate},
		{"set-after", rotation.StepSet},
		{"test-after", rotation.StepTest},
		{"finish-before", rotation.StepFinish},
	} {
		t.Run(tc.point, func(t *testing.T) {
			b := setup(t)
			var callsAtSteal []string
			var stolen store.Rotation
			var stepsAtSteal int
			var runID string
			b.fp = func(name string) {
				if name != tc.point {
					return
				}
				b.clock.Add(3 * time.Minute) // A stalls past its 2m lease
				var err error
				stolen, err = b.st.ClaimRotation(ctx, "db", store.ClaimParams{Owner: "daemon-b", Now: b.clock.Now(), LeaseFor: 2 * time.Minute})
				if err != nil {
					t.Errorf("B's claim after A's lease expired: %v", err)
				}
				callsAtSteal = b.rot.Calls()
				runs, _ := b.st.ListRuns(ctx, "db", 1)
				runID = runs[0].ID
				steps, _ := b.st.ListRunSteps(ctx, runID)
				stepsAtSteal = len(steps)
			}
			_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
			if !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("A's Rotate after B took the lease = %v, want store.ErrLeaseLost", err)
			}
			if got := b.rot.Calls(); len(got) != len(callsAtSteal) {
				t.Errorf("A called the rotator after losing the lease: %v", got[len(callsAtSteal):])
			}
			run, _ := b.st.GetRun(ctx, runID)
			if run.State != store.RunRunning || run.Step != tc.wantStep {
				t.Errorf("run after A's refused commit = %s at %s, want running at %s", run.State, run.Step, tc.wantStep)
			}
			if steps, _ := b.st.ListRunSteps(ctx, runID); len(steps) != stepsAtSteal {
				t.Errorf("A wrote %d history entries after losing the lease", len(steps)-stepsAtSteal)
			}
			rot, _ := b.st.GetRotation(ctx, "db")
			if rot.LeaseOwner != "daemon-b" || rot.LastError != "" || rot.ConsecutiveFailures != 0 {
				t.Errorf("rotation after A stopped: lease %q, last error %q, failures %d; want B's lease and no failure recorded by A",
					rot.LeaseOwner, rot.LastError, rot.ConsecutiveFailures)
			}
			if cur := b.current(t); cur.Version != 1 {
				t.Errorf("current = %d, want 1 (A's finish must not commit)", cur.Version)
			}
			// B resumes A's run from its step and finishes it.
			b.fp = nil
			eb := b.newEngine(t, "daemon-b")
			done, err := eb.RunClaimed(ctx, stolen, rotation.RotateParams{Secret: "db"})
			if err != nil || done.ID != runID || done.State != store.RunSucceeded {
				t.Fatalf("B's resume = %s %s, %v; want run %s succeeded", done.ID, done.State, err, runID)
			}
			b.checkInvariant(t)
		})
	}
}
