package hooks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// Sink returns the relay sink that fans events out into deliveries.
func (m *Manager) Sink() events.Sink { return sink{m} }

type sink struct{ m *Manager }

func (sink) Name() string { return "hooks" }

// Deliver writes one pending delivery per matching hook and event, in one
// transaction, then caps each touched hook's backlog. Idempotent: a
// delivery that exists is left alone.
func (s sink) Deliver(ctx context.Context, evs []store.OutboxEvent) error {
	m := s.m
	hooks, err := m.cfg.Store.ListHooks(ctx)
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	if len(hooks) == 0 {
		return nil
	}
	now := m.cfg.Now().UTC()
	var ds []store.HookDelivery
	touched := map[string]bool{}
	for _, e := range evs {
		var payload []byte
		for _, h := range hooks {
			if !matches(h, e.Type, e.Secret) {
				continue
			}
			if payload == nil {
				payload = eventJSON(e)
			}
			ds = append(ds, store.HookDelivery{
				Hook: h.Name, EventID: e.ID, Secret: e.Secret, Payload: payload, EventAt: e.CreatedAt,
				State: store.DeliveryPending, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
			})
			touched[h.Name] = true
		}
	}
	if len(ds) == 0 {
		return nil
	}
	var dropped map[string]int
	err = m.cfg.Store.InTx(ctx, func(tx store.Ops) error {
		dropped = map[string]int{} // fn may run again on PostgreSQL
		if err := tx.AddHookDeliveries(ctx, ds); err != nil {
			return err
		}
		for name := range touched {
			n, err := tx.CapHookBacklog(ctx, name, m.cfg.MaxBacklog, now)
			if err != nil {
				return err
			}
			if n > 0 {
				dropped[name] = n
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	for name, n := range dropped {
		m.m.dropped.WithLabelValues(name).Add(float64(n))
		m.log.Warn("hook backlog over its cap: dropped the oldest pending deliveries",
			"hook", name, "dropped", n, "cap", m.cfg.MaxBacklog)
	}
	m.Wake()
	return nil
}

// eventJSON is the event as hooks get it: the outbox payload with the
// event's id (the relay's idempotency key) filled in.
func eventJSON(e store.OutboxEvent) []byte {
	var ev events.Event
	if err := json.Unmarshal(e.Payload, &ev); err != nil {
		ev = events.Event{Event: e.Type, Secret: e.Secret, Version: e.Version, At: e.CreatedAt.UTC()}
	}
	ev.ID = e.ID
	return ev.Marshal()
}
