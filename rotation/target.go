package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Errors of target binding and rotator calls.
var (
	// ErrNotBound: the rotation's settings were saved before rotations were
	// bound to their target account; it refuses to run until they are
	// saved again.
	ErrNotBound = errors.New("the rotation is not bound to a target account (its settings were saved by an older version): " +
		"run `rotary rotation set` again to bind it")
	// ErrRebindNeeded: saving settings would bind the rotation to another
	// account than the one it is bound to (the value was moved, or put by
	// someone who should not move it); Settings.Rebind confirms it.
	ErrRebindNeeded = errors.New("the current value names another account than the rotation is bound to")
	// ErrRotatorPanicked: a rotator call panicked. The panic value is never
	// shown (it may hold a secret); the stack is logged.
	ErrRotatorPanicked = errors.New("rotator panicked")
)

var _ rotators.Rollbacker = guarded{}

// guarded wraps a rotator so that a panic inside any of its calls fails
// that call with ErrRotatorPanicked instead of killing the daemon.
// During a run it also carries the run's fence: no call reaches the
// rotator (and so the target) unless the lease is known valid.
type guarded struct {
	inner rotators.Rotator
	name  string
	log   *slog.Logger
	fence *fence
}

// recovered turns a panic of the call into ErrRotatorPanicked. It logs the
// stack but never the panic value, which may quote a credential.
func (g guarded) recovered(call string, err *error) {
	if r := recover(); r != nil {
		g.log.Error("rotator panicked", "rotator", g.name, "call", call, "stack", string(debug.Stack()))
		*err = fmt.Errorf("%s: %w", call, ErrRotatorPanicked)
	}
}

func (g guarded) Create(ctx context.Context, req rotators.CreateRequest) (_ rotators.CreateResponse, err error) {
	defer g.recovered("create", &err)
	if err := g.fence.check(); err != nil {
		return rotators.CreateResponse{}, err
	}
	return g.inner.Create(ctx, req)
}

func (g guarded) Set(ctx context.Context, req rotators.SetRequest) (err error) {
	defer g.recovered("set", &err)
	if err := g.fence.check(); err != nil {
		return err
	}
	return g.inner.Set(ctx, req)
}

func (g guarded) Test(ctx context.Context, req rotators.TestRequest) (err error) {
	defer g.recovered("test", &err)
	if err := g.fence.check(); err != nil {
		return err
	}
	return g.inner.Test(ctx, req)
}

func (g guarded) Finish(ctx context.Context, req rotators.FinishRequest) (err error) {
	defer g.recovered("finish", &err)
	if err := g.fence.check(); err != nil {
		return err
	}
	return g.inner.Finish(ctx, req)
}

// Rollback passes a rollback on to a rotator that can undo Set
// (rotators.Rollbacker), guarded; for one that cannot it does nothing.
func (g guarded) Rollback(ctx context.Context, req rotators.RollbackRequest) (err error) {
	rb, ok := g.inner.(rotators.Rollbacker)
	if !ok {
		return nil
	}
	if err := g.fence.check(); err != nil {
		return err
	}
	defer g.recovered("rollback", &err)
	return rb.Rollback(ctx, req)
}

// target asks a Targeter for the identity of a value, guarded like the
// rotator's other calls.
func (g guarded) target(ctx context.Context, t rotators.Targeter, req rotators.TargetRequest) (_ rotators.Target, err error) {
	defer g.recovered("target", &err)
	return t.Target(ctx, req)
}

// validate runs a ConfigValidator, guarded.
func (g guarded) validate(ctx context.Context, v rotators.ConfigValidator, secretType string, cfg json.RawMessage) (err error) {
	defer g.recovered("validate config", &err)
	return v.ValidateConfig(ctx, secretType, cfg)
}

func (e *Engine) guard(rot rotators.Rotator, name string) guarded {
	return guarded{inner: rot, name: name, log: e.log}
}

// bind computes the identity of the account a rotation's settings bind it
// to: the target of the secret's current value (and, for the alternating
// pair, its previous one), whose server the admin value must name too.
// It returns nil for a rotator that touches no account.
// The returned scrubber sanitizes later errors with the values read.
func (e *Engine) bind(ctx context.Context, g guarded, info secrets.Info, cfg json.RawMessage) (_ rotators.Target, scrub *attempt, err error) {
	scrub = &attempt{}
	tg, ok := g.inner.(rotators.Targeter)
	if !ok {
		return nil, scrub, nil
	}
	defer func() { err = scrub.sanitize(err) }()
	cur, err := e.svc.Get(ctx, secrets.GetParams{Name: info.Name})
	if errors.Is(err, secrets.ErrNotFound) {
		return nil, scrub, fmt.Errorf("%w: %s has no current value: put the credential first, the rotation is bound to the account it names", secrets.ErrInvalid, info.Name)
	}
	if err != nil {
		return nil, scrub, fmt.Errorf("bind the rotation to its target: read the current value: %w", err)
	}
	scrub.remember(cur.Value)
	var previous sensitive.Bytes
	if prev, err := e.svc.Get(ctx, secrets.GetParams{Name: info.Name, Stage: "previous"}); err == nil {
		previous = prev.Value
		scrub.remember(previous)
	}
	t, err := g.target(ctx, tg, rotators.TargetRequest{SecretType: info.Type, Config: cfg, Value: cur.Value, Previous: previous})
	if err != nil {
		return nil, scrub, fmt.Errorf("%w: rotator %s: the current value: %v", secrets.ErrInvalid, g.name, err)
	}
	if len(t) == 0 {
		return nil, scrub, fmt.Errorf("rotator %s names no identity for the current value's account, so the rotation cannot be bound to it", g.name)
	}
	var c struct {
		AdminSecret string `json:"admin_secret"`
	}
	_ = json.Unmarshal(cfg, &c)
	if c.AdminSecret != "" {
		admin, err := e.svc.Get(ctx, secrets.GetParams{Name: c.AdminSecret})
		if errors.Is(err, secrets.ErrNotFound) {
			return nil, scrub, fmt.Errorf("%w: config: admin_secret %q: has no current value", secrets.ErrInvalid, c.AdminSecret)
		}
		if err != nil {
			return nil, scrub, fmt.Errorf("admin secret %s: %w", c.AdminSecret, err)
		}
		scrub.remember(admin.Value)
		at, err := g.target(ctx, tg, rotators.TargetRequest{SecretType: info.Type, Config: cfg, Value: admin.Value})
		if err != nil {
			return nil, scrub, fmt.Errorf("%w: rotator %s: the admin value of %s: %v", secrets.ErrInvalid, g.name, c.AdminSecret, err)
		}
		if err := t.Check(at, "the admin value of "+c.AdminSecret, true); err != nil {
			return nil, scrub, fmt.Errorf("%w: config: admin_secret %q: %v (the admin credential must be for the server of the rotated account)", secrets.ErrInvalid, c.AdminSecret, err)
		}
	}
	return t, scrub, nil
}

