package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// replayStore runs every transaction twice, as PostgreSQL may after a
// serialization failure: once rolled back, then for real. A step whose
// transaction changed the attempt's state (instead of returning it)
// would act twice.
type replayStore struct {
	store.Store
	replays atomic.Int64
}

var errReplay = errors.New("replay")

func (s *replayStore) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	err := s.Store.InTx(ctx, func(tx store.Ops) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errReplay
	})
	if !errors.Is(err, errReplay) {
		return err
	}
	s.replays.Add(1)
	return s.Store.InTx(ctx, fn)
}

// outcome is what a scenario left: each run's state and history, the
// stages, and the audit and outbox trail of the secret.
func (b *bundle) outcome(t *testing.T) []string {
	t.Helper()
	var out []string
	runs, err := b.st.ListRuns(ctx, "db", 10)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(runs, func(x, y store.RotationRun) int { return int(x.PendingVersion - y.PendingVersion) })
	for _, r := range runs {
		out = append(out, fmt.Sprintf("run %s trigger=%s pending=%d attempt=%d step=%s", r.State, r.Trigger, r.PendingVersion, r.Attempt, r.Step))
		steps, err := b.st.ListRunSteps(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			out = append(out, "  "+s.Step+":"+s.Result)
		}
	}
	info, err := b.svc.Describe(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fmt.Sprintf("stages %v", info.Stages))
	recs, err := b.st.ListAudit(ctx, store.AuditFilter{Target: "db"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		out = append(out, "audit "+r.Action+" "+r.Result)
	}
	evs, err := b.st.ListOutboxAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Secret == "db" {
			out = append(out, fmt.Sprintf("event %s v%d", e.Type, e.Version))
		}
	}
	rot, err := b.st.GetRotation(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fmt.Sprintf("rotation failures=%d error=%q", rot.ConsecutiveFailures, rot.LastError))
	return out
}

