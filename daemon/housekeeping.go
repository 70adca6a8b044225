package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/rotary-secrets/rotary/schedules"
	"github.com/rotary-secrets/rotary/store"
)

// storeLocker adapts the store's named locks to the housekeeper.
type storeLocker struct {
	st    store.Store
	owner string
	now   func() time.Time
}

func (l storeLocker) TryLock(ctx context.Context, name string, hold time.Duration) (bool, error) {
	now := l.now().UTC()
	return l.st.TryLock(ctx, name, l.owner, now, now.Add(hold))
}

// housekeepingJobs are the daemon's periodic jobs. Each is safe on
// several daemons at once: a store lock keeps it to one at a time, and
// every job is idempotent besides.
func (d *Daemon) housekeepingJobs() []schedules.Job {
	return []schedules.Job{
		{Name: "purge-secrets", Spec: "@every 1m", Run: func(ctx context.Context) error {
			n, err := d.secrets.PurgeDue(ctx)
			if n > 0 {
				d.log.Info("purged secrets past their recovery window", "count", n)
			}
			return err
		}},
		{Name: "purge-keys", Spec: "@every 1m", Run: func(ctx context.Context) error {
			n, err := d.kms.PurgeDueKeys(ctx)
			if n > 0 {
				d.log.Info("purged master keys past their deletion date", "count", n)
			}
			return err
		}},
		{Name: "rotate-keys", Spec: "@every 1m", Run: func(ctx context.Context) error {
			n, err := d.kms.RotateDueKeys(ctx)
			if n > 0 {
				d.log.Info("rotated master keys due for automatic rotation", "count", n)
			}
			return err
		}},
		{Name: "prune-versions", Spec: "@every 1h", Run: func(ctx context.Context) error {
			_, err := d.secrets.PruneAll(ctx)
			return err
		}},
		{Name: "reclaim-leases", Spec: "@every 10m", Run: d.reclaimLeases},
		// Settings saved by a daemon with a smaller min_rotation_interval:
		// logged once per secret (see rotation.Engine.CheckSchedules).
		{Name: "check-schedules", Spec: "@every 10m", Run: func(ctx context.Context) error {
			_, err := d.engine.CheckSchedules(ctx)
			return err
		}},
		{Name: "trim-outbox", Spec: "@every 10m", Run: func(ctx context.Context) error {
			before := d.cfg.Now().Add(-d.cfg.OutboxRetention)
			if _, err := d.st.TrimOutbox(ctx, before); err != nil {
				return err
			}
			_, err := d.st.TrimHookDeliveries(ctx, before)
			return err
		}},
	}
}

// reclaimLeases clears rotation leases that expired (their daemon died)
// so that status shows them free; the runner would claim them anyway.
// Each clear is one compare-and-swap on the owner and the expiry, so a
// lease renewed or taken since the listing is left alone.
func (d *Daemon) reclaimLeases(ctx context.Context) error {
	rots, err := d.st.ListRotations(ctx, store.ListRotationsParams{})
	if err != nil {
		return err
	}
	now := d.cfg.Now()
	for _, r := range rots {
		if r.LeaseOwner == "" || r.LeaseExpiresAt == nil || r.LeaseExpiresAt.After(now) {
			continue
		}
		err := d.st.ReclaimRotationLease(ctx, r.Secret, r.LeaseOwner, now)
		if err != nil && !errors.Is(err, store.ErrLeaseLost) {
			return err
		}
	}
	return nil
}
