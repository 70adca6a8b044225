package rotation

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// Triggers.
const (
	TriggerManual    = "manual"
	TriggerScheduled = "scheduled"
	TriggerEmergency = "emergency"
)

// Steps, in order.
const (
	StepCreate  = "create"
	StepSet     = "set"
	StepTest    = "test"
	StepFinish  = "finish"
	StepCleanup = "cleanup"
)

// Errors callers tell apart.
var (
	ErrNotConfigured = errors.New("no rotation is configured for this secret (set one with `rotary rotation set`)")
	ErrBusy          = errors.New("a rotation of this secret is already running")
	ErrDisabled      = errors.New("rotation is disabled for this secret")
	// ErrStopping refuses new rotations once the engine is stopping.
	ErrStopping = errors.New("the daemon is shutting down; rotations resume at its next start")
	// errCutOff ends a run between steps at shutdown: it stays at its
	// step and resumes at the next start, and is not counted as a failure.
	errCutOff = errors.New("cut off at shutdown")
)

// Resolver finds a rotator by its name (postgres, mysql, redis, random,
// plugin:NAME).
type Resolver interface {
	Rotator(ctx context.Context, name string) (rotators.Rotator, error)
}

// Registry is a fixed set of rotators by name.
type Registry map[string]rotators.Rotator

// Rotator implements Resolver.
func (r Registry) Rotator(_ context.Context, name string) (rotators.Rotator, error) {
	if rot, ok := r[name]; ok {
		return rot, nil
	}
	return nil, fmt.Errorf("%w: unknown rotator %q", secrets.ErrInvalid, name)
}

// Config configures an Engine.
type Config struct {
	Store    store.Store
	Secrets  *secrets.Service
	Rotators Resolver
	// Owner names this daemon in leases (default: a random id).
	Owner string
	// LeaseFor is how long a claim lasts without renewal (default 2m). A
	// running rotation renews its lease every LeaseFor/6.
	LeaseFor time.Duration
	// LeaseMargin is the fencing safety margin (default LeaseFor/3): a run
	// stops, before it touches the target again, once no renewal has
	// succeeded for LeaseFor − LeaseMargin (see doc.go, Fencing).
	LeaseMargin time.Duration
	// MinInterval is the smallest schedule interval (default 1h).
	MinInterval time.Duration
	// Backoff after a failed attempt: BackoffBase·2^(n-1), capped at
	// BackoffMax, ±20% jitter (defaults 30s and 30m). After FailingAfter
	// consecutive failures (default 5) the secret is failing and retried
	// every FailingInterval (default 1h).
	BackoffBase     time.Duration
	BackoffMax      time.Duration
	FailingAfter    int
	FailingInterval time.Duration
	// StepTimeout bounds each rotator call (default 2m).
	StepTimeout time.Duration
	// TestAttempts is how often the test step tries pending (default 3),
	// TestRetryDelay the pause between tries (default 1s).
	TestAttempts   int
	TestRetryDelay time.Duration
	Now            func() time.Time
	// After is the clock's timer (default time.After): lease renewals and
	// the lapse check wait on it, so an injected clock drives them too.
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger
	// Failpoint, when set, is called at named points inside each step;
	// crash tests use it (see cmd/rotary's failpoints build tag).
	Failpoint func(name string)
	// OnResult, when set, is called after every attempt (for metrics).
	OnResult func(rotator, result string)
	// OnScheduleChange, when set, is called after settings change a due
	// time (the schedule runner wakes up).
	OnScheduleChange func()
}

