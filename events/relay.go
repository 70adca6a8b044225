package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/store"
)

// Sink receives outbox events. Deliver gets events in ascending ID order
// (so in order per secret) and returns nil only when all were delivered;
// it must be idempotent (an event may come again after a crash).
type Sink interface {
	Name() string
	Deliver(ctx context.Context, evs []store.OutboxEvent) error
}

// RelayConfig configures a Relay. Store and at least one Sink are required.
type RelayConfig struct {
	Store store.Store
	// Owner names this relay in outbox leases; several daemons sharing a
	// store must use different owners (default: host and pid).
	Owner string
	Sinks []Sink
	// LeaseFor is how long a claimed batch stays this relay's: a relay
	// killed mid-delivery leaves its events to the others after it
	// (default 30s). Poll is how often the outbox is read when nothing
	// woke the relay (default 1s). Batch bounds a claim (default 100).
	LeaseFor, Poll time.Duration
	Batch          int
	// BackoffBase and BackoffMax bound the wait after a failed delivery
	// (defaults 200ms, 5s; exponential with jitter). The cap is also how
	// long a sink that came back (Redis restarted) may wait to be used.
	BackoffBase, BackoffMax time.Duration
	Logger                  *slog.Logger
	Registerer              prometheus.Registerer
	Now                     func() time.Time
}

// Relay delivers the outbox to its sinks at least once, in order per
// secret, on one daemon or many (see doc.go).
type Relay struct {
	cfg  RelayConfig
	log  *slog.Logger
	wake chan struct{}

	delivered *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

// NewRelay checks cfg, fills its defaults and registers the relay's
// metrics.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Store == nil {
		return nil, errors.New("events: relay: Store is required")
	}
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("events: relay: at least one Sink is required")
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = host + "/relay/" + strconv.Itoa(os.Getpid()) + "/" + strconv.FormatUint(rand.Uint64(), 36)
	}
	cfg.LeaseFor = cmp.Or(cfg.LeaseFor, 30*time.Second)
	cfg.Poll = cmp.Or(cfg.Poll, time.Second)
	cfg.Batch = cmp.Or(cfg.Batch, 100)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, 200*time.Millisecond)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, 5*time.Second)
	if cfg.Batch < 1 || cfg.LeaseFor < time.Second || cfg.Poll < time.Millisecond {
		return nil, fmt.Errorf("events: relay: batch %d, lease %s, poll %s: batch must be positive, lease at least 1s, poll at least 1ms",
			cfg.Batch, cfg.LeaseFor, cfg.Poll)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Relay{
		cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotary_outbox_delivered_total", Help: "Outbox events delivered, by sink.",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotary_outbox_delivery_failures_total", Help: "Failed deliveries of an outbox batch, by sink.",
		}, []string{"sink"}),
	}
	for _, s := range cfg.Sinks {
		r.delivered.WithLabelValues(s.Name())
		r.failures.WithLabelValues(s.Name())
	}
	if cfg.Registerer != nil {
		backlog := func() (int, time.Time) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, oldest, err := cfg.Store.OutboxBacklog(ctx)
			if err != nil {
				return 0, time.Time{}
			}
			return n, oldest
		}
		for _, c := range []prometheus.Collector{
			r.delivered, r.failures,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "rotary_outbox_backlog", Help: "Outbox events not yet delivered.",
			}, func() float64 { n, _ := backlog(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "rotary_outbox_oldest_age_seconds", Help: "Age of the oldest undelivered outbox event (0 when none).",
			}, func() float64 {
				_, oldest := backlog()
				if oldest.IsZero() {
					return 0
				}
				return max(0, cfg.Now().Sub(oldest).Seconds())
			}),
		} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("events: relay: metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Wake tells the relay an event was just written: it delivers now, not
// at the next poll. It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		n, err := r.Once(ctx)
		wait := r.cfg.Poll
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			wait = r.backoff(failures)
			r.log.Warn("outbox relay: delivery failed; the events wait in the outbox", "err", err, "retry_in", wait)
		case err == nil:
			failures = 0
			if n == r.cfg.Batch {
				continue // more are waiting
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-r.wake:
			if err != nil {
				// A failing sink keeps its backoff even when woken.
				select {
				case <-ctx.Done():
				case <-t.C:
				}
			}
		}
		t.Stop()
	}
}

func (r *Relay) backoff(failures int) time.Duration {
	d := r.cfg.BackoffBase << min(failures-1, 20)
	if d <= 0 || d > r.cfg.BackoffMax {
		d = r.cfg.BackoffMax
	}
	return d/2 + rand.N(d/2+1) // jitter: [d/2, d]
}

// Once claims one batch, delivers it to every sink and marks it
// delivered. It returns how many events it delivered.
func (r *Relay) Once(ctx context.Context) (int, error) {
	evs, err := r.cfg.Store.ClaimOutbox(ctx, store.ClaimParams{
		Owner: r.cfg.Owner, Now: r.cfg.Now(), LeaseFor: r.cfg.LeaseFor, Limit: r.cfg.Batch,
	})
	if err != nil {
		return 0, fmt.Errorf("claim: %w", err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	for _, s := range r.cfg.Sinks {
		if err := s.Deliver(ctx, evs); err != nil {
			r.failures.WithLabelValues(s.Name()).Inc()
			return 0, fmt.Errorf("sink %s: %w", s.Name(), err)
		}
		r.delivered.WithLabelValues(s.Name()).Add(float64(len(evs)))
	}
	ids := make([]int64, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	if err := r.cfg.Store.MarkDelivered(context.WithoutCancel(ctx), ids, r.cfg.Now().UTC()); err != nil {
		return 0, fmt.Errorf("mark delivered: %w", err)
	}
	return len(evs), nil
}