// TestStepTransactionsMayBeReplayed: with every transaction run twice
// (rolled back once), rotations that succeed, fail and resume, roll back
// and are abandoned leave exactly what they leave with single runs: each
// step commits its transition, and the attempt changes only after the
// commit.
func TestStepTransactionsMayBeReplayed(t *testing.T) {
	scenario := func(t *testing.T, replay bool) ([]string, int64) {
		b := setup(t)
		rs := &replayStore{Store: b.st}
		e := b.eng
		if replay {
			var err error
			e, err = rotation.New(rotation.Config{
				Store: rs, Secrets: b.svc, Rotators: rotation.Registry{"fake": b.rot}, Owner: "daemon-a", Now: b.clock.Now,
				TestAttempts: 1, BackoffBase: 0, FailingAfter: 3,
				Failpoint: func(name string) {
					if b.fp != nil {
						b.fp(name)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// 1: a rotation that succeeds.
		if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err != nil {
			t.Fatal(err)
		}
		// 2: set fails (the target is down), then the run resumes.
		b.target.down = true
		if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err == nil {
			t.Fatal("a rotation with the target down succeeded")
		}
		b.target.down = false
		if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err != nil {
			t.Fatal(err)
		}
		// 3: the pending credential is refused but current works: rolled back.
		b.rot.SetFunc = func(rotators.SetRequest) error { return nil } // the target never takes pending
		if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err == nil {
			t.Fatal("a rotation whose test failed succeeded")
		}
		b.rot.SetFunc = nil
		// 4: a put overtakes the rotation after set: abandoned.
		b.fp = func(name string) {
			if name == "set-after" {
				b.fp = nil
				if _, err := e.Put(ctx, secrets.PutParams{Name: "db", Value: []byte("hand-written-pw")}); err != nil {
					t.Errorf("Put: %v", err)
				}
				b.target.mu.Lock()
				b.target.accepted["hand-written-pw"] = true
				b.target.mu.Unlock()
			}
		}
		if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err == nil {
			t.Fatal("an abandoned rotation reported success")
		}
		// 5: and the next one succeeds.
		if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err != nil {
			t.Fatal(err)
		}
		b.checkInvariant(t)
		return b.outcome(t), rs.replays.Load()
	}
	once, _ := scenario(t, false)
	twice, replays := scenario(t, true)
	if replays < 20 {
		t.Fatalf("only %d transactions were replayed", replays)
	}
	if !slices.Equal(once, twice) {
		t.Fatalf("replayed transactions left a different outcome:\n%s\n---- want ----\n%s", join(twice), join(once))
	}
	// And the outcome is what the scenario means: the failed set is
	// retried in the same run, the rolled back and abandoned runs never
	// record their step as ok, and a put's version ends the abandoned one.
	want := []string{
		`run succeeded trigger=manual pending=2 attempt=0 step=cleanup`,
		`  create:ok`,
		`  set:ok`,
		`  test:ok`,
		`  finish:ok`,
		`  cleanup:ok`,
		`run succeeded trigger=manual pending=3 attempt=1 step=cleanup`,
		`  create:ok`,
		`  set:failed`,
		`  set:ok`,
		`  test:ok`,
		`  finish:ok`,
		`  cleanup:ok`,
		`run rolled_back trigger=manual pending=4 attempt=0 step=test`,
		`  create:ok`,
		`  set:ok`,
		`  test:failed`,
		`run abandoned trigger=manual pending=5 attempt=0 step=set`,
		`  create:ok`,
		`  set:failed`,
		`run succeeded trigger=manual pending=7 attempt=0 step=cleanup`,
		`  create:ok`,
		`  set:ok`,
		`  test:ok`,
		`  finish:ok`,
		`  cleanup:ok`,
		`stages map[current:7 previous:6]`,
		`audit secret.create ok`,
		`audit rotation.set ok`,
		`audit secret.put ok`,
		`audit secret.rotate ok`,
		`audit secret.put ok`,
		`audit secret.rotate failed`,
		`audit secret.rotate ok`,
		`audit secret.put ok`,
		`audit secret.rotate rolled_back`,
		`audit secret.rotate failed`,
		`audit secret.put ok`,
		`audit secret.put ok`,
		`audit secret.put ok`,
		`audit secret.rotate ok`,
		`event version_created v1`,
		`event version_created v2`,
		`event rotated v2`,
		`event version_created v3`,
		`event rotation_failed v0`,
		`event rotated v3`,
		`event version_created v4`,
		`event rotation_failed v0`,
		`event version_created v5`,
		`event version_created v6`,
		`event version_created v7`,
		`event rotated v7`,
		`rotation failures=0 error=""`,
	}
	if !slices.Equal(once, want) {
		t.Fatalf("outcome:\n%s\n---- want ----\n%s", join(once), join(want))
	}
}

func join(s []string) string {
	out := ""
	for _, l := range s {
		out += l + "\n"
	}
	return out
}

// TestPutEndsTheRunAtOnce: Engine.Put (the API's secret put) ends a
// rotation in flight in its own transaction, so the history shows it
// before the engine driving the run notices; a put through the secrets
// service alone leaves that to the engine's next commit. Either way the
// run ends abandoned, its step never ok, and no step runs after it.
func TestPutEndsTheRunAtOnce(t *testing.T) {
	for _, viaEngine := range []bool{true, false} {
		t.Run(fmt.Sprintf("engine=%v", viaEngine), func(t *testing.T) {
			b := setup(t)
			var during string
			b.fp = func(name string) {
				if name != "set-after" {
					return
				}
				b.fp = nil
				p := secrets.PutParams{Name: "db", Value: []byte("hand-written-pw")}
				var err error
				if viaEngine {
					_, err = b.eng.Put(ctx, p)
				} else {
					_, err = b.svc.Put(ctx, p)
				}
				if err != nil {
					t.Errorf("Put: %v", err)
				}
				runs, _ := b.st.ListRuns(ctx, "db", 1)
				during = runs[0].State
			}
			run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
			if err == nil || run.State != store.RunAbandoned {
				t.Fatalf("Rotate = %s, %v; want abandoned", run.State, err)
			}
			if want := map[bool]string{true: store.RunAbandoned, false: store.RunRunning}[viaEngine]; during != want {
				t.Errorf("right after the put the run was %s, want %s", during, want)
			}
			steps, _ := b.st.ListRunSteps(ctx, run.ID)
			var got []string
			for _, s := range steps {
				got = append(got, s.Step+":"+s.Result)
			}
			if !slices.Equal(got, []string{"create:ok", "set:failed"}) {
				t.Errorf("history %v, want create:ok set:failed", got)
			}
			if calls := b.rot.Calls(); !slices.Equal(calls, []string{"create", "set"}) {
				t.Errorf("rotator calls %v: a step ran after the put", calls)
			}
			if cur := b.current(t); string(cur.Value.Reveal()) != "hand-written-pw" {
				t.Errorf("current is version %d, want the hand-written one", cur.Version)
			}
		})
	}
}

// countingStore counts the engine's write transactions: InTx and the
// lease writes that run on their own.
type countingStore struct {
	store.Store
	writes atomic.Int64
}

func (s *countingStore) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	s.writes.Add(1)
	return s.Store.InTx(ctx, fn)
}

func (s *countingStore) ClaimRotation(ctx context.Context, secret string, p store.ClaimParams) (store.Rotation, error) {
	s.writes.Add(1)
	return s.Store.ClaimRotation(ctx, secret, p)
}

func (s *countingStore) ReleaseRotation(ctx context.Context, secret, owner string) error {
	s.writes.Add(1)
	return s.Store.ReleaseRotation(ctx, secret, owner)
}

func (s *countingStore) RenewRotationLease(ctx context.Context, secret, owner string, until time.Time) error {
	s.writes.Add(1)
	return s.Store.RenewRotationLease(ctx, secret, owner, until)
}

// offlineRotator is the fake rotator declaring that it touches no target.
type offlineRotator struct{ *fakeRotator }

func (offlineRotator) Offline() {}

// TestWriteTransactionsPerRotation counts the engine's write transactions
// per rotation, so that they cannot creep back: a rotator that touches a
// target commits each step (claim, run, five steps, release: 8), and so
// does a requested rotation of any rotator (its run is durable before the
// request is answered); a scheduled rotation of an offline rotator
// (random) commits the whole rotation at once, releasing the lease in that
// commit (claim, one commit: 2). The history, stages, events and audit
// records are the same.
func TestWriteTransactionsPerRotation(t *testing.T) {
	for _, tc := range []struct {
		offline bool
		trigger string
		want    int64
	}{{false, rotation.TriggerScheduled, 8}, {true, rotation.TriggerManual, 8}, {true, rotation.TriggerScheduled, 2}} {
		t.Run(fmt.Sprintf("offline=%v/%s", tc.offline, tc.trigger), func(t *testing.T) {
			b := setup(t)
			cs := &countingStore{Store: b.st}
			var r rotators.Rotator = b.rot
			if tc.offline {
				r = offlineRotator{b.rot}
			}
			e, err := rotation.New(rotation.Config{
				Store: cs, Secrets: b.svc, Rotators: rotation.Registry{"fake": r}, Owner: "daemon-a", Now: b.clock.Now, TestAttempts: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				before := cs.writes.Load()
				run, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db", Trigger: tc.trigger})
				if err != nil || run.State != store.RunSucceeded {
					t.Fatalf("rotation %d: %s, %v", i, run.State, err)
				}
				if got := cs.writes.Load() - before; got != tc.want {
					t.Fatalf("rotation %d took %d write transactions, want %d", i, got, tc.want)
				}
				b.checkInvariant(t)
			}
			got := b.outcome(t)
			for _, line := range []string{"  create:ok", "  set:ok", "  test:ok", "  finish:ok", "  cleanup:ok"} {
				if n := count(got, line); n != 3 {
					t.Errorf("%q %d times in the history, want 3:\n%s", line, n, join(got))
				}
			}
			for _, line := range []string{"audit secret.rotate ok", "audit secret.put ok"} {
				if n := count(got, line); n != 3 {
					t.Errorf("%q %d times, want 3:\n%s", line, n, join(got))
				}
			}
			if !slices.Contains(got, "stages map[current:4 previous:3]") {
				t.Errorf("stages after three rotations:\n%s", join(got))
			}
			if calls := b.rot.Calls(); count(calls, "set") != 3 || count(calls, "test") != 3 || count(calls, "finish") != 3 {
				t.Errorf("rotator calls %v, want each step three times", calls)
			}
		})
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestOfflineScheduledFailureIsRecorded: when a step of the one-commit
// path fails, nothing of it was stored, and the regular path records the
// failure like any rotation's: a run at its step with a failed history
// entry, last_error, and the next try; with the fault gone the run
// resumes and succeeds.
func TestOfflineScheduledFailureIsRecorded(t *testing.T) {
	b := setup(t)
	fail := true
	b.rot.CreateFunc = func(rotators.CreateRequest) (rotators.CreateResponse, error) {
		if fail {
			return rotators.CreateResponse{}, errors.New("entropy exhausted")
		}
		v, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
		return rotators.CreateResponse{Value: v}, err
	}
	e, err := rotation.New(rotation.Config{
		Store: b.st, Secrets: b.svc, Rotators: rotation.Registry{"fake": offlineRotator{b.rot}}, Owner: "daemon-a", Now: b.clock.Now, TestAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db", Trigger: rotation.TriggerScheduled}); err == nil || !strings.Contains(err.Error(), "entropy exhausted") {
		t.Fatalf("Rotate = %v, want the create error", err)
	}
	got := b.outcome(t)
	for _, want := range []string{"run running trigger=scheduled pending=0 attempt=1 step=create", "  create:failed", "stages map[current:1]"} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q:\n%s", want, join(got))
		}
	}
	if rot, _ := b.st.GetRotation(ctx, "db"); rot.ConsecutiveFailures != 1 || !strings.Contains(rot.LastError, "entropy exhausted") {
		t.Errorf("rotation state: %d failures, %q", rot.ConsecutiveFailures, rot.LastError)
	}
	fail = false
	run, err := e.Rotate(ctx, rotation.RotateParams{Secret: "db", Trigger: rotation.TriggerScheduled})
	if err != nil || run.State != store.RunSucceeded || run.PendingVersion != 2 {
		t.Fatalf("after the fault: %s v%d, %v", run.State, run.PendingVersion, err)
	}
	b.checkInvariant(t)
}

// TestClaimOfAStuckRunIsLetGo: a run stuck in a step past its lease
// (here, a failpoint that ignores cancellation) keeps its secret marked
// as driven by this engine. When this engine's scheduler claims the
// secret again (its lease expired), RunClaimed answers ErrBusy and
// releases that claim, so that another daemon can take the run over
// instead of this engine holding the secret, claim after claim, for a
// run that cannot go on.
func TestClaimOfAStuckRunIsLetGo(t *testing.T) {
	b := setup(t)
	stuck, release := make(chan struct{}), make(chan struct{})
	b.fp = func(name string) {
		if name == "set-after" {
			close(stuck)
			<-release
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
		done <- err
	}()
	<-stuck
	b.clock.Add(3 * time.Minute) // past the 2m lease
	claimed, err := b.st.ClaimDueRotations(ctx, store.ClaimParams{Owner: "daemon-a", Now: b.clock.Now(), LeaseFor: 2 * time.Minute, Limit: 10})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("the scheduler's claim: %d, %v", len(claimed), err)
	}
	if _, err := b.eng.RunClaimed(ctx, claimed[0], rotation.RotateParams{Secret: "db", Trigger: rotation.TriggerScheduled}); !errors.Is(err, rotation.ErrBusy) {
		t.Fatalf("RunClaimed of a secret this engine drives = %v, want ErrBusy", err)
	}
	if rot, _ := b.st.GetRotation(ctx, "db"); rot.LeaseOwner != "" {
		t.Fatalf("the claim is kept by %q: nobody else can take the stuck run over", rot.LeaseOwner)
	}
	other, err := b.st.ClaimRotation(ctx, "db", store.ClaimParams{Owner: "daemon-b", Now: b.clock.Now(), LeaseFor: 2 * time.Minute})
	if err != nil {
		t.Fatalf("another daemon's claim: %v", err)
	}
	close(release)
	if err := <-done; !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("the stuck run ended with %v, want a lost lease", err)
	}
	eb := b.newEngine(t, "daemon-b")
	if run, err := eb.RunClaimed(ctx, other, rotation.RotateParams{Secret: "db"}); err != nil || run.State != store.RunSucceeded {
		t.Fatalf("B's takeover: %s, %v", run.State, err)
	}
	b.checkInvariant(t)
}