// Engine runs rotations.
type Engine struct {
	cfg Config
	st  store.Store
	svc *secrets.Service
	log *slog.Logger
	now func() time.Time

	// wg counts the rotations being driven (enter to leave), resuming
	// Start's resume pass.
	wg, resuming sync.WaitGroup

	// running holds the secrets whose rotation this engine is driving. A
	// lease keeps other daemons out; this keeps this daemon's own callers
	// (API requests, the scheduler, Resume) from driving one run twice,
	// since a claim by the lease's own owner succeeds.
	mu       sync.Mutex
	running  map[string]bool
	stopping bool
	// unschedulable holds, per secret this daemon cannot schedule, what
	// was logged about it (see noteSchedule).
	unschedulable map[string]string

	// The lifecycle (Start, Stop): base is the parent of every run's
	// context and is cancelled when Stop's wait ends; drain is closed
	// when Stop begins, and runs end at their next step boundary.
	base     context.Context
	cancel   context.CancelFunc
	drain    chan struct{}
	stopOnce sync.Once

	// batch is the group commit of scheduled offline rotations (batch.go).
	batch batcher
}

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Secrets == nil || cfg.Rotators == nil {
		return nil, errors.New("rotation: Store, Secrets and Rotators are required")
	}
	if cfg.Owner == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = "rotary-" + hex.EncodeToString(b[:])
	}
	cfg.LeaseFor = cmp.Or(cfg.LeaseFor, 2*time.Minute)
	if cfg.LeaseMargin <= 0 || cfg.LeaseMargin >= cfg.LeaseFor {
		cfg.LeaseMargin = cfg.LeaseFor / 3
	}
	cfg.MinInterval = cmp.Or(cfg.MinInterval, time.Hour)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, 30*time.Second)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, 30*time.Minute)
	cfg.FailingAfter = cmp.Or(cfg.FailingAfter, 5)
	cfg.FailingInterval = cmp.Or(cfg.FailingInterval, time.Hour)
	cfg.StepTimeout = cmp.Or(cfg.StepTimeout, 2*time.Minute)
	cfg.TestAttempts = cmp.Or(cfg.TestAttempts, 3)
	cfg.TestRetryDelay = cmp.Or(cfg.TestRetryDelay, time.Second)
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Engine{
		cfg: cfg, st: cfg.Store, svc: cfg.Secrets, log: cfg.Logger, now: cfg.Now, running: map[string]bool{},
		base: base, cancel: cancel, drain: make(chan struct{}), batch: batcher{st: cfg.Store},
	}, nil
}

// Owner is the lease owner name of this engine.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Start begins the engine's lifecycle: in the background it resumes the
// runs a crash or a stop left unfinished (Resume). Rotations may be asked
// for without Start, as in tests; Stop ends them all the same.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.stopping {
		e.mu.Unlock()
		return ErrStopping
	}
	e.resuming.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.resuming.Done()
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		defer context.AfterFunc(e.base, cancel)()
		if n, err := e.Resume(ctx); err != nil && !e.draining() {
			e.log.Warn("resume rotations", "err", err)
		} else if n > 0 {
			e.log.Info("resumed unfinished rotations", "count", n)
		}
	}()
	return nil
}

// Stop refuses new rotations and lets running ones end at their next step
// boundary (a run cut off there stays at its step and resumes at the next
// start, on this daemon or another). When ctx ends first, their contexts
// are cancelled, which ends the step in flight, and Stop waits a little
// longer for them to return. It returns the secrets still running then.
// Idempotent.
func (e *Engine) Stop(ctx context.Context) []string {
	e.stopOnce.Do(func() {
		e.mu.Lock()
		e.stopping = true
		e.mu.Unlock()
		close(e.drain)
	})
	done := make(chan struct{})
	go func() { e.resuming.Wait(); e.wg.Wait(); close(done) }()
	select {
	case <-done:
		e.cancel()
		return nil
	case <-ctx.Done():
	}
	e.cancel()
	select {
	case <-done:
		return nil
	case <-time.After(2 * time.Second):
		return e.Running()
	}
}

