package rotation_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

var ctx = context.Background()

// target is a fake credential target: the set of passwords it accepts.
// It stands in for a database where a real one is beside the point (the
// rotators' own suite runs against the real servers).
type target struct {
	mu       sync.Mutex
	accepted map[string]bool
	down     bool
}

func (t *target) accepts(v rotators.Value) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.down && t.accepted[string(v.Reveal())]
}

// fakeRotator is a Rotator with replaceable steps over a target.
type fakeRotator struct {
	t          *target
	CreateFunc func(rotators.CreateRequest) (rotators.CreateResponse, error)
	SetFunc    func(rotators.SetRequest) error
	TestFunc   func(rotators.TestRequest) error
	FinishFunc func(rotators.FinishRequest) error
	sets       int

	callsMu sync.Mutex
	calls   []string // every call, in order: create, set, test, finish
}

func (f *fakeRotator) called(name string) {
	f.callsMu.Lock()
	f.calls = append(f.calls, name)
	f.callsMu.Unlock()
}

// Calls returns the calls made so far.
func (f *fakeRotator) Calls() []string {
	f.callsMu.Lock()
	defer f.callsMu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeRotator) Create(_ context.Context, r rotators.CreateRequest) (rotators.CreateResponse, error) {
	f.called("create")
	if f.CreateFunc != nil {
		return f.CreateFunc(r)
	}
	v, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	return rotators.CreateResponse{Value: v}, err
}

func (f *fakeRotator) Set(_ context.Context, r rotators.SetRequest) error {
	f.called("set")
	if f.SetFunc != nil {
		return f.SetFunc(r)
	}
	f.t.mu.Lock()
	defer f.t.mu.Unlock()
	if f.t.down {
		return errors.New("connection refused")
	}
	f.sets++
	f.t.accepted = map[string]bool{string(r.Pending.Reveal()): true} // single-user: the old one stops working
	return nil
}

func (f *fakeRotator) Test(_ context.Context, r rotators.TestRequest) error {
	f.called("test")
	if f.TestFunc != nil {
		return f.TestFunc(r)
	}
	if !f.t.accepts(r.Value) {
		// A careless rotator that echoes the password: the engine must scrub it.
		return fmt.Errorf("login with password %s refused", r.Value.Reveal())
	}
	return nil
}

func (f *fakeRotator) Finish(_ context.Context, r rotators.FinishRequest) error {
	f.called("finish")
	if f.FinishFunc != nil {
		return f.FinishFunc(r)
	}
	return nil
}

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

type bundle struct {
	st     store.Store
	svc    *secrets.Service
	eng    *rotation.Engine
	rot    *fakeRotator
	target *target
	clock  *clock
	fp     func(string)
}

