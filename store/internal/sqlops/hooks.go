package sqlops

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// --- plugins and hooks ---

func (o *Ops) PutPlugin(ctx context.Context, p store.Plugin) error {
	args, err := o.pluginArgs(p)
	if err != nil {
		return fmt.Errorf("put plugin %q: %w", p.Name, err)
	}
	_, err = o.w().ExecContext(ctx, `INSERT INTO plugins (`+pluginCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256, env = excluded.env,
			created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version,
			secret_types = excluded.secret_types, kinds = excluded.kinds, identity_fields = excluded.identity_fields,
			last_start_at = excluded.last_start_at, status = excluded.status, last_error = excluded.last_error`,
		args...)
	if err != nil {
		return fmt.Errorf("put plugin %q: %w", p.Name, o.translate(err))
	}
	return nil
}

const pluginCols = `name, path, sha256, env, created_at, updated_at, version, secret_types, kinds,
	identity_fields, last_start_at, status, last_error`

func (o *Ops) pluginArgs(p store.Plugin) ([]any, error) {
	lists := make([]any, 4)
	for i, l := range [][]string{p.Env, p.SecretTypes, p.Kinds, p.IdentityFields} {
		v, err := jsonArg(l, len(l) == 0)
		if err != nil {
			return nil, err
		}
		lists[i] = v
	}
	return []any{p.Name, p.Path, p.SHA256, lists[0], o.d.Time(p.CreatedAt), o.d.Time(p.UpdatedAt), p.Version,
		lists[1], lists[2], lists[3], o.tpa(p.LastStartAt), p.Status, p.LastError}, nil
}

func pluginDest(p *store.Plugin) []any {
	return []any{&p.Name, &p.Path, &p.SHA256, jsonCol[[]string]{P: &p.Env}, tcol{P: &p.CreatedAt}, tcol{P: &p.UpdatedAt},
		&p.Version, jsonCol[[]string]{P: &p.SecretTypes}, jsonCol[[]string]{P: &p.Kinds},
		jsonCol[[]string]{P: &p.IdentityFields}, ntcol{P: &p.LastStartAt}, &p.Status, &p.LastError}
}

func (o *Ops) GetPlugin(ctx context.Context, name string) (store.Plugin, error) {
	var p store.Plugin
	err := o.r().QueryRowContext(ctx, `SELECT `+pluginCols+` FROM plugins WHERE name = ?`, name).
		Scan(pluginDest(&p)...)
	if err != nil {
		return store.Plugin{}, fmt.Errorf("get plugin %q: %w", name, o.translate(err))
	}
	return p, nil
}

func (o *Ops) ListPlugins(ctx context.Context) ([]store.Plugin, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+pluginCols+` FROM plugins ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list plugins: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list plugins", pluginDest)
}

func (o *Ops) DeletePlugin(ctx context.Context, name string) error {
	res, err := o.w().ExecContext(ctx, `DELETE FROM plugins WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete plugin %q: %w", name, o.translate(err))
	}
	return mustAffect(res, "delete plugin %q", name)
}

const hookCols = `name, on_event, secrets_glob, kind, target, shell, timeout, sealed_secret, created_at,
	delivered, failures, dropped, last_delivery_at, last_error, failing`

func hookDest(h *store.Hook) []any {
	return []any{&h.Name, &h.On, &h.Secrets, &h.Kind, &h.Target, &h.Shell, (*int64)(&h.Timeout),
		bcol{P: &h.SealedSecret}, tcol{P: &h.CreatedAt}, &h.Delivered, &h.Failures, &h.Dropped,
		ntcol{P: &h.LastDeliveryAt}, &h.LastError, &h.Failing}
}

func (o *Ops) RecordPluginStart(ctx context.Context, p store.Plugin) error {
	args, err := o.pluginArgs(p)
	if err != nil {
		return fmt.Errorf("record plugin start %q: %w", p.Name, err)
	}
	// args: name 0, ..., version 6, secret_types 7, kinds 8, identity_fields 9,
	// last_start_at 10, status 11, last_error 12.
	res, err := o.w().ExecContext(ctx, `UPDATE plugins SET version = ?, secret_types = ?, kinds = ?,
		identity_fields = ?, last_start_at = ?, status = ?, last_error = ? WHERE name = ?`,
		args[6], args[7], args[8], args[9], args[10], args[11], args[12], p.Name)
	if err != nil {
		return fmt.Errorf("record plugin start %q: %w", p.Name, o.translate(err))
	}
	return mustAffect(res, "record plugin start %q", p.Name)
}

func (o *Ops) PutHook(ctx context.Context, h store.Hook) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO hooks (name, on_event, secrets_glob, kind, target, shell, timeout,
			sealed_secret, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET on_event = excluded.on_event, secrets_glob = excluded.secrets_glob,
			kind = excluded.kind, target = excluded.target, shell = excluded.shell, timeout = excluded.timeout,
			sealed_secret = excluded.sealed_secret, created_at = excluded.created_at`,
		h.Name, h.On, h.Secrets, h.Kind, h.Target, h.Shell, int64(h.Timeout), bytesArg(h.SealedSecret), o.d.Time(h.CreatedAt))
	if err != nil {
		return fmt.Errorf("put hook %q: %w", h.Name, o.translate(err))
	}
	return nil
}

func (o *Ops) GetHook(ctx context.Context, name string) (store.Hook, error) {
	var h store.Hook
	err := o.r().QueryRowContext(ctx, `SELECT `+hookCols+`,
		(SELECT COUNT(*) FROM hook_deliveries d WHERE d.hook = hooks.name AND d.state = 'pending')
		FROM hooks WHERE name = ?`, name).Scan(append(hookDest(&h), &h.Backlog)...)
	if err != nil {
		return store.Hook{}, fmt.Errorf("get hook %q: %w", name, o.translate(err))
	}
	return h, nil
}

func (o *Ops) ListHooks(ctx context.Context) ([]store.Hook, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+hookCols+`,
		(SELECT COUNT(*) FROM hook_deliveries d WHERE d.hook = hooks.name AND d.state = 'pending')
		FROM hooks ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list hooks", func(h *store.Hook) []any { return append(hookDest(h), &h.Backlog) })
}

func (o *Ops) DeleteHook(ctx context.Context, name string) error {
	return o.atomic(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, `DELETE FROM hooks WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete hook %q: %w", name, o.translate(err))
		}
		if err := mustAffect(res, "delete hook %q", name); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM hook_deliveries WHERE hook = ?`, name); err != nil {
			return fmt.Errorf("delete hook %q: deliveries: %w", name, o.translate(err))
		}
		return nil
	})
}

// --- hook deliveries ---

// DeliveryCols are a hook delivery's columns, in DeliveryDest's order.
const DeliveryCols = `hook, event_id, secret, payload, event_at, state, attempts, next_attempt_at, last_error,
	lease_owner, lease_expires_at, created_at, updated_at`

// DeliveryDest is where a row of DeliveryCols scans to.
func DeliveryDest(d *store.HookDelivery) []any {
	return []any{&d.Hook, &d.EventID, &d.Secret, bcol{P: &d.Payload}, tcol{P: &d.EventAt}, &d.State, &d.Attempts,
		tcol{P: &d.NextAttemptAt}, &d.LastError, &d.LeaseOwner, ntcol{P: &d.LeaseExpiresAt}, tcol{P: &d.CreatedAt},
		tcol{P: &d.UpdatedAt}}
}

func (o *Ops) AddHookDeliveries(ctx context.Context, ds []store.HookDelivery) error {
	if len(ds) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q Querier) error {
		for _, d := range ds {
			state := cmp.Or(d.State, store.DeliveryPending)
			_, err := q.ExecContext(ctx, `INSERT INTO hook_deliveries (`+DeliveryCols+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hook, event_id) DO NOTHING`,
				d.Hook, d.EventID, d.Secret, bytesArg(d.Payload), o.d.Time(d.EventAt), state, d.Attempts,
				o.d.Time(d.NextAttemptAt), d.LastError, d.LeaseOwner, o.tpa(d.LeaseExpiresAt), o.d.Time(d.CreatedAt), o.d.Time(d.UpdatedAt))
			if err != nil {
				return fmt.Errorf("add hook delivery %q/%d: %w", d.Hook, d.EventID, o.translate(err))
			}
		}
		return nil
	})
}