// Running lists the secrets whose rotation this engine is driving.
func (e *Engine) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.running))
	for s := range e.running {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Wait blocks until every rotation this engine is driving has ended.
func (e *Engine) Wait() { e.wg.Wait() }

func (e *Engine) failpoint(name string) {
	if e.cfg.Failpoint != nil {
		e.cfg.Failpoint(name)
	}
}

// RotateParams starts a rotation.
type RotateParams struct {
	Secret       string
	Trigger      string // manual (default), scheduled, emergency
	Emergency    bool
	KeepSessions bool

	// resumeOnly (Resume) resumes the secret's unfinished run with this
	// id and starts nothing new: the run may have ended meanwhile.
	resumeOnly string
}

// Rotate claims the secret and runs a rotation to its end, or resumes the
// secret's unfinished one. It returns the run record.
func (e *Engine) Rotate(ctx context.Context, p RotateParams) (store.RotationRun, error) {
	if err := e.enter(ctx, p.Secret); err != nil {
		return store.RotationRun{}, err
	}
	defer e.leave(p.Secret)
	rot, err := e.claim(ctx, p.Secret)
	if err != nil {
		return store.RotationRun{}, err
	}
	return e.runClaimed(ctx, rot, p)
}

// enter marks secret as driven by this engine. It refuses a secret this
// engine is driving already (ErrBusy, naming the run when it can) and
// every secret once the engine is stopping.
func (e *Engine) enter(ctx context.Context, secret string) error {
	e.mu.Lock()
	switch {
	case e.stopping:
		e.mu.Unlock()
		return fmt.Errorf("%s: %w", secret, ErrStopping)
	case e.running[secret]:
		e.mu.Unlock()
		return e.busy(ctx, secret, true)
	}
	e.running[secret] = true
	e.wg.Add(1)
	e.mu.Unlock()
	return nil
}

func (e *Engine) leave(secret string) {
	e.mu.Lock()
	delete(e.running, secret)
	e.mu.Unlock()
	e.wg.Done()
}

// busy is ErrBusy for secret, naming the running run and its step, or the
// daemon that claimed it while its run starts, or this daemon (here).
func (e *Engine) busy(ctx context.Context, secret string, here bool) error {
	runs, err := e.st.ListRuns(ctx, secret, 1)
	if err == nil && len(runs) == 1 && runs[0].State == store.RunRunning {
		return fmt.Errorf("%s: %w (run %s, at step %s)", secret, ErrBusy, runs[0].ID, runs[0].Step)
	}
	if rot, err := e.st.GetRotation(ctx, secret); err == nil && rot.LeaseOwner != "" {
		return fmt.Errorf("%s: %w (claimed by %s; its run is starting)", secret, ErrBusy, rot.LeaseOwner)
	}
	if here {
		return fmt.Errorf("%s: %w (starting on this daemon)", secret, ErrBusy)
	}
	return fmt.Errorf("%s: %w", secret, ErrBusy)
}

// Launch runs Rotate in the background (for callers that do not wait).
// It claims the secret first, so what Rotate would refuse is refused at
// once.
func (e *Engine) Launch(ctx context.Context, p RotateParams) error {
	if err := e.enter(ctx, p.Secret); err != nil {
		return err
	}
	rot, err := e.claim(ctx, p.Secret)
	if err != nil {
		e.leave(p.Secret)
		return err
	}
	go func() {
		defer e.leave(p.Secret)
		_, _ = e.runClaimed(context.WithoutCancel(ctx), rot, p)
	}()
	return nil
}

// claim leases a secret's rotation for this engine, telling apart a
// secret that does not exist, one without rotation settings, and one
// whose rotation another engine holds.
func (e *Engine) claim(ctx context.Context, secret string) (store.Rotation, error) {
	rot, err := e.st.ClaimRotation(ctx, secret, store.ClaimParams{Owner: e.cfg.Owner, Now: e.now().UTC(), LeaseFor: e.cfg.LeaseFor})
	switch {
	case errors.Is(err, store.ErrConflict):
		return rot, e.busy(ctx, secret, false)
	case errors.Is(err, store.ErrNotFound):
		if _, derr := e.svc.Describe(ctx, secret); errors.Is(derr, secrets.ErrNotFound) {
			return rot, derr
		}
		return rot, fmt.Errorf("%s: %w", secret, ErrNotConfigured)
	}
	return rot, err
}

// RunClaimed runs (or resumes) a rotation of a secret whose lease this
// engine holds, and releases the lease at the end. The lease must come
// from a claim of a free or expired lease (store.ClaimDueRotations). If
// this engine is still driving the secret's rotation, that run's lease
// had expired: RunClaimed releases the new claim for another daemon and
// returns ErrBusy. (Resume, which re-claims its own live leases, leaves
// the lease to the run.)
func (e *Engine) RunClaimed(ctx context.Context, rot store.Rotation, p RotateParams) (store.RotationRun, error) {
	if err := e.enter(ctx, rot.Secret); err != nil {
		if errors.Is(err, ErrBusy) && p.resumeOnly == "" {
			// This engine claimed a secret it is still driving: a claim
			// takes only a free or expired lease, so that run's lease
			// expired and it is stopping (its fence lapsed), maybe stuck in
			// a call that ignores cancellation. Keeping the claim would hold
			// the secret for a run that cannot go on, claim after claim:
			// release it for another daemon.
			if rerr := e.st.ReleaseRotation(context.WithoutCancel(ctx), rot.Secret, e.cfg.Owner); rerr != nil && !errors.Is(rerr, store.ErrLeaseLost) {
				e.log.Warn("release rotation lease", "secret", rot.Secret, "err", rerr)
			}
		}
		return store.RotationRun{}, err
	}
	defer e.leave(rot.Secret)
	return e.runClaimed(ctx, rot, p)
}

func (e *Engine) runClaimed(ctx context.Context, rot store.Rotation, p RotateParams) (store.RotationRun, error) {
	// The run ends with the caller's context or when Stop gives up
	// waiting, whichever comes first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.base, cancel)()
	ctx, stopRenew := e.holdLease(ctx, rot)
	defer func() {
		stopRenew()
		if fenceFrom(ctx).isReleased() {
			return
		}
		if err := e.st.ReleaseRotation(context.WithoutCancel(ctx), rot.Secret, e.cfg.Owner); err != nil && !errors.Is(err, store.ErrLeaseLost) {
			e.log.Warn("release rotation lease", "secret", rot.Secret, "err", err)
		}
	}()
	if p.Emergency {
		p.Trigger = TriggerEmergency
	}
	p.Trigger = cmp.Or(p.Trigger, TriggerManual)
	if p.Trigger != TriggerEmergency && p.Trigger != TriggerScheduled && p.Trigger != TriggerManual {
		return store.RotationRun{}, fmt.Errorf("%w: unknown trigger %q", secrets.ErrInvalid, p.Trigger)
	}

	// An unfinished run is resumed before anything new starts. It answers
	// a manual or scheduled request; an emergency request still gets its
	// own run afterwards unless the resumed run was one.
	runs, err := e.st.ListRuns(ctx, rot.Secret, 1)
	if err != nil {
		return store.RotationRun{}, err
	}
	if p.resumeOnly != "" && (len(runs) == 0 || runs[0].ID != p.resumeOnly || runs[0].State != store.RunRunning) {
		return store.RotationRun{}, nil // it ended before this engine got to it
	}
	if len(runs) == 1 && runs[0].State == store.RunRunning {
		prev := runs[0]
		e.log.Info("resuming rotation", "secret", rot.Secret, "run", prev.ID, "step", prev.Step)
		done, err := e.drive(ctx, rot, prev, true)
		if err != nil || !p.Emergency || prev.Trigger == TriggerEmergency {
			return done, err
		}
		if rot, err = e.st.GetRotation(ctx, rot.Secret); err != nil {
			return done, err
		}
	}
	if !rot.Enabled && p.Trigger == TriggerScheduled {
		// Nothing to resume and nothing to schedule: take it off the queue.
		err := e.st.InTx(ctx, func(tx store.Ops) error {
			if err := e.fenced(ctx, tx, rot.Secret); err != nil {
				return err
			}
			cur, err := tx.GetRotationForUpdate(ctx, rot.Secret)
			if err != nil {
				return err
			}
			cur.NextDueAt = nil
			return tx.PutRotation(ctx, cur)
		})
		if err != nil {
			return store.RotationRun{}, err
		}
		return store.RotationRun{}, fmt.Errorf("%s: %w", rot.Secret, ErrDisabled)
	}
	opts, _ := json.Marshal(runOptions{Emergency: p.Emergency, KeepSessions: p.KeepSessions})
	now := e.now().UTC()
	run := store.RotationRun{
		ID: newRunID(), Secret: rot.Secret, Trigger: p.Trigger, Step: StepCreate, State: store.RunRunning,
		Options: opts, StartedAt: now, UpdatedAt: now,
	}
	if p.Trigger == TriggerScheduled && e.offline(ctx, rot) {
		// All steps in memory, one commit; on any failure the regular
		// path below records it (and retries) like any rotation's. Only
		// for a due time: it stays in the store until that commit, so a
		// rotation cut off before it happens again. A request (manual,
		// emergency) was answered "started", so its run is made durable
		// first, as below, and resumes from its step after a crash.
		if done, err := e.driveOffline(ctx, rot, run); err == nil {
			return done, nil
		} else if errors.Is(err, store.ErrLeaseLost) || e.draining() {
			return done, fmt.Errorf("rotate %s: %w", rot.Secret, err)
		}
	}
	// The run and a due time no later than the lease's end go in together:
	// if this daemon dies mid-run, the due time puts the secret back on the
	// schedule queue, and whichever daemon claims it after the lease
	// expires resumes the run, even for a secret rotated only by hand.
	err = e.st.InTx(ctx, func(tx store.Ops) error {
		if err := e.fenced(ctx, tx, rot.Secret); err != nil {
			return err
		}
		if err := tx.CreateRun(ctx, run); err != nil {
			return err
		}
		cur, err := tx.GetRotationForUpdate(ctx, rot.Secret)
		if err != nil {
			return err
		}
		resumeAt := now.Add(e.cfg.LeaseFor)
		if cur.NextDueAt == nil || cur.NextDueAt.After(resumeAt) {
			cur.NextDueAt = &resumeAt
			return tx.PutRotation(ctx, cur)
		}
		return nil
	})
	if err != nil {
		return run, err
	}
	return e.drive(ctx, rot, run, false)
}

// runOptions is a run's Options JSON: how it was asked for and, once
// its cleanup ran, what it did on the target beyond the rotation.
type runOptions struct {
	Emergency    bool              `json:"emergency,omitempty"`
	KeepSessions bool              `json:"keep_sessions,omitempty"`
	Effects      []rotators.Effect `json:"effects,omitempty"`
}

// RunEffects returns what a run did on the target beyond the rotation
// (sessions ended, credentials made useless), as its rotator reported
// them; none for a run that has not cleaned up. Never a value.
func RunEffects(run store.RotationRun) []rotators.Effect {
	var o runOptions
	_ = json.Unmarshal(run.Options, &o)
	return o.Effects
}

// withEffects returns options with effects added to them (other keys
// kept as they are).
func withEffects(options []byte, effects []rotators.Effect) []byte {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(options, &m)
	b, err := json.Marshal(effects)
	if err != nil {
		return options
	}
	m["effects"] = b
	out, err := json.Marshal(m)
	if err != nil {
		return options
	}
	return out
}

// newRunID returns an ID that sorts by creation: a secret's runs are
// listed newest first by start time and then by ID, so two runs that
// start within one tick of the clock (an injected one, or rotations back
// to back) are still in order, and the engine finds the unfinished one.
func newRunID() string {
	var b [12]byte
	for {
		last := lastRunNanos.Load()
		n := max(time.Now().UnixNano(), last+1)
		if lastRunNanos.CompareAndSwap(last, n) {
			binary.BigEndian.PutUint64(b[:8], uint64(n))
			break
		}
	}
	_, _ = rand.Read(b[8:])
	return "run_" + hex.EncodeToString(b[:])
}

var lastRunNanos atomic.Int64

// drive runs the steps from run.Step to the end.
func (e *Engine) drive(ctx context.Context, rot store.Rotation, run store.RotationRun, resuming bool) (store.RotationRun, error) {
	a := &attempt{e: e, rot: rot, run: run, config: rot.Config, resuming: resuming, fence: fenceFrom(ctx)}
	_ = json.Unmarshal(run.Options, &a.opts)
	ctx = secrets.WithActor(ctx, secrets.Actor{TokenID: "rotation", RequestID: run.ID})
	err := a.guard("prepare", func() error { return a.prepare(ctx) })
	for err == nil && a.run.State == store.RunRunning {
		if cerr := ctx.Err(); cerr != nil {
			err = context.Cause(ctx)
			break
		}
		if err = fenceFrom(ctx).check(); err != nil {
			break
		}
		if e.draining() {
			err = errCutOff
			break
		}
		err = a.guard(a.run.Step, func() error { return a.step(ctx) })
	}
	if err != nil && e.draining() && (errors.Is(err, errCutOff) || ctx.Err() != nil) {
		// Shutdown, not a failure: the run stays at its step, due again
		// (its due time is no later than its lease's end), and resumes at
		// the next start or on another daemon.
		e.log.Warn("rotation cut off at shutdown; it resumes from its step at the next start", "secret", rot.Secret, "run", a.run.ID, "step", a.run.Step)
		return a.run, fmt.Errorf("rotate %s: %w", rot.Secret, ErrStopping)
	}
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, store.ErrLeaseLost) && !errors.Is(err, store.ErrLeaseLost) {
		err = fmt.Errorf("%w (%w)", cause, err) // the step failed because the run was stopped
	}
	if err != nil {
		err = explain(rot.Secret, rot.Config, a.sanitize(err))
		retry := a.fail(ctx, err)
		if e.cfg.OnResult != nil {
			e.cfg.OnResult(rot.Rotator, "failed")
		}
		return a.run, &FailedError{Secret: rot.Secret, Err: err, NextTry: retry, now: e.now()}
	}
	if e.cfg.OnResult != nil {
		e.cfg.OnResult(rot.Rotator, a.run.State)
	}
	if a.run.State == store.RunAbandoned {
		// Over; abandon scheduled the next regular rotation.
		return a.run, fmt.Errorf("rotate %s: %s", rot.Secret, a.run.Error)
	}
	return a.run, nil
}

