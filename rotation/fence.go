package rotation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// ErrLeaseLapsed stops a run whose lease may have expired: no renewal
// succeeded within the lease minus its safety margin (Config.LeaseMargin).
// It wraps store.ErrLeaseLost.
var ErrLeaseLapsed = fmt.Errorf("the rotation lease may have lapsed (no successful renewal in time); stopped before touching the target: %w", store.ErrLeaseLost)

// fence knows until when this engine's lease on one secret is known to be
// valid: the expiry it last wrote (by its claim or a renewal) minus the
// margin. The rotator is called only while the fence holds (see guarded).
type fence struct {
	now    func() time.Time
	margin time.Duration

	mu         sync.Mutex
	validUntil time.Time
	lost       bool
	released   bool // the run's last commit released the lease
}

// markReleased records that the lease was released inside the run's
// last commit: nothing is left to renew or release.
func (f *fence) markReleased() {
	f.mu.Lock()
	f.released = true
	f.mu.Unlock()
}

func (f *fence) isReleased() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.released
}

// renewed records a lease written to expire at expiry.
func (f *fence) renewed(expiry time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := expiry.Add(-f.margin); t.After(f.validUntil) {
		f.validUntil = t
	}
}

func (f *fence) markLost() {
	f.mu.Lock()
	f.lost = true
	f.mu.Unlock()
}

// check returns nil while the lease is known valid; a nil fence (settings
// checks, which hold no lease) always holds.
func (f *fence) check() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost {
		return fmt.Errorf("another daemon took the rotation: %w", store.ErrLeaseLost)
	}
	if !f.now().Before(f.validUntil) {
		return ErrLeaseLapsed
	}
	return nil
}

// remaining is how long the fence holds from now (at least a millisecond,
// for timers).
func (f *fence) remaining() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(f.validUntil.Sub(f.now()), time.Millisecond)
}

type fenceKey struct{}

// fenceFrom returns the fence of the run ctx belongs to, or nil.
func fenceFrom(ctx context.Context) *fence {
	f, _ := ctx.Value(fenceKey{}).(*fence)
	return f
}

// holdLease keeps this engine's lease on rot's secret while the run
// lasts. It renews the lease every LeaseFor/6 and cancels the returned
// context (cause: ErrLeaseLapsed, or store.ErrLeaseLost) as soon as the
// lease is lost or may have lapsed, even while a renewal hangs on an
// unreachable store. The context carries the run's fence. stop ends the
// renewals and waits for them.
func (e *Engine) holdLease(ctx context.Context, rot store.Rotation) (_ context.Context, stop func()) {
	f := &fence{now: e.now, margin: e.cfg.LeaseMargin}
	if rot.LeaseExpiresAt != nil {
		f.renewed(*rot.LeaseExpiresAt)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	ctx = context.WithValue(ctx, fenceKey{}, f)
	secret, owner := rot.Secret, e.cfg.Owner
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		interval := max(e.cfg.LeaseFor/6, time.Millisecond)
		tick := e.cfg.After(interval)
		lapse := e.cfg.After(f.remaining())
		type result struct {
			until time.Time
			err   error
		}
		results := make(chan result, 1) // one renewal in flight at a time
		inFlight := false
		stopRun := func(err error) {
			if errors.Is(err, ErrLeaseLapsed) {
				e.log.Warn("rotation lease may have lapsed (no successful renewal within the lease minus its margin); stopping the run before it touches the target again",
					"secret", secret, "lease", e.cfg.LeaseFor, "margin", e.cfg.LeaseMargin)
			} else {
				e.log.Warn("lost the rotation lease to another daemon; stopping", "secret", secret)
			}
			cancel(err)
		}
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-lapse:
				if err := f.check(); err != nil {
					stopRun(err)
					return
				}
				lapse = e.cfg.After(f.remaining())
			case <-tick:
				tick = e.cfg.After(interval)
				if inFlight {
					continue
				}
				inFlight = true
				until := e.now().Add(e.cfg.LeaseFor)
				go func() {
					e.failpoint("lease-renew")
					// A slow renewal that succeeds still counts (from until,
					// computed before the call), so it may take a while.
					rctx, rcancel := context.WithTimeout(ctx, e.cfg.LeaseFor/3)
					defer rcancel()
					results <- result{until, e.st.RenewRotationLease(rctx, secret, owner, until)}
				}()
			case r := <-results:
				inFlight = false
				switch {
				case r.err == nil:
					f.renewed(r.until)
					lapse = e.cfg.After(f.remaining())
				case errors.Is(r.err, store.ErrLeaseLost) && f.isReleased():
					return // released by the run's last commit, in a race with this renewal
				case errors.Is(r.err, store.ErrLeaseLost):
					f.markLost()
					stopRun(fmt.Errorf("another daemon took the rotation: %w", store.ErrLeaseLost))
					return
				default:
					e.log.Warn("renew rotation lease failed; retrying", "secret", secret, "err", r.err)
				}
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			<-finished
			cancel(nil)
		})
	}
}

// fenced is the fencing check of a step's commit: inside tx, this engine
// must still hold an unexpired lease on the secret, or the transaction
// rolls back with store.ErrLeaseLost.
func (e *Engine) fenced(ctx context.Context, tx store.Ops, secret string) error {
	return tx.CheckRotationLease(ctx, secret, e.cfg.Owner, e.now().UTC())
}