// ClaimHookDeliveries runs the dialect's claim where claimers serialize.
func (o *Ops) ClaimHookDeliveries(ctx context.Context, p store.ClaimParams) ([]store.HookDelivery, error) {
	var ds []store.HookDelivery
	err := o.serialized(ctx, "hook_deliveries", "claim hook deliveries", func(q Querier) error {
		rows, err := o.d.ClaimHookDeliveries(ctx, q, p)
		if err != nil {
			return fmt.Errorf("claim hook deliveries: %w", o.translate(err))
		}
		ds, err = Collect(o.d, rows, "claim hook deliveries", DeliveryDest)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].EventID != ds[j].EventID {
			return ds[i].EventID < ds[j].EventID
		}
		return ds[i].Hook < ds[j].Hook
	})
	return ds, nil
}

func (o *Ops) FinishHookDelivery(ctx context.Context, r store.HookDeliveryResult) error {
	var hookSQL string
	var args []any
	switch r.State {
	case store.DeliveryDone:
		hookSQL = `UPDATE hooks SET delivered = delivered + 1, last_delivery_at = ?, failing = false, last_error = '' WHERE name = ?`
		args = []any{o.d.Time(r.At), r.Hook}
	case store.DeliveryPending:
		hookSQL = `UPDATE hooks SET failures = failures + 1, last_error = ? WHERE name = ?`
		args = []any{r.Error, r.Hook}
	case store.DeliveryFailed:
		hookSQL = `UPDATE hooks SET failures = failures + 1, last_error = ?, failing = true WHERE name = ?`
		args = []any{r.Error, r.Hook}
	default:
		return fmt.Errorf("finish hook delivery %q/%d: unknown state %q", r.Hook, r.EventID, r.State)
	}
	return o.atomic(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, `UPDATE hook_deliveries SET state = ?, next_attempt_at = ?, last_error = ?,
				lease_owner = '', lease_expires_at = NULL, updated_at = ?
			WHERE hook = ? AND event_id = ? AND state = 'pending' AND lease_owner = ?`,
			r.State, o.d.Time(r.NextAttemptAt), r.Error, o.d.Time(r.At), r.Hook, r.EventID, r.Owner)
		if err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, o.translate(err))
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, err)
		} else if n == 0 {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, store.ErrLeaseLost)
		}
		if _, err := q.ExecContext(ctx, hookSQL, args...); err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: hook: %w", r.Hook, r.EventID, o.translate(err))
		}
		return nil
	})
}