// Put stores a new version of a secret by hand (secret put). A new
// current version overtakes a rotation in flight: the put clears its
// pending stage, and its run ends as abandoned in the same transaction,
// so the history shows it at once; the daemon driving it stops at its
// next step (a put through secrets.Service.Put alone is seen there too).
func (e *Engine) Put(ctx context.Context, p secrets.PutParams) (secrets.VersionInfo, error) {
	defer e.svc.Invalidate(p.Name)
	var out secrets.VersionInfo
	err := secrets.RetryConflict(ctx, func() error {
		return e.st.InTx(ctx, func(tx store.Ops) error {
			var err error
			if out, err = e.svc.PutTx(ctx, tx, p); err != nil {
				return err
			}
			if !slices.Contains(out.Stages, store.StageCurrent) {
				return nil
			}
			runs, err := tx.ListRuns(ctx, p.Name, 1)
			if err != nil || len(runs) == 0 || runs[0].State != store.RunRunning {
				return err
			}
			return abandonRunTx(ctx, tx, &runs[0], e.now().UTC())
		})
	})
	return out, err
}

// draining reports whether Stop has begun.
func (e *Engine) draining() bool {
	select {
	case <-e.drain:
		return true
	default:
		return false
	}
}

// backoff returns the delay before attempt n+1 after n failures.
func (e *Engine) backoff(n int) time.Duration {
	if n >= e.cfg.FailingAfter {
		return jitter(e.cfg.FailingInterval)
	}
	d := float64(e.cfg.BackoffBase) * math.Pow(2, float64(max(n-1, 0)))
	return jitter(time.Duration(min(d, float64(e.cfg.BackoffMax))))
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

// Failing reports whether a rotation counts as failing.
func (e *Engine) Failing(r store.Rotation) bool { return r.ConsecutiveFailures >= e.cfg.FailingAfter }

// nextDue computes the next due time of a rotation after a run that ended
// at now. A scheduled due time still ahead (a manual rotation ran early)
// stays; one that has passed gives the next one after it (or after now,
// when runs were missed, so they are not replayed).
//
// A schedule this daemon cannot honour (one saved under a smaller
// min_rotation_interval) gives none: the rotation leaves the schedule,
// which is logged and shown as unschedulable (see ScheduleState).
func (e *Engine) nextDue(rot store.Rotation, now time.Time) *time.Time {
	if rot.Schedule == "" || !rot.Enabled {
		return nil
	}
	spec, err := e.ParseSchedule(rot.Schedule, rot.Window)
	if err != nil {
		r := rot
		r.NextDueAt = nil
		e.noteSchedule(r)
		return nil
	}
	if spec.Manual() {
		return nil
	}
	if rot.NextDueAt == nil {
		n := spec.First(rot.Secret, now)
		return &n
	}
	due := *rot.NextDueAt
	isScheduled := spec.Due(rot.Secret, spec.BaseOf(rot.Secret, due)).Equal(due)
	if due.After(now) {
		if isScheduled {
			return &due
		}
		n := spec.First(rot.Secret, now) // it was a retry time
		return &n
	}
	if !isScheduled {
		n := spec.First(rot.Secret, now)
		return &n
	}
	n := spec.NextAfterRun(rot.Secret, due, now)
	return &n
}

// Resume resumes every unfinished run whose lease is free, for example
// after this daemon restarts. It returns how many it resumed.
func (e *Engine) Resume(ctx context.Context) (int, error) {
	runs, err := e.st.UnfinishedRuns(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range runs {
		if e.draining() {
			break
		}
		rot, err := e.st.ClaimRotation(ctx, r.Secret, store.ClaimParams{Owner: e.cfg.Owner, Now: e.now().UTC(), LeaseFor: e.cfg.LeaseFor})
		if err != nil {
			continue // held by another daemon, or gone
		}
		run, err := e.RunClaimed(ctx, rot, RotateParams{Secret: r.Secret, Trigger: r.Trigger, resumeOnly: r.ID})
		if errors.Is(err, ErrBusy) || err == nil && run.ID == "" {
			continue // driven here already, or ended meanwhile (the scheduler or a request got to it first)
		}
		n++
		if err != nil {
			e.log.Warn("resumed rotation failed", "secret", r.Secret, "err", err)
		}
	}
	return n, nil
}
