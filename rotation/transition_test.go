package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

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
