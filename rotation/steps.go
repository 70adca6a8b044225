package rotation

// The steps of a rotation: the working state of one drive through them
// (attempt), each step (create, set, test, finish, cleanup), their
// transactions with the fencing check and history entry, and the failure
// record. The run and its lease are in engine.go and fence.go, the
// settings in settings.go; doc.go describes the step machine.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
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
	run      store.RotationRun
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

	// The step being run and when it started; recorded is set once its
	// history entry has been written inside the step's own transaction.
	curStep     string
	stepStarted time.Time
	recorded    bool
}

// recordInTx adds the successful history entry of the current step inside
// the transaction that persists the step's outcome. The caller sets
// a.recorded once that transaction has committed (a transaction that is
// retried runs its function again).
func (a *attempt) recordInTx(ctx context.Context, tx store.Ops) error {
	end := a.e.now().UTC()
	return tx.AddRunStep(ctx, store.RunStep{RunID: a.run.ID, Step: a.curStep, StartedAt: a.stepStarted, EndedAt: &end, Result: "ok"})
}

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

// moveRunning sets the run's next step inside tx, refusing when the run
// is no longer running (a put abandoned it meanwhile).
func (a *attempt) moveRunning(ctx context.Context, tx store.Ops, next string, now time.Time) error {
	cur, err := tx.GetRun(ctx, a.run.ID)
	if err != nil {
		return err
	}
	if cur.State != store.RunRunning {
		return fmt.Errorf("run %s is %s", a.run.ID, cur.State)
	}
	a.run.Step, a.run.UpdatedAt = next, now
	return tx.UpdateRun(ctx, a.run)
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

// advance persists the run at its next step, with the current step's
// successful history entry, after checking that no put abandoned it
// meanwhile.
func (a *attempt) advance(ctx context.Context, next string) error { return a.move(ctx, next, true) }

// retreat persists the run back at an earlier step after the current step
// failed; the failure is recorded by step, never as ok.
func (a *attempt) retreat(ctx context.Context, next string) error { return a.move(ctx, next, false) }

func (a *attempt) move(ctx context.Context, next string, ok bool) error {
	did := false
	err := a.e.st.InTx(ctx, func(tx store.Ops) error {
		did = false
		if err := a.fenced(ctx, tx); err != nil {
			return err
		}
		cur, err := tx.GetRun(ctx, a.run.ID)
		if err != nil {
			return err
		}
		if cur.State != store.RunRunning {
			a.run = cur
			return nil
		}
		a.run.Step, a.run.UpdatedAt = next, a.e.now().UTC()
		if err := tx.UpdateRun(ctx, a.run); err != nil {
			return err
		}
		if !ok {
			return nil
		}
		did = true
		return a.recordInTx(ctx, tx)
	})
	if err == nil && did {
		a.recorded = true
	}
	return err
}

// record stores one step's outcome in the history.
func (a *attempt) record(ctx context.Context, step string, started time.Time, err error) {
	end := a.e.now().UTC()
	s := store.RunStep{RunID: a.run.ID, Step: step, StartedAt: started, EndedAt: &end, Result: "ok"}
	if err != nil {
		s.Result, s.Error = "failed", truncate(a.sanitize(err).Error(), 500)
	}
	ctx = context.WithoutCancel(ctx)
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

func (a *attempt) step(ctx context.Context) error {
	started := a.e.now().UTC()
	step := a.run.Step
	if step == "" {
		step = StepCreate
	}
	a.curStep, a.stepStarted, a.recorded = step, started, false
	var err error
	switch step {
	case StepCreate, "":
		step = StepCreate
		err = a.create(ctx)
	case StepSet:
		err = a.set(ctx)
	case StepTest:
		err = a.test(ctx)
	case StepFinish:
		err = a.finish(ctx)
	case StepCleanup:
		err = a.cleanup(ctx)
	default:
		err = fmt.Errorf("run %s has an unknown step %q", a.run.ID, step)
	}
	if err != nil || !a.recorded {
		a.record(ctx, step, started, err)
	}
	return err
}

func (a *attempt) create(ctx context.Context) error {
	current, _, err := a.value(ctx, 0, "current")
	if err != nil {
		return err
	}
	previous, _, err := a.value(ctx, 0, "previous")
	if err != nil {
		return err
	}
	if err := a.checkTarget(ctx, current, "the current version", false); err != nil {
		return err
	}
	previous = a.checkPrevious(ctx, previous)
	sctx, cancel := a.stepCtx(ctx)
	defer cancel()
	resp, err := a.rotator.Create(sctx, rotators.CreateRequest{
		Secret: a.rsecret(0), Config: a.config, Current: current, Previous: previous, Emergency: a.opts.Emergency,
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	a.remember(resp.Value)
	a.e.failpoint("create-before-store")
	// One transaction: the fencing check, the pending version (with its
	// event and audit record), the run's next step and the history entry.
	err = secrets.RetryConflict(ctx, func() error {
		return a.e.st.InTx(ctx, func(tx store.Ops) error {
			if err := a.fenced(ctx, tx); err != nil {
				return err
			}
			vi, err := a.e.svc.PutTx(ctx, tx, secrets.PutParams{
				Name: a.secret.Name, Value: resp.Value.Reveal(), Reason: a.run.Trigger,
				Stages: []string{"pending"},
			})
			if err != nil {
				return err
			}
			a.run.PendingVersion = vi.Version
			if err := a.moveRunning(ctx, tx, StepSet, a.e.now().UTC()); err != nil {
				return err
			}
			return a.recordInTx(ctx, tx)
		})
	})
	a.e.svc.Invalidate(a.secret.Name)
	if err != nil {
		return fmt.Errorf("create: store the pending version: %w", err)
	}
	a.recorded = true
	a.resuming = false
	a.e.failpoint("create-after-store")
	return nil
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

func (a *attempt) set(ctx context.Context) error {
	pending, err := a.pending(ctx)
	if err != nil {
		return err
	}
	current, _, err := a.value(ctx, 0, "current")
	if err != nil {
		return err
	}
	if err := a.checkSend(ctx, current, pending, a.admin); err != nil {
		return err
	}
	if a.resuming {
		// Set may have run before the crash: if the target already takes
		// pending, roll forward without touching it again.
		if a.testValue(ctx, a.run.PendingVersion, pending) == nil {
			a.e.log.Info("resumed rotation: the target already takes the pending credential", "secret", a.secret.Name, "run", a.run.ID)
			return a.advance(ctx, StepTest)
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
		return fmt.Errorf("set: %w", err)
	}
	a.e.failpoint("set-after")
	return a.advance(ctx, StepTest)
}

func (a *attempt) test(ctx context.Context) error {
	pending, err := a.pending(ctx)
	if err != nil {
		return err
	}
	if err := a.checkTarget(ctx, pending, "the pending version", false); err != nil {
		return err
	}
	a.e.failpoint("test-before")
	for i := range a.e.cfg.TestAttempts {
		if err = a.testValue(ctx, a.run.PendingVersion, pending); err == nil {
			break
		}
		if i < a.e.cfg.TestAttempts-1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(a.e.cfg.TestRetryDelay):
			}
		}
	}
	if err == nil {
		a.e.failpoint("test-after")
		return a.advance(ctx, StepFinish)
	}
	if errors.Is(err, store.ErrLeaseLost) {
		return err // stopped before testing: nothing was learnt
	}
	testErr := fmt.Errorf("test: the pending credential does not work: %w", err)
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
		now := a.e.now().UTC()
		derr := a.e.st.InTx(ctx, func(tx store.Ops) error {
			if err := a.fenced(ctx, tx); err != nil {
				return err
			}
			if err := a.e.svc.DropPendingTx(ctx, tx, a.secret.Name, a.run.PendingVersion); err != nil {
				return err
			}
			a.run.State, a.run.EndedAt, a.run.UpdatedAt = store.RunRolledBack, &now, now
			a.run.Error = truncate(a.sanitize(testErr).Error(), 500)
			return tx.UpdateRun(ctx, a.run)
		})
		a.e.svc.Invalidate(a.secret.Name)
		if derr != nil {
			return derr
		}
		return testErr
	}
	// Neither works (the target may be down): set again next time.
	if aerr := a.retreat(ctx, StepSet); aerr != nil {
		return aerr
	}
	a.resuming = true
	if errors.Is(cerr, rotators.ErrTargetMismatch) {
		return errors.Join(testErr, cerr)
	}
	return testErr
}

func (a *attempt) finish(ctx context.Context) error {
	a.e.failpoint("finish-before")
	now := a.e.now().UTC()
	// One transaction: the fencing check, the stages moved (with the
	// rotated event and audit record), the run's next step, the rotation
	// state and the history entry.
	err := a.e.st.InTx(ctx, func(tx store.Ops) error {
		if err := a.fenced(ctx, tx); err != nil {
			return err
		}
		if err := a.e.svc.PromoteTx(ctx, tx, secrets.PromoteParams{
			Name: a.secret.Name, Version: a.run.PendingVersion, Reason: a.run.Trigger,
		}); err != nil {
			return err
		}
		if err := a.moveRunning(ctx, tx, StepCleanup, now); err != nil {
			return err
		}
		rot, err := tx.GetRotationForUpdate(ctx, a.secret.Name)
		if err != nil {
			return err
		}
		rot.LastRotatedAt, rot.LastError, rot.ConsecutiveFailures, rot.UpdatedAt = &now, "", 0, now
		rot.NextDueAt = a.e.nextDue(rot, now)
		if err := tx.PutRotation(ctx, rot); err != nil {
			return err
		}
		return a.recordInTx(ctx, tx)
	})
	a.e.svc.Invalidate(a.secret.Name)
	if errors.Is(err, secrets.ErrNotPending) {
		end := a.e.now().UTC()
		a.run.State, a.run.EndedAt, a.run.UpdatedAt = store.RunAbandoned, &end, end
		a.run.Error = "abandoned: a new current version was written during the rotation"
		err := a.e.st.InTx(ctx, func(tx store.Ops) error {
			if err := a.fenced(ctx, tx); err != nil {
				return err
			}
			return tx.UpdateRun(ctx, a.run)
		})
		if err != nil {
			return err
		}
		// The step did not do its work: its history entry says so.
		a.record(ctx, StepFinish, a.stepStarted, errors.New(a.run.Error))
		a.recorded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	a.recorded = true
	a.e.failpoint("finish-after")
	return nil
}

func (a *attempt) cleanup(ctx context.Context) error {
	current, _, err := a.value(ctx, 0, "current")
	if err != nil {
		return err
	}
	previous, _, err := a.value(ctx, 0, "previous")
	if err != nil {
		return err
	}
	if err := a.checkSend(ctx, current, nil, a.admin); err != nil {
		return err
	}
	previous = a.checkPrevious(ctx, previous)
	sctx, cancel := a.stepCtx(ctx)
	defer cancel()
	err = a.rotator.Finish(sctx, rotators.FinishRequest{
		Secret: a.rsecret(a.run.PendingVersion), Config: a.config, Current: current, Previous: previous,
		Admin: a.admin, Emergency: a.opts.Emergency, KeepSessions: a.opts.KeepSessions,
	})
	if err != nil {
		return fmt.Errorf("finish on the target: %w", err)
	}
	end := a.e.now().UTC()
	a.run.State, a.run.EndedAt, a.run.UpdatedAt, a.run.Error = store.RunSucceeded, &end, end, ""
	err = a.e.st.InTx(ctx, func(tx store.Ops) error {
		if err := a.fenced(ctx, tx); err != nil {
			return err
		}
		if err := tx.UpdateRun(ctx, a.run); err != nil {
			return err
		}
		// Finish cleared the failure state; a failure recorded since (a
		// cleanup that failed and is now retried) left last_error and a
		// retry due time, which would start another rotation that nobody
		// asked for. The run succeeded: clear them as finish did.
		rot, err := tx.GetRotationForUpdate(ctx, a.secret.Name)
		if err != nil {
			return err
		}
		if rot.LastError != "" || rot.ConsecutiveFailures != 0 {
			rot.LastError, rot.ConsecutiveFailures, rot.UpdatedAt = "", 0, end
			rot.NextDueAt = a.e.nextDue(rot, end)
			if err := tx.PutRotation(ctx, rot); err != nil {
				return err
			}
		}
		return a.recordInTx(ctx, tx)
	})
	if err != nil {
		return err
	}
	a.recorded = true
	a.e.log.Info("rotated", "secret", a.secret.Name, "version", a.run.PendingVersion, "trigger", a.run.Trigger, "run", a.run.ID)
	return nil
}

// fenced is the fencing check of a step's commit (Engine.fenced).
func (a *attempt) fenced(ctx context.Context, tx store.Ops) error {
	return a.e.fenced(ctx, tx, a.rot.Secret)
}

// fail records a failed attempt: the run keeps its step (or is rolled
// back), the rotation gets last_error and its next try, and the
// rotation_failed event and audit record are written.
func (a *attempt) fail(ctx context.Context, err error) {
	ctx = context.WithoutCancel(ctx)
	msg := truncate(err.Error(), 500)
	now := a.e.now().UTC()
	werr := a.e.st.InTx(ctx, func(tx store.Ops) error {
		if err := a.e.fenced(ctx, tx, a.rot.Secret); err != nil {
			return err
		}
		if err := a.e.svc.RotationFailedTx(ctx, tx, a.rot.Secret, a.run.Trigger, msg); err != nil {
			return err
		}
		if a.run.ID != "" {
			if cur, gerr := tx.GetRun(ctx, a.run.ID); gerr == nil && cur.State == store.RunRunning {
				cur.Error, cur.Attempt, cur.UpdatedAt = msg, cur.Attempt+1, now
				if uerr := tx.UpdateRun(ctx, cur); uerr != nil {
					return uerr
				}
				a.run = cur
			}
		}
		rot, gerr := tx.GetRotationForUpdate(ctx, a.rot.Secret)
		if gerr != nil {
			return gerr
		}
		rot.LastError, rot.ConsecutiveFailures, rot.UpdatedAt = msg, rot.ConsecutiveFailures+1, now
		retry := now.Add(a.e.backoff(rot.ConsecutiveFailures))
		rot.NextDueAt = &retry
		return tx.PutRotation(ctx, rot)
	})
	if errors.Is(werr, store.ErrLeaseLost) {
		// Fenced: the lease is gone, so is the run; its new owner records.
		a.e.log.Warn("rotation stopped without recording: this daemon no longer holds the lease", "secret", a.rot.Secret, "run", a.run.ID, "step", a.run.Step, "err", msg)
		return
	}
	if werr != nil {
		a.e.log.Error("record rotation failure", "secret", a.rot.Secret, "err", werr)
	}
	a.e.log.Warn("rotation failed", "secret", a.rot.Secret, "run", a.run.ID, "step", a.run.Step, "err", msg)
}
