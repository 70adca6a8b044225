package rotation

// The steps of a rotation: the working state of one drive through them
// (attempt), each step (create, set, test, finish, cleanup), their
// transactions with the fencing check and history entry, and the failure
// record. The run and its lease are in engine.go and fence.go, the
// settings in settings.go; doc.go describes the step machine.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
)

// attempt is the working state of one drive through the steps.
type attempt struct {
	e        *Engine
	rot      store.Rotation
	run      store.RotationRun // as last committed; changed only by commit
	opts     runOptions
	rotator  rotators.Rotator
	secret   secrets.Info
	config   json.RawMessage
	admin    rotators.Value
	values   []sensitive.Bytes // every value seen, for sanitizing errors
	resuming bool
	fence    *fence // the run's lease, checked before every rotator call

	// The account the rotation is bound to, for a rotator that touches one
	// (targeter is nil otherwise).
	target   rotators.Target
	targeter rotators.Targeter

	// The step being run and when it started.
	curStep     string
	stepStarted time.Time
}

// transition is what a step did, for one commit to persist: the run's
// next step or its end, the secret's stages, the rotation state, and the
// step's history entry. Steps compute it without touching the run;
// commit applies it to the run as stored, inside one transaction that may
// be retried, and only then does the attempt see the new run.
type transition struct {
	next string // the run's next step
	end  string // or the state that ends the run (succeeded, rolled_back)

	put     *secrets.PutParams // create: store the pending version
	promote bool               // finish: the pending version becomes current
	drop    bool               // rollback: clear the pending stage
	rotated bool               // finish: the rotation state records a rotation
	clear   bool               // cleanup: clear a failure recorded since finish

	effects []rotators.Effect // cleanup: what Finish did beyond the rotation, kept with the run
}

func (t transition) zero() bool { return t.next == "" && t.end == "" }

// errAbandoned: a new current version was written during the rotation
// (secret put), so its pending version is no longer the next one.
var errAbandoned = errors.New("abandoned: a new current version was written during the rotation")

func (a *attempt) remember(vs ...sensitive.Bytes) {
	for _, v := range vs {
		if v.Len() > 0 {
			a.values = append(a.values, v)
			// JSON values: also scrub the password field on its own.
			var m map[string]any
			if json.Unmarshal(v.Reveal(), &m) == nil {
				if p, ok := m["password"].(string); ok && p != "" {
					a.values = append(a.values, sensitive.Bytes(p))
				}
			}
		}
	}
}

func (a *attempt) sanitize(err error) error { return sensitive.Sanitize(err, a.values...) }

// stepErr is an error with its own text over the error it wraps: a
// step's error that names the step once.
type stepErr struct {
	msg string
	err error
}

func (e *stepErr) Error() string { return e.msg }
func (e *stepErr) Unwrap() error { return e.err }

// stepError prefixes a rotator's error with the step (and detail) once:
// a rotator that already says "postgres: set: connect ..." reads
// "set: postgres: connect ...", not "set: postgres: set: connect ...".
func stepError(step, detail string, err error) error {
	msg := err.Error()
	if name, rest, ok := strings.Cut(msg, ": "); ok && !strings.Contains(name, " ") {
		if r, ok := strings.CutPrefix(rest, step+": "); ok {
			msg = name + ": " + r
		}
	}
	if detail != "" {
		msg = detail + ": " + msg
	}
	return &stepErr{msg: step + ": " + msg, err: err}
}

// guard runs f, turning a panic into the step's error: the run fails like
// any failed step (and is retried), the daemon lives on. The log gets the
// stack, never the panic's value.
func (a *attempt) guard(step string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// Never the panic's value: it may quote a credential this
			// attempt does not know (as for rotator panics, target.go).
			err = fmt.Errorf("panic in step %s (the stack is in the daemon log)", step)
			a.e.log.Error("rotation panicked", "secret", a.rot.Secret, "run", a.run.ID, "step", step,
				"stack", string(debug.Stack()))
		}
	}()
	return f()
}

