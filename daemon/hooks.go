package daemon

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/events"
	rsink "github.com/rotary-secrets/rotary/events/redis"
	"github.com/rotary-secrets/rotary/hooks"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
)

// DefaultOutboxRetention is how long delivered outbox events are kept.
const DefaultOutboxRetention = 24 * time.Hour

// eventParts are the outbox relay and the function hooks it feeds.
type eventParts struct {
	relay *events.Relay
	hooks *hooks.Manager
	// hookPlugins calls hook plugins; nil until the plugin supervisor is
	// wired in (plugin hooks then fail and are retried).
	hookPlugins hooks.PluginCaller
	// redis publishes events when the config names a Redis.
	redis *rsink.Sink

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (c *Config) fillEvents() error {
	c.OutboxRetention = cmp.Or(c.OutboxRetention, DefaultOutboxRetention)
	switch {
	case c.OutboxRetention < time.Minute:
		return fmt.Errorf("config: outbox_retention %s: must be at least 1m", c.OutboxRetention)
	case c.HookMaxAttempts < 0:
		return fmt.Errorf("config: hook_max_attempts %d: must not be negative", c.HookMaxAttempts)
	case c.HookMaxAge < 0 || (c.HookMaxAge > 0 && c.HookMaxAge < time.Minute):
		return fmt.Errorf("config: hook_max_age %s: must be at least 1m", c.HookMaxAge)
	case c.HookMaxBacklog < 0:
		return fmt.Errorf("config: hook_max_backlog %d: must not be negative", c.HookMaxBacklog)
	}
	return nil
}

// hookKey derives the key that seals webhook signing secrets.
func hookKey(root sensitive.Bytes) ([]byte, error) {
	k, err := kms.DeriveKey(root, kms.LabelHookSecrets)
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	return append([]byte(nil), k.Reveal()...), nil
}

// newHooks builds the hook manager (before the API, which stores hooks
// through it).
func (d *Daemon) newHooks(key []byte) error {
	var err error
	d.ev.hooks, err = hooks.New(hooks.Config{
		Store: d.st, Owner: d.engine.Owner() + "/hooks", Key: key, Plugins: d.ev.hookPlugins,
		MaxAttempts: d.cfg.HookMaxAttempts, MaxAge: d.cfg.HookMaxAge, MaxBacklog: d.cfg.HookMaxBacklog,
		Logger: d.log.With("component", "hooks"), Now: d.cfg.Now,
	})
	clear(key)
	return err
}

// newRelay builds the outbox relay and registers the event metrics.
func (d *Daemon) newRelay(reg prometheus.Registerer) error {
	if err := d.ev.hooks.Register(reg); err != nil {
		return err
	}
	sinks := []events.Sink{d.ev.hooks.Sink()}
	if d.cfg.Redis.Enabled() {
		rc, err := d.cfg.Redis.sinkConfig()
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if d.ev.redis, err = rsink.New(rc); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		sinks = append(sinks, d.ev.redis)
	}
	var err error
	d.ev.relay, err = events.NewRelay(events.RelayConfig{
		Store: d.st, Owner: d.engine.Owner() + "/relay", Sinks: sinks,
		Logger: d.log.With("component", "relay"), Registerer: reg, Now: d.cfg.Now,
	})
	return err
}

// startEvents runs the relay and the hook workers until stopEvents.
func (d *Daemon) startEvents(ctx context.Context) {
	ctx, d.ev.cancel = context.WithCancel(context.WithoutCancel(ctx))
	d.ev.wg.Go(func() { d.ev.relay.Run(ctx) })
	d.ev.wg.Go(func() { d.ev.hooks.Run(ctx) })
}

// stopEvents stops them; a delivery cut off is released for a retry.
func (d *Daemon) stopEvents() {
	if d.ev.cancel != nil {
		d.ev.cancel()
		d.ev.wg.Wait()
	}
	if d.ev.redis != nil {
		_ = d.ev.redis.Close()
	}
}

// wakeRelay tells the relay an event was just committed.
func (d *Daemon) wakeRelay() {
	if d.ev.relay != nil {
		d.ev.relay.Wake()
	}
	if d.api != nil {
		d.api.EventsWritten()
	}
}

// wakingStore is the store as secrets.Service sees it: after a
// transaction that appended an outbox event commits, it wakes the relay,
// so hooks and subscribers hear of a put or a rotation at once instead of
// at the next poll (the poll remains, for events other daemons write).
type wakingStore struct {
	store.Store
	wake func()
}

func (s wakingStore) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	wrote := false
	err := s.Store.InTx(ctx, func(tx store.Ops) error {
		return fn(wakingOps{Ops: tx, wrote: &wrote})
	})
	if err == nil && wrote {
		s.wake()
	}
	return err
}

func (s wakingStore) AppendOutbox(ctx context.Context, e store.OutboxEvent) (int64, error) {
	id, err := s.Store.AppendOutbox(ctx, e)
	if err == nil {
		s.wake()
	}
	return id, err
}

type wakingOps struct {
	store.Ops
	wrote *bool
}

func (o wakingOps) AppendOutbox(ctx context.Context, e store.OutboxEvent) (int64, error) {
	id, err := o.Ops.AppendOutbox(ctx, e)
	if err == nil {
		*o.wrote = true
	}
	return id, err
}