func (o *Ops) CapHookBacklog(ctx context.Context, hook string, max int, now time.Time) (int, error) {
	var dropped int
	err := o.atomic(ctx, func(q Querier) error {
		// Claims must not lease what is being dropped.
		if lock := o.d.ClaimLock("hook_deliveries"); lock != "" {
			if _, err := q.ExecContext(ctx, lock); err != nil {
				return fmt.Errorf("cap hook backlog %q: lock: %w", hook, o.translate(err))
			}
		}
		var n int
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM hook_deliveries WHERE hook = ? AND state = 'pending'`,
			hook).Scan(&n); err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, o.translate(err))
		}
		if n <= max {
			return nil
		}
		res, err := q.ExecContext(ctx, `UPDATE hook_deliveries SET state = 'dropped', updated_at = ?,
				last_error = 'dropped: backlog over its cap'
			WHERE hook = ? AND event_id IN (
				SELECT event_id FROM hook_deliveries
				WHERE hook = ? AND state = 'pending'
					AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at <= ?)
				ORDER BY event_id LIMIT ?)`, o.d.Time(now), hook, hook, o.d.Time(now), n-max)
		if err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, o.translate(err))
		}
		k, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, err)
		}
		dropped = int(k)
		if _, err := q.ExecContext(ctx, `UPDATE hooks SET dropped = dropped + ? WHERE name = ?`, dropped, hook); err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, o.translate(err))
		}
		return nil
	})
	return dropped, err
}

func (o *Ops) ReleaseHookDeliveries(ctx context.Context, owner string) (int, error) {
	res, err := o.w().ExecContext(ctx, `UPDATE hook_deliveries SET lease_owner = '', lease_expires_at = NULL
		WHERE state = 'pending' AND lease_owner = ?`, owner)
	if err != nil {
		return 0, fmt.Errorf("release hook deliveries of %q: %w", owner, o.translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release hook deliveries of %q: %w", owner, err)
	}
	return int(n), nil
}

func (o *Ops) TrimHookDeliveries(ctx context.Context, before time.Time) (int, error) {
	res, err := o.w().ExecContext(ctx, `DELETE FROM hook_deliveries WHERE state <> 'pending' AND updated_at < ?`, o.d.Time(before))
	if err != nil {
		return 0, fmt.Errorf("trim hook deliveries: %w", o.translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trim hook deliveries: %w", err)
	}
	return int(n), nil
}

// --- named locks ---

func (o *Ops) TryLock(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	rows, err := o.w().QueryContext(ctx, `INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE locks.owner = excluded.owner OR locks.expires_at <= ?
		RETURNING owner`, name, owner, o.d.Time(until), o.d.Time(now))
	if err != nil {
		return false, fmt.Errorf("try lock %q: %w", name, o.translate(err))
	}
	got, err := collectScalar[string](o.d, rows, "try lock")
	if err != nil {
		return false, err
	}
	return len(got) == 1, nil
}

func (o *Ops) Unlock(ctx context.Context, name, owner string) error {
	if _, err := o.w().ExecContext(ctx, `DELETE FROM locks WHERE name = ? AND owner = ?`, name, owner); err != nil {
		return fmt.Errorf("unlock %q: %w", name, o.translate(err))
	}
	return nil
}