func setup(t *testing.T) *bundle {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	b := &bundle{st: st, clock: &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}, target: &target{accepted: map[string]bool{}}}
	km, err := kms.New(ctx, kms.Config{Store: secrets.KeyStore(st), Root: sensitive.Bytes(root), Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.EnsureRegion(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	b.svc, err = secrets.New(secrets.Config{Store: st, Keys: km, Now: b.clock.Now, ReadCacheTTL: -1, AuditKey: testenv.AuditKey(t, root)})
	if err != nil {
		t.Fatal(err)
	}
	b.rot = &fakeRotator{t: b.target}
	b.eng = b.newEngine(t, "daemon-a")
	// The secret starts with a password the target accepts.
	if _, err := b.svc.Create(ctx, secrets.CreateParams{Name: "db", Type: "password", Value: []byte("initial-password-1")}); err != nil {
		t.Fatal(err)
	}
	b.target.accepted["initial-password-1"] = true
	if _, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Rotator: "fake"}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bundle) newEngine(t *testing.T, owner string) *rotation.Engine {
	e, err := rotation.New(rotation.Config{
		Store: b.st, Secrets: b.svc, Rotators: rotation.Registry{"fake": b.rot}, Owner: owner, Now: b.clock.Now,
		TestAttempts: 1, BackoffBase: time.Minute, BackoffMax: 10 * time.Minute, FailingAfter: 3, FailingInterval: time.Hour,
		Failpoint: func(name string) {
			if b.fp != nil {
				b.fp(name)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (b *bundle) current(t *testing.T) secrets.Value {
	t.Helper()
	v, err := b.svc.Get(ctx, secrets.GetParams{Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkInvariant: the stored current value works on the target.
func (b *bundle) checkInvariant(t *testing.T) {
	t.Helper()
	if cur := b.current(t); !b.target.accepts(cur.Value) {
		t.Fatalf("the current version %d does not work on the target", cur.Version)
	}
}

func TestRotateMovesStagesAndRecordsHistory(t *testing.T) {
	b := setup(t)
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if run.State != store.RunSucceeded || run.PendingVersion != 2 {
		t.Fatalf("run = %+v, want succeeded with version 2", run)
	}
	b.checkInvariant(t)
	info, _ := b.svc.Describe(ctx, "db")
	if info.Stages["current"] != 2 || info.Stages["previous"] != 1 || len(info.Stages) != 2 {
		t.Errorf("stages = %v", info.Stages)
	}
	steps, _ := b.st.ListRunSteps(ctx, run.ID)
	var names []string
	for _, s := range steps {
		names = append(names, s.Step+":"+s.Result)
	}
	if got := strings.Join(names, " "); got != "create:ok set:ok test:ok finish:ok cleanup:ok" {
		t.Errorf("steps = %s", got)
	}
	evs, _ := b.st.ListOutboxAfter(ctx, 0, 100)
	if last := evs[len(evs)-1]; last.Type != "rotated" || last.Version != 2 {
		t.Errorf("last event = %s v%d, want rotated v2", last.Type, last.Version)
	}
	rot, _ := b.st.GetRotation(ctx, "db")
	if rot.LastRotatedAt == nil || rot.LastError != "" || rot.LeaseOwner != "" {
		t.Errorf("rotation state = %+v", rot)
	}
}

func TestFailedTestRollsBackAndScrubsTheError(t *testing.T) {
	b := setup(t)
	// Set "succeeds" but the target never takes the new password, and the
	// old one keeps working: the engine must roll back.
	b.rot.SetFunc = func(rotators.SetRequest) error { return nil }
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err == nil {
		t.Fatal("Rotate succeeded; want a failure")
	}
	if run.State != store.RunRolledBack {
		t.Errorf("run state = %s, want rolled_back", run.State)
	}
	info, _ := b.svc.Describe(ctx, "db")
	if _, ok := info.Stages["pending"]; ok || info.Stages["current"] != 1 {
		t.Errorf("stages after rollback = %v, want current 1 and no pending", info.Stages)
	}
	b.checkInvariant(t)
	pending, _ := b.svc.Get(ctx, secrets.GetParams{Name: "db", Version: 2})
	secret := string(pending.Value.Reveal())
	rot, _ := b.st.GetRotation(ctx, "db")
	steps, _ := b.st.ListRunSteps(ctx, run.ID)
	texts := []string{err.Error(), run.Error, rot.LastError}
	for _, s := range steps {
		texts = append(texts, s.Error)
	}
	recs, _ := b.st.ListAudit(ctx, store.AuditFilter{})
	for _, r := range recs {
		texts = append(texts, r.Detail)
	}
	for _, tx := range texts {
		if strings.Contains(tx, secret) {
			t.Errorf("the generated password leaked into %q", tx)
		}
	}
	if !strings.Contains(rot.LastError, "[redacted]") {
		t.Errorf("last_error = %q; want the scrubbed rotator message", rot.LastError)
	}
	if rot.NextDueAt == nil || rot.ConsecutiveFailures != 1 {
		t.Errorf("after a failure: next due %v, failures %d; want a retry time and 1", rot.NextDueAt, rot.ConsecutiveFailures)
	}
}

// crashAt makes the engine stop dead at a failpoint, as a kill -9 would:
// nothing after it runs. runtime.Goexit ends the rotating goroutine
// there (a panic would be recovered by the engine as a failed step).
func crashAt(b *bundle, point string) {
	b.fp = func(name string) {
		if name == point {
			runtime.Goexit()
		}
	}
}

func rotateCrashing(t *testing.T, b *bundle) {
	t.Helper()
	returned := make(chan bool, 1)
	go func() {
		ok := false
		defer func() { returned <- ok }()
		_, _ = b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
		ok = true
	}()
	if <-returned {
		t.Fatal("expected the simulated crash, but Rotate returned")
	}
}

func TestCrashInEveryStepResumes(t *testing.T) {
	for _, point := range []string{"create-after-store", "set-before", "set-after", "test-before", "test-after", "finish-before", "finish-after"} {
		t.Run(point, func(t *testing.T) {
			b := setup(t)
			crashAt(b, point)
			rotateCrashing(t, b)
			b.fp = nil
			// At the instant of the crash a stored version works.
			cur := b.current(t)
			info, _ := b.svc.Describe(ctx, "db")
			worksSomewhere := b.target.accepts(cur.Value)
			if pv, ok := info.Stages["pending"]; ok {
				p, _ := b.svc.Get(ctx, secrets.GetParams{Name: "db", Version: pv})
				worksSomewhere = worksSomewhere || b.target.accepts(p.Value)
			}
			if !worksSomewhere {
				t.Fatalf("after a crash at %s no stored version works", point)
			}
			// Another daemon resumes once the lease has expired.
			b.clock.Add(3 * time.Minute)
			other := b.newEngine(t, "daemon-b")
			if n, err := other.Resume(ctx); err != nil || n != 1 {
				t.Fatalf("Resume = %d, %v; want 1 resumed", n, err)
			}
			runs, _ := b.st.ListRuns(ctx, "db", 10)
			if len(runs) != 1 || runs[0].State != store.RunSucceeded {
				t.Fatalf("runs after resume = %+v, want one succeeded", runs)
			}
			b.checkInvariant(t)
			if cur := b.current(t); cur.Version != 2 {
				t.Errorf("current = %d, want 2", cur.Version)
			}
		})
	}
}

func TestTargetDownDuringSetThenBack(t *testing.T) {
	b := setup(t)
	b.target.down = true
	if _, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err == nil {
		t.Fatal("Rotate with the target down succeeded")
	}
	runs, _ := b.st.ListRuns(ctx, "db", 1)
	if runs[0].State != store.RunRunning || runs[0].Step != rotation.StepSet {
		t.Fatalf("run after a failed set = %s at %s, want running at set", runs[0].State, runs[0].Step)
	}
	b.target.down = false
	b.checkInvariant(t)
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err != nil || run.ID != runs[0].ID || run.State != store.RunSucceeded {
		t.Fatalf("retry = %+v, %v; want the same run resumed and succeeded", run, err)
	}
	b.checkInvariant(t)
}

func TestPutDuringRotationAbandonsIt(t *testing.T) {
	b := setup(t)
	b.fp = func(name string) {
		if name == "set-after" {
			if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "db", Value: []byte("hand-written-pw")}); err != nil {
				t.Errorf("Put: %v", err)
			}
			b.target.mu.Lock()
			b.target.accepted["hand-written-pw"] = true
			b.target.mu.Unlock()
		}
	}
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err == nil || run.State != store.RunAbandoned {
		t.Fatalf("Rotate = %s, %v; want abandoned", run.State, err)
	}
	if cur := b.current(t); string(cur.Value.Reveal()) != "hand-written-pw" {
		t.Errorf("current = version %d, want the hand-written one", cur.Version)
	}
	info, _ := b.svc.Describe(ctx, "db")
	if _, ok := info.Stages["pending"]; ok {
		t.Errorf("pending stage left behind: %v", info.Stages)
	}
}

func TestOneRotationPerSecret(t *testing.T) {
	b := setup(t)
	if _, err := b.st.ClaimRotation(ctx, "db", store.ClaimParams{Owner: "someone-else", Now: b.clock.Now(), LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"}); !errors.Is(err, rotation.ErrBusy) {
		t.Fatalf("Rotate while leased = %v, want ErrBusy", err)
	}
}

func TestBackoffAndFailing(t *testing.T) {
	b := setup(t)
	b.target.down = true
	var gaps []time.Duration
	for i := range 4 {
		_, _ = b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
		rot, _ := b.st.GetRotation(ctx, "db")
		if rot.ConsecutiveFailures != i+1 {
			t.Fatalf("failures = %d, want %d", rot.ConsecutiveFailures, i+1)
		}
		gaps = append(gaps, rot.NextDueAt.Sub(b.clock.Now()))
		if got := b.eng.Failing(rot); got != (i+1 >= 3) {
			t.Errorf("after %d failures Failing = %v", i+1, got)
		}
	}
	// 1m, 2m, then failing: 1h (each ±20%).
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour, time.Hour} {
		if gaps[i] < want*8/10 || gaps[i] > want*12/10 {
			t.Errorf("retry %d after %s, want about %s", i+1, gaps[i], want)
		}
	}
	b.target.down = false
	if _, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err != nil {
		t.Fatal(err)
	}
	rot, _ := b.st.GetRotation(ctx, "db")
	if rot.ConsecutiveFailures != 0 || rot.LastError != "" || b.eng.Failing(rot) {
		t.Errorf("after success: %+v", rot)
	}
}

// TestCleanupRetriedClearsItsFailure: a cleanup (the rotator's Finish)
// that fails records last_error and a retry due time after finish had
// cleared them; when the retried cleanup succeeds they are cleared again,
// so a rotation without a schedule is not started again by the stale
// retry time.
func TestCleanupRetriedClearsItsFailure(t *testing.T) {
	b := setup(t)
	b.rot.FinishFunc = func(rotators.FinishRequest) error { return errors.New("target unreachable") }
	first, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err == nil {
		t.Fatal("Rotate with a failing Finish succeeded")
	}
	rot, _ := b.st.GetRotation(ctx, "db")
	if rot.LastError == "" || rot.ConsecutiveFailures != 1 || rot.NextDueAt == nil {
		t.Fatalf("after the failed cleanup: last_error %q, failures %d, next due %v; want the failure and a retry time",
			rot.LastError, rot.ConsecutiveFailures, rot.NextDueAt)
	}
	b.rot.FinishFunc = nil
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err != nil || run.ID != first.ID || run.State != store.RunSucceeded {
		t.Fatalf("retry = %+v, %v; want the same run succeeded", run, err)
	}
	rot, _ = b.st.GetRotation(ctx, "db")
	if rot.LastError != "" || rot.ConsecutiveFailures != 0 || rot.NextDueAt != nil {
		t.Errorf("after the retried cleanup succeeded: last_error %q, failures %d, next due %v; want none (no schedule)",
			rot.LastError, rot.ConsecutiveFailures, rot.NextDueAt)
	}
}

func TestEmergencyOptionsReachFinish(t *testing.T) {
	b := setup(t)
	var got rotators.FinishRequest
	b.rot.FinishFunc = func(r rotators.FinishRequest) error { got = r; return nil }
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db", Emergency: true, KeepSessions: true})
	if err != nil {
		t.Fatal(err)
	}
	if run.Trigger != rotation.TriggerEmergency || !got.Emergency || !got.KeepSessions {
		t.Errorf("trigger %s, finish request emergency=%v keep=%v", run.Trigger, got.Emergency, got.KeepSessions)
	}
	if string(got.Previous.Reveal()) != "initial-password-1" {
		t.Errorf("Finish did not get the previous credential")
	}
}

func TestScheduledNextDue(t *testing.T) {
	b := setup(t)
	if c, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Rotator: "fake", Schedule: ptr("rate(1 day)")}); err != nil || len(c.Next) != 3 {
		t.Fatalf("Configure: %v %v", c.Next, err)
	}
	rot, _ := b.st.GetRotation(ctx, "db")
	due := *rot.NextDueAt
	b.clock.t = due.Add(3 * time.Second)
	if _, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db", Trigger: rotation.TriggerScheduled}); err != nil {
		t.Fatal(err)
	}
	rot, _ = b.st.GetRotation(ctx, "db")
	if got := rot.NextDueAt.Sub(due); got != 24*time.Hour {
		t.Errorf("next due %s after the last, want 24h (no drift)", got)
	}
	if _, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Rotator: "fake", Schedule: ptr("@every 1s")}); err == nil {
		t.Errorf("a schedule under the 1h minimum was accepted")
	}
}

func TestRotateRefusals(t *testing.T) {
	b := setup(t)
	if _, err := b.svc.Create(ctx, secrets.CreateParams{Name: "plain", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "plain"}); !errors.Is(err, rotation.ErrNotConfigured) {
		t.Errorf("Rotate(no settings) = %v, want ErrNotConfigured", err)
	}
	if err := b.eng.Launch(ctx, rotation.RotateParams{Secret: "plain"}); !errors.Is(err, rotation.ErrNotConfigured) {
		t.Errorf("Launch(no settings) = %v, want ErrNotConfigured", err)
	}
	if _, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "nope"}); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("Rotate(unknown secret) = %v, want secrets.ErrNotFound", err)
	}
}

