package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/schedules"
	"github.com/rotary-secrets/rotary/store"
)

// rotationQueue adapts the store's rotation records to the schedule
// runner's queue: due rotations are claimed with this daemon's lease.
type rotationQueue struct {
	st       store.Store
	owner    string
	leaseFor time.Duration
	claimed  prometheus.Counter
}

func (q rotationQueue) EarliestDue(ctx context.Context) (time.Time, error) {
	t, err := q.st.EarliestDue(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, schedules.ErrNothingDue
	}
	return t, err
}

func (q rotationQueue) ClaimDue(ctx context.Context, now time.Time, limit int) ([]schedules.Item, error) {
	rots, err := q.st.ClaimDueRotations(ctx, store.ClaimParams{Owner: q.owner, Now: now, LeaseFor: q.leaseFor, Limit: limit})
	if err != nil {
		return nil, err
	}
	items := make([]schedules.Item, 0, len(rots))
	for _, r := range rots {
		it := schedules.Item{Key: r.Secret, Payload: r}
		if r.NextDueAt != nil {
			it.Due = *r.NextDueAt
		}
		items = append(items, it)
	}
	q.claimed.Add(float64(len(items)))
	return items, nil
}

// schedulerMetrics are the scheduler's Prometheus collectors.
type schedulerMetrics struct {
	claimed prometheus.Counter
	results *prometheus.CounterVec
	lag     prometheus.Histogram
}

func newSchedulerMetrics(reg prometheus.Registerer, st store.Store, now func() time.Time, running func() int, failing, unschedulable func(store.Rotation) bool, overdue func(store.Rotation, time.Time) time.Duration) *schedulerMetrics {
	m := &schedulerMetrics{
		claimed: prometheus.NewCounter(prometheus.CounterOpts{Name: "rotary_rotations_claimed_total", Help: "Due rotations claimed by this daemon."}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotary_rotations_total", Help: "Rotation attempts by rotator and result."}, []string{"rotator", "result"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rotary_rotation_start_lag_seconds", Help: "Delay between a rotation's due time and its start.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
	counts := &cachedCounts{st: st, now: now, failing: failing, unschedulable: unschedulable, overdue: overdue}
	reg.MustRegister(m.claimed, m.results, m.lag,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rotary_rotations_running", Help: "Rotations running on this daemon."},
			func() float64 { return float64(running()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rotary_rotations_due", Help: "Enabled rotations whose due time has passed."},
			func() float64 { return counts.get().due }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rotary_rotations_failing", Help: "Secrets whose rotations keep failing."},
			func() float64 { return counts.get().failing }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rotary_rotations_unschedulable",
			Help: "Enabled rotations with a schedule this daemon does not follow (e.g. under its min_rotation_interval); see rotary status.",
		}, func() float64 { return counts.get().unschedulable }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rotary_rotation_overdue_seconds",
			Help: "How long the latest enabled, scheduled rotation is past the time by which it should have succeeded (the first scheduled time after its last success, window included); 0 when none is late.",
		}, func() float64 { return counts.get().overdue }),
	)
	return m
}

type cachedCounts struct {
	mu            sync.Mutex
	st            store.Store
	now           func() time.Time // the daemon's clock, for what is due
	failing       func(store.Rotation) bool
	unschedulable func(store.Rotation) bool
	overdue       func(store.Rotation, time.Time) time.Duration
	at            time.Time
	last          counts
}

type counts struct{ due, failing, unschedulable, overdue float64 }

func (c *cachedCounts) get() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A full read of the rotations, at most every 30 s and only when
	// scraped: about a second of store time at 100,000 schedules.
	if time.Since(c.at) < 30*time.Second {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rots, err := c.st.ListRotations(ctx, store.ListRotationsParams{})
	if err != nil {
		return c.last
	}
	now := c.now()
	c.last = counts{}
	for _, r := range rots {
		if r.Enabled && r.NextDueAt != nil && !r.NextDueAt.After(now) {
			c.last.due++
		}
		if c.failing(r) {
			c.last.failing++
		}
		if c.unschedulable(r) {
			c.last.unschedulable++
		}
		if c.overdue != nil {
			c.last.overdue = max(c.last.overdue, c.overdue(r, now).Seconds())
		}
	}
	c.at = time.Now()
	return c.last
}

// rotationOverdue is how far r is past the time by which it should have
// rotated successfully: the first scheduled time (its window's offset
// included) after its last success; for a rotation that never succeeded,
// its stored next due time. Zero when it is not late, or not on a schedule
// this daemon follows (rotary_rotations_unschedulable counts those).
func rotationOverdue(e *rotation.Engine, r store.Rotation, now time.Time) time.Duration {
	if !r.Enabled || r.Schedule == "" || e.Unschedulable(r) {
		return 0
	}
	spec, err := e.ParseSchedule(r.Schedule, r.Window)
	if err != nil || spec.Manual() {
		return 0
	}
	var expected time.Time
	switch {
	case r.LastRotatedAt != nil:
		expected = spec.Due(r.Secret, spec.Next(*r.LastRotatedAt))
	case r.NextDueAt != nil:
		expected = *r.NextDueAt
	default:
		return 0
	}
	return max(now.Sub(expected), 0)
}

// handleDue runs one claimed rotation.
func (d *Daemon) handleDue(ctx context.Context, it schedules.Item) {
	rot := it.Payload.(store.Rotation)
	if !it.Due.IsZero() {
		d.schedMetrics.lag.Observe(d.cfg.Now().Sub(it.Due).Seconds())
	}
	if _, err := d.engine.RunClaimed(ctx, rot, rotation.RotateParams{Secret: rot.Secret, Trigger: rotation.TriggerScheduled}); err != nil {
		d.log.Debug("scheduled rotation did not succeed", "secret", rot.Secret, "err", err)
	}
}