// loadBinding reads the rotation's stored identity for a rotator that
// touches an account.
func (a *attempt) loadBinding() error {
	tg, ok := a.rotator.(guarded).inner.(rotators.Targeter)
	if !ok {
		return nil
	}
	if len(a.rot.Target) == 0 {
		return fmt.Errorf("%s: %w", a.rot.Secret, ErrNotBound)
	}
	if err := json.Unmarshal(a.rot.Target, &a.target); err != nil {
		return fmt.Errorf("%s: the rotation's stored target is unreadable (%v): run `rotary rotation set` again", a.rot.Secret, err)
	}
	if len(a.target) == 0 {
		return fmt.Errorf("%s: %w", a.rot.Secret, ErrNotBound)
	}
	a.targeter = tg
	return nil
}

// checkTarget makes sure a value the engine is about to send to the
// rotator names the account the rotation is bound to (serverOnly: names
// its server, for the admin value). what names the value in the error,
// e.g. "the pending version". An empty value is not checked (nothing of it
// can be sent).
func (a *attempt) checkTarget(ctx context.Context, v sensitive.Bytes, what string, serverOnly bool) error {
	if a.targeter == nil || v.Len() == 0 {
		return nil
	}
	got, err := a.rotator.(guarded).target(ctx, a.targeter, rotators.TargetRequest{SecretType: a.secret.Type, Config: a.config, Value: v})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", rotators.ErrTargetMismatch, what, err)
	}
	return a.target.Check(got, what, serverOnly)
}

// checkPrevious checks the previous version before it is sent. A previous
// version naming another account (the secret was moved to a new account
// and rebound, or someone put a value for another account and then the
// right one again) is withheld rather than sent: what it names is not the
// rotation's to clean up or revoke, even in an emergency, and the rotator
// treats it as absent. So is a previous version whose identity cannot be
// read.
func (a *attempt) checkPrevious(ctx context.Context, previous sensitive.Bytes) sensitive.Bytes {
	err := a.checkTarget(ctx, previous, "the previous version", false)
	if err == nil {
		return previous
	}
	a.e.log.Warn("previous version withheld from the rotator: it names another account", "secret", a.rot.Secret, "run", a.run.ID, "err", a.sanitize(err))
	return nil
}

// checkSend checks the values a Set or Finish sends: current and pending
// against the whole binding, the admin value against its server.
func (a *attempt) checkSend(ctx context.Context, current, pending, admin sensitive.Bytes) error {
	if err := a.checkTarget(ctx, current, "the current version", false); err != nil {
		return err
	}
	if err := a.checkTarget(ctx, pending, "the pending version", false); err != nil {
		return err
	}
	return a.checkTarget(ctx, admin, "the admin value", true)
}

// targetChange describes the binding for the rotation.set audit record:
// the identity, or old → new when a saved binding changed. Identity
// fields are never secret.
func targetChange(old []byte, now rotators.Target, existed bool) string {
	var prev rotators.Target
	if !existed || len(old) == 0 || json.Unmarshal(old, &prev) != nil {
		return "target: " + now.String()
	}
	if prev.Same(now) {
		return "target unchanged: " + now.String()
	}
	return "target changed: " + prev.String() + " → " + now.String()
}

// checkRebind refuses to replace a stored binding with another identity
// unless confirmed: a schedule change must not silently move the rotation
// to the account a value put since names. A rotation without a stored
// binding (saved by an older version) is bound without confirmation.
func checkRebind(old []byte, now rotators.Target) error {
	var prev rotators.Target
	if len(old) == 0 || json.Unmarshal(old, &prev) != nil || prev.Same(now) {
		return nil
	}
	err := prev.Check(now, "the current version", false)
	if err == nil {
		// The current user is allowed, but the identity still changes
		// (e.g. another second user of an alternating pair).
		err = fmt.Errorf("%w: the identity changes from %s to %s", rotators.ErrTargetMismatch, prev, now)
	}
	return fmt.Errorf("%w (%v); to bind the rotation to it, save the settings again with rebind (rotary rotation set --rebind)", ErrRebindNeeded, err)
}