// prepare loads the rotator, the secret and the admin credential.
func (a *attempt) prepare(ctx context.Context) error {
	rot, err := a.e.cfg.Rotators.Rotator(ctx, a.rot.Rotator)
	if err != nil {
		return err
	}
	g := a.e.guard(rot, a.rot.Rotator)
	g.fence = a.fence
	a.rotator = g
	if err := a.loadBinding(); err != nil {
		return err
	}
	if a.secret, err = a.e.svc.Describe(ctx, a.rot.Secret); err != nil {
		return err
	}
	if a.secret.DeletedAt != nil {
		return fmt.Errorf("%s: %w", a.rot.Secret, secrets.ErrDeleted)
	}
	var c struct {
		AdminSecret string `json:"admin_secret"`
	}
	_ = json.Unmarshal(a.config, &c)
	if c.AdminSecret != "" {
		v, err := a.e.svc.Get(ctx, secrets.GetParams{Name: c.AdminSecret})
		if err != nil {
			return fmt.Errorf("admin secret %s: %w", c.AdminSecret, err)
		}
		a.admin = v.Value
		a.remember(v.Value)
	}
	return nil
}

func (a *attempt) rsecret(version int64) rotators.Secret {
	return rotators.Secret{Name: a.secret.Name, Type: a.secret.Type, Region: a.secret.Region, Version: version}
}

// value reads a version or stage; a missing stage is an empty value.
func (a *attempt) value(ctx context.Context, version int64, stage string) (sensitive.Bytes, int64, error) {
	v, err := a.e.svc.Get(ctx, secrets.GetParams{Name: a.secret.Name, Version: version, Stage: stage})
	if errors.Is(err, secrets.ErrNotFound) && stage != "" {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	a.remember(v.Value)
	return v.Value, v.Version, nil
}

func (a *attempt) stepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.e.cfg.StepTimeout)
}

// commit persists a step's transition in one transaction: the fencing
// check, the run as stored (refused when a put abandoned it), the
// secret's stages with their events and audit records, the rotation
// state, and the step's history entry (ok, or failed with stepErr).
func (a *attempt) commit(ctx context.Context, t transition, stepErr error) error {
	var run store.RotationRun
	err := secrets.RetryConflict(ctx, func() error {
		return a.e.st.InTx(ctx, func(tx store.Ops) error {
			if err := a.fenced(ctx, tx); err != nil {
				return err
			}
			cur, err := a.runningTx(ctx, tx)
			if err != nil {
				return err
			}
			now := a.e.now().UTC()
			run = cur
			run.UpdatedAt = now
			if t.put != nil {
				vi, err := a.e.svc.PutTx(ctx, tx, *t.put)
				if err != nil {
					return err
				}
				run.PendingVersion = vi.Version
			}
			if t.promote {
				err := a.e.svc.PromoteTx(ctx, tx, secrets.PromoteParams{Name: a.secret.Name, Version: run.PendingVersion, Reason: run.Trigger})
				if errors.Is(err, secrets.ErrNotPending) {
					return errAbandoned
				}
				if err != nil {
					return err
				}
			}
			if t.drop {
				if err := a.e.svc.DropPendingTx(ctx, tx, a.secret.Name, run.PendingVersion); err != nil {
					return err
				}
			}
			if len(t.effects) > 0 {
				run.Options = withEffects(run.Options, t.effects)
			}
			if t.end != "" {
				run.State, run.EndedAt, run.Error = t.end, &now, ""
				if stepErr != nil {
					run.Error = truncate(a.sanitize(stepErr).Error(), 500)
				}
			} else {
				run.Step = t.next
			}
			if err := tx.UpdateRun(ctx, run); err != nil {
				return err
			}
			if t.rotated || t.clear {
				rot, err := tx.GetRotationForUpdate(ctx, a.rot.Secret)
				if err != nil {
					return err
				}
				// Finish records the rotation. A cleanup that failed and is
				// retried left last_error and a retry due time, which would
				// start a rotation nobody asked for: its success clears them
				// as finish did.
				if t.rotated || rot.LastError != "" || rot.ConsecutiveFailures != 0 {
					if t.rotated {
						rot.LastRotatedAt = &now
					}
					rot.LastError, rot.ConsecutiveFailures, rot.UpdatedAt = "", 0, now
					rot.NextDueAt = a.e.nextDue(rot, now)
					if err := tx.PutRotation(ctx, rot); err != nil {
						return err
					}
				}
			}
			return tx.AddRunStep(ctx, a.history(now, stepErr))
		})
	})
	if t.put != nil || t.promote || t.drop {
		a.e.svc.Invalidate(a.secret.Name)
	}
	if err != nil {
		return err
	}
	a.run = run
	return nil
}