// TestConcurrentCallersDriveOneRun: while a rotation of a secret runs on
// this engine, a second Rotate, a Start, a scheduled RunClaimed and Resume
// (all of which can claim the lease again, since this engine owns it)
// report it busy or leave it alone; no step runs twice.
func TestConcurrentCallersDriveOneRun(t *testing.T) {
	b := setup(t)
	inSet, release := make(chan struct{}), make(chan struct{})
	var sets atomic.Int32
	b.rot.SetFunc = func(r rotators.SetRequest) error {
		if sets.Add(1) == 1 {
			close(inSet)
			<-release
		}
		b.target.mu.Lock()
		b.target.accepted = map[string]bool{string(r.Pending.Reveal()): true}
		b.target.mu.Unlock()
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
		done <- err
	}()
	<-inSet
	_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if !errors.Is(err, rotation.ErrBusy) {
		t.Errorf("second Rotate = %v, want ErrBusy", err)
	}
	// It names the run that is running, and its step.
	if runs, _ := b.st.ListRuns(ctx, "db", 1); len(runs) != 1 || !strings.Contains(err.Error(), runs[0].ID) || !strings.Contains(err.Error(), "step set") {
		t.Errorf("second Rotate's error %q does not name the running run %+v at step set", err, runs)
	}
	if err := b.eng.Launch(ctx, rotation.RotateParams{Secret: "db"}); !errors.Is(err, rotation.ErrBusy) {
		t.Errorf("Launch = %v, want ErrBusy", err)
	}
	rot, err := b.st.ClaimRotation(ctx, "db", store.ClaimParams{Owner: "daemon-a", Now: b.clock.Now(), LeaseFor: time.Minute})
	if err != nil {
		t.Fatalf("ClaimRotation by the lease's own owner = %v", err)
	}
	if _, err := b.eng.RunClaimed(ctx, rot, rotation.RotateParams{Secret: "db", Trigger: rotation.TriggerScheduled}); !errors.Is(err, rotation.ErrBusy) {
		t.Errorf("RunClaimed = %v, want ErrBusy", err)
	}
	if n, err := b.eng.Resume(ctx); err != nil || n != 0 {
		t.Errorf("Resume = %d, %v; want 0 resumed", n, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first Rotate = %v", err)
	}
	b.eng.Wait()
	if n := sets.Load(); n != 1 {
		t.Errorf("Set ran %d times, want once", n)
	}
	runs, err := b.st.ListRuns(ctx, "db", 10)
	if err != nil || len(runs) != 1 || runs[0].State != store.RunSucceeded {
		t.Fatalf("runs = %+v, %v; want one succeeded run", runs, err)
	}
	steps, err := b.st.ListRunSteps(ctx, runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Step+":"+s.Result)
	}
	if want := "create:ok set:ok test:ok finish:ok cleanup:ok"; strings.Join(got, " ") != want {
		t.Errorf("history = %s, want %s", strings.Join(got, " "), want)
	}
	b.checkInvariant(t)
}

