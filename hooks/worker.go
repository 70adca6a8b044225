package hooks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// leaseMargin is added to the longest hook timeout to make a delivery's
// lease: a lease outlives every attempt its holder may still be running.
const leaseMargin = 30 * time.Second

// Run claims and delivers due deliveries until ctx ends; deliveries still
// running then are cut off and released for a retry.
func (m *Manager) Run(ctx context.Context) {
	// Deliveries leased under this owner name are a dead predecessor's
	// (a daemon killed mid-delivery and restarted): take them back now
	// rather than after their lease.
	if n, err := m.cfg.Store.ReleaseHookDeliveries(ctx, m.cfg.Owner); err != nil {
		m.log.Warn("hooks: releasing deliveries left leased by a previous run", "err", err)
	} else if n > 0 {
		m.log.Info("hooks: retrying deliveries a previous run left unfinished", "count", n)
	}
	sem := make(chan struct{}, m.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	failures := 0
	for ctx.Err() == nil {
		free := m.cfg.Concurrency - len(sem)
		n, err := 0, error(nil)
		if free > 0 {
			n, err = m.claimAndStart(ctx, free, sem, freed, &wg)
		}
		wait := m.cfg.Poll
		if err != nil && ctx.Err() == nil {
			failures++
			wait = min(m.cfg.Poll<<min(failures, 6), time.Minute)
			m.log.Warn("hooks: claiming deliveries failed", "err", err, "retry_in", wait)
		} else if err == nil {
			failures = 0
			if n > 0 && n == free {
				continue // more may be due
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-m.wake:
		case <-freed:
		}
		t.Stop()
	}
}

func (m *Manager) claimAndStart(ctx context.Context, free int, sem chan struct{}, freed chan struct{}, wg *sync.WaitGroup) (int, error) {
	hooks, err := m.cfg.Store.ListHooks(ctx)
	if err != nil || len(hooks) == 0 {
		return 0, err
	}
	byName := make(map[string]store.Hook, len(hooks))
	longest := time.Duration(0)
	for _, h := range hooks {
		byName[h.Name] = h
		longest = max(longest, cmp.Or(h.Timeout, DefaultTimeout))
	}
	ds, err := m.cfg.Store.ClaimHookDeliveries(ctx, store.ClaimParams{
		Owner: m.cfg.Owner, Now: m.cfg.Now().UTC(), LeaseFor: longest + leaseMargin, Limit: free,
	})
	if err != nil {
		return 0, err
	}
	for _, d := range ds {
		h, ok := byName[d.Hook]
		if !ok { // added after the listing: read it now
			if h, err = m.cfg.Store.GetHook(ctx, d.Hook); err != nil {
				continue // removed meanwhile; its deliveries went with it
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() {
				<-sem
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
			m.deliver(ctx, h, d)
		})
	}
	return len(ds), nil
}

// deliver makes one attempt and records its outcome.
func (m *Manager) deliver(ctx context.Context, h store.Hook, d store.HookDelivery) {
	var ev events.Event
	_ = json.Unmarshal(d.Payload, &ev)
	err := m.call(ctx, h, d, ev)
	now := m.cfg.Now().UTC()
	res := store.HookDeliveryResult{Hook: h.Name, EventID: d.EventID, Owner: d.LeaseOwner, At: now, NextAttemptAt: now}
	log := m.log.With("hook", h.Name, "kind", h.Kind, "event_id", d.EventID, "secret", d.Secret, "attempt", d.Attempts)
	switch {
	case err == nil:
		res.State = store.DeliveryDone
		m.m.deliveries.WithLabelValues(h.Name, "ok").Inc()
		m.m.latency.Observe(max(0, now.Sub(d.EventAt).Seconds()))
		log.Info("hook delivered", "latency", now.Sub(d.EventAt))
	case ctx.Err() != nil:
		// The daemon is stopping: release the delivery for the next start
		// or another daemon, at once.
		res.State, res.Error = store.DeliveryPending, "interrupted: the daemon stopped during the attempt"
		log.Info("hook delivery interrupted by shutdown; it will be retried")
	case d.Attempts >= m.cfg.MaxAttempts || now.Sub(d.EventAt) >= m.cfg.MaxAge:
		res.State, res.Error = store.DeliveryFailed, limitString("gave up: "+err.Error(), 500)
		m.m.deliveries.WithLabelValues(h.Name, "given_up").Inc()
		log.Warn("hook delivery given up; the hook is marked failing", "err", err.Error(),
			"max_attempts", m.cfg.MaxAttempts, "max_age", m.cfg.MaxAge)
	default:
		res.State, res.Error = store.DeliveryPending, limitString(err.Error(), 500)
		res.NextAttemptAt = now.Add(m.backoff(d.Attempts))
		m.m.deliveries.WithLabelValues(h.Name, "retry").Inc()
		log.Warn("hook delivery failed; will retry", "err", err.Error(), "next_attempt", res.NextAttemptAt)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := m.cfg.Store.FinishHookDelivery(fctx, res); ferr != nil {
		if errors.Is(ferr, store.ErrLeaseLost) {
			log.Warn("hook delivery: lease lost meanwhile (another daemon took it over); its outcome is not recorded")
			return
		}
		log.Error("hook delivery: recording the outcome failed; it will be retried after its lease", "err", ferr)
	}
}

// backoff is the wait before retry number attempts+1: exponential from
// BackoffBase, capped at BackoffMax, with jitter in [d/2, d].
func (m *Manager) backoff(attempts int) time.Duration {
	d := m.cfg.BackoffBase << min(max(attempts-1, 0), 30)
	if d <= 0 || d > m.cfg.BackoffMax {
		d = m.cfg.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

func limitString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