// runningTx reads the run inside tx and checks that it is still this
// rotation's: running, and, between create and finish, with its pending
// version still the secret's pending stage (a put of a new current
// version clears it). errAbandoned otherwise.
func (a *attempt) runningTx(ctx context.Context, tx store.Ops) (store.RotationRun, error) {
	cur, err := tx.GetRun(ctx, a.run.ID)
	if err != nil {
		return cur, err
	}
	if cur.State != store.RunRunning {
		return cur, errAbandoned
	}
	if cur.PendingVersion != 0 && cur.Step != StepCreate && cur.Step != StepCleanup {
		stages, err := tx.GetStages(ctx, a.rot.Secret)
		if err != nil {
			return cur, err
		}
		if stages[store.StagePending] != cur.PendingVersion {
			return cur, errAbandoned
		}
	}
	return cur, nil
}

// history is the current step's history entry, ended at end.
func (a *attempt) history(end time.Time, err error) store.RunStep {
	s := store.RunStep{RunID: a.run.ID, Step: a.curStep, StartedAt: a.stepStarted, EndedAt: &end, Result: "ok"}
	if err != nil {
		s.Result, s.Error = "failed", truncate(a.sanitize(err).Error(), 500)
	}
	return s
}

// abandon ends a run that a put overtook: the run (if a put did not
// already end it) and the step's history entry say so, and the next
// regular rotation is scheduled.
func (a *attempt) abandon(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var run store.RotationRun
	err := a.e.st.InTx(ctx, func(tx store.Ops) error {
		if err := a.fenced(ctx, tx); err != nil {
			return err
		}
		now := a.e.now().UTC()
		cur, err := tx.GetRun(ctx, a.run.ID)
		if err != nil {
			return err
		}
		run = cur
		if cur.State == store.RunRunning {
			if err := abandonRunTx(ctx, tx, &run, now); err != nil {
				return err
			}
		}
		if run.State != store.RunAbandoned {
			return nil // it ended otherwise meanwhile
		}
		if err := tx.AddRunStep(ctx, a.history(now, errAbandoned)); err != nil {
			return err
		}
		rot, err := tx.GetRotationForUpdate(ctx, a.rot.Secret)
		if err != nil {
			return err
		}
		rot.NextDueAt, rot.UpdatedAt = a.e.nextDue(rot, now), now
		return tx.PutRotation(ctx, rot)
	})
	if err != nil {
		return err
	}
	a.run = run
	return nil
}

// abandonRunTx ends run as abandoned inside tx.
func abandonRunTx(ctx context.Context, tx store.Ops, run *store.RotationRun, now time.Time) error {
	run.State, run.UpdatedAt, run.EndedAt, run.Error = store.RunAbandoned, now, &now, errAbandoned.Error()
	return tx.UpdateRun(ctx, *run)
}