// A panic in the engine's own code during a step (here from a failpoint;
// a rotator's panic is caught at the call, see target.go) fails that run
// like any failed step, without the values, and the engine goes on: the
// next rotation resumes the run and succeeds.
func TestPanicInStepFailsTheRun(t *testing.T) {
	b := setup(t)
	b.fp = func(name string) {
		if name == "set-after" {
			var pending secrets.Value
			pending, _ = b.svc.Get(ctx, secrets.GetParams{Name: "db", Stage: "pending"})
			panic("engine bug near " + string(pending.Value))
		}
	}
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err == nil || !strings.Contains(err.Error(), "panic in step set") {
		t.Fatalf("Rotate with a panic in step set = %v, want the panic as the step's error", err)
	}
	pending, gerr := b.svc.Get(ctx, secrets.GetParams{Name: "db", Stage: "pending"})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if strings.Contains(err.Error(), string(pending.Value)) {
		t.Fatalf("the panic's error shows the pending value: %v", err)
	}
	rot, _ := b.st.GetRotation(ctx, "db")
	if rot.ConsecutiveFailures != 1 || !strings.Contains(rot.LastError, "panic in step set") {
		t.Errorf("rotation state after the panic = failures %d, last error %q", rot.ConsecutiveFailures, rot.LastError)
	}
	b.fp = nil
	if run2, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"}); err != nil || run2.State != store.RunSucceeded || run2.ID != run.ID {
		t.Fatalf("the next Rotate = %+v, %v; want run %s resumed to success", run2, err, run.ID)
	}
	b.checkInvariant(t)
}