// record stores a failed step's history entry on its own, for a step that
// failed before it had anything to commit.
func (a *attempt) record(ctx context.Context, err error) {
	ctx = context.WithoutCancel(ctx)
	s := a.history(a.e.now().UTC(), err)
	aerr := a.e.st.InTx(ctx, func(tx store.Ops) error {
		if err := a.fenced(ctx, tx); err != nil {
			return err
		}
		return tx.AddRunStep(ctx, s)
	})
	if aerr != nil && !errors.Is(aerr, store.ErrLeaseLost) {
		a.e.log.Warn("record rotation step", "run", a.run.ID, "err", aerr)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// step runs the run's current step and commits its transition. A step
// that fails before it has a transition leaves the run where it is, with
// a failed history entry; a step whose run a put overtook ends it as
// abandoned.
func (a *attempt) step(ctx context.Context) error {
	a.curStep, a.stepStarted = cmp.Or(a.run.Step, StepCreate), a.e.now().UTC()
	var (
		t   transition
		err error
	)
	if a.curStep != StepCreate && a.curStep != StepCleanup {
		err = a.stillPending(ctx)
	}
	if err == nil {
		switch a.curStep {
		case StepCreate:
			t, err = a.create(ctx)
		case StepSet:
			t, err = a.set(ctx)
		case StepTest:
			t, err = a.test(ctx)
		case StepFinish:
			t, err = a.finish(ctx)
		case StepCleanup:
			t, err = a.cleanup(ctx)
		default:
			err = fmt.Errorf("run %s has an unknown step %q", a.run.ID, a.curStep)
		}
	}
	if errors.Is(err, errAbandoned) {
		return a.abandon(ctx)
	}
	if t.zero() {
		a.record(ctx, err)
		return err
	}
	cerr := a.commit(ctx, t, err)
	if errors.Is(cerr, errAbandoned) {
		return a.abandon(ctx)
	}
	if cerr != nil {
		cerr = fmt.Errorf("%s: commit: %w", a.curStep, cerr)
		if err == nil {
			err = cerr
		} else {
			err = errors.Join(err, cerr)
		}
		a.record(ctx, err)
		return err
	}
	// Set is tried again after a failed test: it may have run already.
	a.resuming = t.next == StepSet && err != nil
	switch {
	case err != nil:
	case a.curStep == StepCreate:
		a.e.failpoint("create-after-store")
	case a.curStep == StepFinish:
		a.e.failpoint("finish-after")
	case a.run.State == store.RunSucceeded:
		attrs := []any{"secret", a.secret.Name, "version", a.run.PendingVersion, "trigger", a.run.Trigger, "run", a.run.ID}
		if fx := RunEffects(a.run); len(fx) > 0 {
			attrs = append(attrs, "effects", rotators.EffectsSummary(fx))
		}
		a.e.log.Info("rotated", attrs...)
	}
	return err
}

// stillPending checks, before a step between create and finish touches
// the target, that no put overtook the run (errAbandoned).
func (a *attempt) stillPending(ctx context.Context) error {
	info, err := a.e.svc.Describe(ctx, a.secret.Name)
	if err != nil {
		return err
	}
	if v, ok := info.Stages[store.StagePending]; !ok || v != a.run.PendingVersion {
		return errAbandoned
	}
	return nil
}

func (a *attempt) create(ctx context.Context) (transition, error) {
	current, _, err := a.value(ctx, 0, "current")
	if err != nil {
		return transition{}, err
	}
	previous, _, err := a.value(ctx, 0, "previous")
	if err != nil {
		return transition{}, err
	}
	if err := a.checkTarget(ctx, current, "the current version", false); err != nil {
		return transition{}, err
	}
	previous = a.checkPrevious(ctx, previous)
	sctx, cancel := a.stepCtx(ctx)
	defer cancel()
	resp, err := a.rotator.Create(sctx, rotators.CreateRequest{
		Secret: a.rsecret(0), Config: a.config, Current: current, Previous: previous, Emergency: a.opts.Emergency,
	})
	if err != nil {
		return transition{}, stepError("create", "", err)
	}
	a.remember(resp.Value)
	a.e.failpoint("create-before-store")
	// The pending version (with its event and audit record) is committed
	// with the run's next step and the history entry.
	return transition{next: StepSet, put: &secrets.PutParams{
		Name: a.secret.Name, Value: resp.Value.Reveal(), Reason: a.run.Trigger, Stages: []string{"pending"},
	}}, nil
}

func (a *attempt) pending(ctx context.Context) (sensitive.Bytes, error) {
	v, _, err := a.value(ctx, a.run.PendingVersion, "")
	if errors.Is(err, secrets.ErrNotFound) {
		return nil, fmt.Errorf("pending version %d is gone", a.run.PendingVersion)
	}
	return v, err
}

func (a *attempt) testValue(ctx context.Context, version int64, v sensitive.Bytes) error {
	sctx, cancel := a.stepCtx(ctx)
	defer cancel()
	return a.rotator.Test(sctx, rotators.TestRequest{Secret: a.rsecret(version), Config: a.config, Value: v})
}

func (a *attempt) set(ctx context.Context) (transition, error) {
	pending, err := a.pending(ctx)
	if err != nil {
		return transition{}, err
	}
	current, _, err := a.value(ctx, 0, "current")
	if err != nil {
		return transition{}, err
	}
	if err := a.checkSend(ctx, current, pending, a.admin); err != nil {
		return transition{}, err
	}
	if a.resuming {
		// Set may have run before the crash: if the target already takes
		// pending, roll forward without touching it again.
		if a.testValue(ctx, a.run.PendingVersion, pending) == nil {
			a.e.log.Info("resumed rotation: the target already takes the pending credential", "secret", a.secret.Name, "run", a.run.ID)
			return transition{next: StepTest}, nil
		}
	}
	a.e.failpoint("set-before")
	sctx, cancel := a.stepCtx(ctx)
	defer cancel()
	err = a.rotator.Set(sctx, rotators.SetRequest{
		Secret: a.rsecret(a.run.PendingVersion), Config: a.config, Current: current, Pending: pending,
		Admin: a.admin, Emergency: a.opts.Emergency,
	})
	if err != nil {
		return transition{}, stepError("set", "", err)
	}
	a.e.failpoint("set-after")
	return transition{next: StepTest}, nil
}

func (a *attempt) test(ctx context.Context) (transition, error) {
	pending, err := a.pending(ctx)
	if err != nil {
		return transition{}, err
	}
	if err := a.checkTarget(ctx, pending, "the pending version", false); err != nil {
		return transition{}, err
	}
	a.e.failpoint("test-before")
	for i := range a.e.cfg.TestAttempts {
		if err = a.testValue(ctx, a.run.PendingVersion, pending); err == nil {
			break
		}
		if i < a.e.cfg.TestAttempts-1 {
			select {
			case <-ctx.Done():
				return transition{}, ctx.Err()
			case <-time.After(a.e.cfg.TestRetryDelay):
			}
		}
	}
	if err == nil {
		a.e.failpoint("test-after")
		return transition{next: StepFinish}, nil
	}
	if errors.Is(err, store.ErrLeaseLost) {
		return transition{}, err // stopped before testing: nothing was learnt
	}
	testErr := stepError("test", "the pending credential does not work", err)
	// Which credential does the target take? If current still works, roll
	// back: drop pending, end the run; the next attempt starts afresh.
	current, curVersion, cerr := a.value(ctx, 0, "current")
	if cerr == nil {
		cerr = a.checkTarget(ctx, current, "the current version", false)
	}
	if cerr == nil && current.Len() > 0 && a.testValue(ctx, curVersion, current) == nil {
		// Undo Set on the target first (rotators.Rollbacker): a pending
		// credential Set made valid must not outlive its version.
		if rb, ok := a.rotator.(rotators.Rollbacker); ok {
			sctx, cancel := a.stepCtx(ctx)
			rerr := rb.Rollback(sctx, rotators.RollbackRequest{
				Secret: a.rsecret(a.run.PendingVersion), Config: a.config, Current: current, Pending: pending, Admin: a.admin,
			})
			cancel()
			if rerr != nil {
				rerr = a.sanitize(rerr)
				a.e.log.Warn("rollback: the target may still accept the pending credential", "secret", a.secret.Name, "run", a.run.ID, "err", rerr)
				testErr = fmt.Errorf("%w; rollback on the target failed: %w", testErr, rerr)
			}
		}
		return transition{end: store.RunRolledBack, drop: true}, testErr
	}
	// Neither works (the target may be down): set again next time.
	if errors.Is(cerr, rotators.ErrTargetMismatch) {
		testErr = errors.Join(testErr, cerr)
	}
	return transition{next: StepSet}, testErr
}

func (a *attempt) finish(context.Context) (transition, error) {
	a.e.failpoint("finish-before")
	// The stages moved (with the rotated event and audit record), the
	// run's next step, the rotation state and the history entry.
	return transition{next: StepCleanup, promote: true, rotated: true}, nil
}

func (a *attempt) cleanup(ctx context.Context) (transition, error) {
	current, _, err := a.value(ctx, 0, "current")
	if err != nil {
		return transition{}, err
	}
	previous, _, err := a.value(ctx, 0, "previous")
	if err != nil {
		return transition{}, err
	}
	if err := a.checkSend(ctx, current, nil, a.admin); err != nil {
		return transition{}, err
	}
	previous = a.checkPrevious(ctx, previous)
	sctx, cancel := a.stepCtx(ctx)
	defer cancel()
	var effects rotators.Effects
	err = a.rotator.Finish(sctx, rotators.FinishRequest{
		Secret: a.rsecret(a.run.PendingVersion), Config: a.config, Current: current, Previous: previous,
		Admin: a.admin, Emergency: a.opts.Emergency, KeepSessions: a.opts.KeepSessions, Effects: &effects,
	})
	if err != nil {
		return transition{}, fmt.Errorf("finish on the target: %w", err)
	}
	return transition{end: store.RunSucceeded, clear: true, effects: effects.List()}, nil
}

// fenced is the fencing check of a step's commit (Engine.fenced).
func (a *attempt) fenced(ctx context.Context, tx store.Ops) error {
	return a.e.fenced(ctx, tx, a.rot.Secret)
}

// fail records a failed attempt: the run keeps its step (or is rolled
// back), the rotation gets last_error and its next try, and the
// rotation_failed event and audit record are written.
//
// It returns the time of the next try, or nil when it recorded none.
func (a *attempt) fail(ctx context.Context, err error) *time.Time {
	ctx = context.WithoutCancel(ctx)
	msg := truncate(err.Error(), 500)
	now := a.e.now().UTC()
	var run store.RotationRun
	var next *time.Time
	werr := a.e.st.InTx(ctx, func(tx store.Ops) error {
		if err := a.e.fenced(ctx, tx, a.rot.Secret); err != nil {
			return err
		}
		if err := a.e.svc.RotationFailedTx(ctx, tx, a.rot.Secret, a.run.Trigger, msg); err != nil {
			return err
		}
		run = a.run
		if a.run.ID != "" {
			if cur, gerr := tx.GetRun(ctx, a.run.ID); gerr == nil && cur.State == store.RunRunning {
				cur.Error, cur.Attempt, cur.UpdatedAt = msg, cur.Attempt+1, now
				if uerr := tx.UpdateRun(ctx, cur); uerr != nil {
					return uerr
				}
				run = cur
			}
		}
		rot, gerr := tx.GetRotationForUpdate(ctx, a.rot.Secret)
		if gerr != nil {
			return gerr
		}
		rot.LastError, rot.ConsecutiveFailures, rot.UpdatedAt = msg, rot.ConsecutiveFailures+1, now
		retry := now.Add(a.e.backoff(rot.ConsecutiveFailures))
		rot.NextDueAt = &retry
		if rot.Enabled { // a disabled rotation's retry time is not a due time
			next = &retry
		}
		return tx.PutRotation(ctx, rot)
	})
	if werr == nil {
		a.run = run
	}
	if errors.Is(werr, store.ErrLeaseLost) {
		// Fenced: the lease is gone, so is the run; its new owner records.
		a.e.log.Warn("rotation stopped without recording: this daemon no longer holds the lease", "secret", a.rot.Secret, "run", a.run.ID, "step", a.run.Step, "err", msg)
		return nil
	}
	if werr != nil {
		a.e.log.Error("record rotation failure", "secret", a.rot.Secret, "err", werr)
		return nil
	}
	a.e.log.Warn("rotation failed", "secret", a.rot.Secret, "run", a.run.ID, "step", a.run.Step, "err", msg, "next_try", next)
	return next
}

// explain rewrites a failure the operator must act on so that it says
// what to do: when neither the current nor the pending credential logs
// in, the rotator's account and server, then the command that fixes it
// (the step and rotator prefixes add nothing there). Other errors pass
// unchanged.
//
// Likewise when the target refuses the admin credential: the fix is a put
// of the admin secret (named in the config).
func explain(secret string, config json.RawMessage, err error) error {
	var nw *rotators.NoWorkingCredentialError
	if errors.As(err, &nw) {
		return &actionError{err: nw, msg: nw.Error() + `; store the working one with "rotary secret put ` + secret + `"`}
	}
	var ar *rotators.AdminRefusedError
	if errors.As(err, &ar) {
		var c struct {
			AdminSecret string `json:"admin_secret"`
		}
		if json.Unmarshal(config, &c) == nil && c.AdminSecret != "" {
			return &actionError{err: ar, msg: ar.Error() + `; store the working one in the admin secret with "rotary secret put ` + c.AdminSecret + `"`}
		}
	}
	return err
}

// actionError is an error with a message that says what to do next.
type actionError struct {
	err error
	msg string
}

func (e *actionError) Error() string { return e.msg }
func (e *actionError) Unwrap() error { return e.err }

// FailedError is the error of a rotation attempt that failed and was
// recorded: the secret, the cause, and when the next attempt is due.
// Its text is one line, e.g.
//
//	prod/app-db: neither the current nor the pending password of role "app" logs in to 127.0.0.1:5432
//	(password authentication failed); store the working one with "rotary secret put prod/app-db",
//	next try at 09:13:10 UTC (in 10m)
type FailedError struct {
	Secret  string
	Err     error
	NextTry *time.Time // nil: none recorded (the lease was lost, or no retry is due)
	now     time.Time
}

func (e *FailedError) Error() string {
	msg := e.Secret + ": " + e.Err.Error()
	if e.NextTry != nil {
		sep := "; "
		if errors.Is(e.Err, rotators.ErrNoWorkingCredential) || errors.Is(e.Err, rotators.ErrAdminRefused) {
			sep = ", "
		}
		msg += sep + "next try at " + e.NextTry.UTC().Format("15:04:05 MST") + " (" + inDuration(e.NextTry.Sub(e.now)) + ")"
	}
	return msg
}

func (e *FailedError) Unwrap() error { return e.Err }

// inDuration says when d from now is, roughly: "in 10s", "in 10m",
// "in 2h5m".
func inDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "now"
	case d < time.Minute:
		return "in " + max(d.Round(time.Second), time.Second).String()
	default:
		return "in " + strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
}

// offline reports whether rot's rotator touches nothing outside rotary
// (rotators.Offline).
func (e *Engine) offline(ctx context.Context, rot store.Rotation) bool {
	r, err := e.cfg.Rotators.Rotator(ctx, rot.Rotator)
	if err != nil {
		return false
	}
	_, ok := r.(rotators.Offline)
	return ok
}

// driveOffline runs a new rotation of an offline rotator: its steps one
// after another in memory, then one transaction that creates the run,
// stores the pending version, promotes it, records the five steps and
// the rotation state, and releases the lease. Nothing is durable before that commit, so a crash
// leaves nothing to resume, and the events and audit records are those of
// any rotation. An error means nothing was committed.
func (e *Engine) driveOffline(ctx context.Context, rot store.Rotation, run store.RotationRun) (store.RotationRun, error) {
	a := &attempt{e: e, rot: rot, run: run, config: rot.Config, fence: fenceFrom(ctx)}
	_ = json.Unmarshal(run.Options, &a.opts)
	ctx = secrets.WithActor(ctx, secrets.Actor{TokenID: "rotation", RequestID: run.ID})
	var steps []store.RunStep
	step := func(name string, f func() error) error {
		start := e.now().UTC()
		if err := a.guard(name, f); err != nil {
			return err
		}
		end := e.now().UTC()
		steps = append(steps, store.RunStep{RunID: run.ID, Step: name, StartedAt: start, EndedAt: &end, Result: "ok"})
		return nil
	}
	var current, previous, pending sensitive.Bytes
	var effects rotators.Effects
	err := a.guard("prepare", func() error { return a.prepare(ctx) })
	if err == nil {
		err = step(StepCreate, func() error {
			var err error
			if current, _, err = a.value(ctx, 0, "current"); err != nil {
				return err
			}
			if previous, _, err = a.value(ctx, 0, "previous"); err != nil {
				return err
			}
			sctx, cancel := a.stepCtx(ctx)
			defer cancel()
			resp, err := a.rotator.Create(sctx, rotators.CreateRequest{
				Secret: a.rsecret(0), Config: a.config, Current: current, Previous: previous, Emergency: a.opts.Emergency,
			})
			a.remember(resp.Value)
			pending = resp.Value
			return err
		})
	}
	if err == nil {
		err = step(StepSet, func() error {
			// The failpoints of the durable path, at the same calls (crash
			// tests): here a crash leaves only the due time.
			a.e.failpoint("set-before")
			sctx, cancel := a.stepCtx(ctx)
			defer cancel()
			return a.rotator.Set(sctx, rotators.SetRequest{Secret: a.rsecret(0), Config: a.config, Current: current, Pending: pending, Emergency: a.opts.Emergency})
		})
	}
	if err == nil {
		err = step(StepTest, func() error { a.e.failpoint("test-before"); return a.testValue(ctx, 0, pending) })
	}
	if err == nil {
		a.e.failpoint("finish-before")
		steps = append(steps, store.RunStep{RunID: run.ID, Step: StepFinish, StartedAt: e.now().UTC(), Result: "ok"})
		err = step(StepCleanup, func() error {
			sctx, cancel := a.stepCtx(ctx)
			defer cancel()
			return a.rotator.Finish(sctx, rotators.FinishRequest{
				Secret: a.rsecret(0), Config: a.config, Current: pending, Previous: current,
				Emergency: a.opts.Emergency, KeepSessions: a.opts.KeepSessions, Effects: &effects,
			})
		})
	}
	if err != nil {
		return run, a.sanitize(err)
	}
	var done store.RotationRun
	// The commit may share its transaction with other rotations' (group
	// commit, batch.go).
	err = e.batch.commit(ctx, func(tx store.Ops) error {
		if err := a.fenced(ctx, tx); err != nil {
			return err
		}
		if err := tx.CreateRun(ctx, run); err != nil {
			return err
		}
		vi, err := e.svc.PutTx(ctx, tx, secrets.PutParams{Name: a.secret.Name, Value: pending.Reveal(), Reason: run.Trigger, Stages: []string{store.StagePending}})
		if err != nil {
			return err
		}
		if err := e.svc.PromoteTx(ctx, tx, secrets.PromoteParams{Name: a.secret.Name, Version: vi.Version, Reason: run.Trigger}); err != nil {
			return err
		}
		now := e.now().UTC()
		done = run
		done.PendingVersion, done.Step, done.State, done.EndedAt, done.UpdatedAt = vi.Version, StepCleanup, store.RunSucceeded, &now, now
		if fx := effects.List(); len(fx) > 0 {
			done.Options = withEffects(done.Options, fx)
		}
		if err := tx.UpdateRun(ctx, done); err != nil {
			return err
		}
		for _, s := range steps {
			if s.EndedAt == nil {
				s.EndedAt = &now
			}
			if err := tx.AddRunStep(ctx, s); err != nil {
				return err
			}
		}
		r, err := tx.GetRotationForUpdate(ctx, rot.Secret)
		if err != nil {
			return err
		}
		r.LastRotatedAt, r.LastError, r.ConsecutiveFailures, r.UpdatedAt = &now, "", 0, now
		r.NextDueAt = e.nextDue(r, now)
		if err := tx.PutRotation(ctx, r); err != nil {
			return err
		}
		// The rotation is over: the lease goes with the same commit.
		return tx.ReleaseRotation(ctx, rot.Secret, e.cfg.Owner)
	})
	e.svc.Invalidate(a.secret.Name)
	if err != nil {
		return run, err
	}
	a.run = done
	if a.fence != nil {
		a.fence.markReleased()
	}
	if e.cfg.OnResult != nil {
		e.cfg.OnResult(rot.Rotator, store.RunSucceeded)
	}
	e.log.Info("rotated", "secret", a.secret.Name, "version", a.run.PendingVersion, "trigger", run.Trigger, "run", run.ID)
	return a.run, nil
}