// Stop lets a step in flight end, then cuts the run off at the step
// boundary: it stays running at its next step (not counted as a failure)
// and another engine on the same store resumes it; new rotations are
// refused meanwhile.
func TestStopCutsOffAtStepBoundaryAndResumes(t *testing.T) {
	b := setup(t)
	inSet, release := make(chan struct{}), make(chan struct{})
	b.rot.SetFunc = func(r rotators.SetRequest) error {
		close(inSet)
		<-release
		b.target.mu.Lock()
		b.target.accepted = map[string]bool{string(r.Pending.Reveal()): true}
		b.target.mu.Unlock()
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
		done <- err
	}()
	<-inSet
	stopped := make(chan []string, 1)
	go func() { stopped <- b.eng.Stop(context.Background()) }()
	waitUntil(t, func() bool {
		_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "other"})
		return errors.Is(err, rotation.ErrStopping)
	})
	if got := b.eng.Running(); len(got) != 1 || got[0] != "db" {
		t.Errorf("Running = %v, want [db]", got)
	}
	close(release)
	if err := <-done; !errors.Is(err, rotation.ErrStopping) {
		t.Fatalf("the cut-off Rotate = %v, want ErrStopping", err)
	}
	if left := <-stopped; len(left) != 0 {
		t.Fatalf("Stop left %v running", left)
	}
	runs, _ := b.st.ListRuns(ctx, "db", 1)
	if len(runs) != 1 || runs[0].State != store.RunRunning || runs[0].Step != rotation.StepTest {
		t.Fatalf("after Stop: runs %+v, want one running at step test", runs)
	}
	if rot, _ := b.st.GetRotation(ctx, "db"); rot.ConsecutiveFailures != 0 || rot.LeaseOwner != "" {
		t.Errorf("after Stop: failures %d, lease %q; want 0 and released", rot.ConsecutiveFailures, rot.LeaseOwner)
	}
	// Single-user, after set: the pending version is the one that works.
	if pending, err := b.svc.Get(ctx, secrets.GetParams{Name: "db", Stage: "pending"}); err != nil || !b.target.accepts(pending.Value) {
		t.Fatalf("after Stop at step test the pending version does not work on the target (%v)", err)
	}
	b.rot.SetFunc = nil
	next := b.newEngine(t, "daemon-b")
	if err := next.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		runs, _ := b.st.ListRuns(ctx, "db", 1)
		return len(runs) == 1 && runs[0].State == store.RunSucceeded
	})
	next.Stop(ctx)
	steps, _ := b.st.ListRunSteps(ctx, runs[0].ID)
	var got []string
	for _, s := range steps {
		got = append(got, s.Step+":"+s.Result)
	}
	if want := "create:ok set:ok test:ok finish:ok cleanup:ok"; strings.Join(got, " ") != want {
		t.Errorf("history = %s, want %s", strings.Join(got, " "), want)
	}
	b.checkInvariant(t)
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }
