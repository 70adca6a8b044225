package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlcol"
)

// --- plugins and hooks ---

func (o *ops) PutPlugin(ctx context.Context, p store.Plugin) error {
	args, err := pluginArgs(p)
	if err != nil {
		return fmt.Errorf("put plugin %q: %w", p.Name, err)
	}
	_, err = o.w().ExecContext(ctx, `INSERT INTO plugins (`+pluginCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (name) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256, env = excluded.env,
			created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version,
			secret_types = excluded.secret_types, kinds = excluded.kinds, identity_fields = excluded.identity_fields,
			last_start_at = excluded.last_start_at, status = excluded.status, last_error = excluded.last_error`,
		args...)
	if err != nil {
		return fmt.Errorf("put plugin %q: %w", p.Name, translate(err))
	}
	return nil
}

const pluginCols = `name, path, sha256, env, created_at, updated_at, version, secret_types, kinds,
	identity_fields, last_start_at, status, last_error`

func pluginArgs(p store.Plugin) ([]any, error) {
	lists := make([]any, 4)
	for i, l := range [][]string{p.Env, p.SecretTypes, p.Kinds, p.IdentityFields} {
		v, err := jsonArg(l, len(l) == 0)
		if err != nil {
			return nil, err
		}
		lists[i] = v
	}
	return []any{p.Name, p.Path, p.SHA256, lists[0], ta(p.CreatedAt), ta(p.UpdatedAt), p.Version,
		lists[1], lists[2], lists[3], tpa(p.LastStartAt), p.Status, p.LastError}, nil
}

func pluginDest(p *store.Plugin) []any {
	return []any{&p.Name, &p.Path, &p.SHA256, jsonCol[[]string]{P: &p.Env}, tcol{&p.CreatedAt}, tcol{&p.UpdatedAt},
		&p.Version, jsonCol[[]string]{P: &p.SecretTypes}, jsonCol[[]string]{P: &p.Kinds},
		jsonCol[[]string]{P: &p.IdentityFields}, ntcol{&p.LastStartAt}, &p.Status, &p.LastError}
}

func (o *ops) GetPlugin(ctx context.Context, name string) (store.Plugin, error) {
	var p store.Plugin
	err := o.r().QueryRowContext(ctx, `SELECT `+pluginCols+` FROM plugins WHERE name = $1`, name).
		Scan(pluginDest(&p)...)
	if err != nil {
		return store.Plugin{}, fmt.Errorf("get plugin %q: %w", name, translate(err))
	}
	return p, nil
}

func (o *ops) ListPlugins(ctx context.Context) ([]store.Plugin, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+pluginCols+` FROM plugins ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list plugins: %w", translate(err))
	}
	return collect(rows, "list plugins", pluginDest)
}

func (o *ops) DeletePlugin(ctx context.Context, name string) error {
	res, err := o.w().ExecContext(ctx, `DELETE FROM plugins WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("delete plugin %q: %w", name, translate(err))
	}
	return mustAffect(res, "delete plugin %q", name)
}

const hookCols = `name, on_event, secrets_glob, kind, target, shell, timeout, sealed_secret, created_at,
	delivered, failures, dropped, last_delivery_at, last_error, failing`

func hookDest(h *store.Hook) []any {
	return []any{&h.Name, &h.On, &h.Secrets, &h.Kind, &h.Target, &h.Shell, (*int64)(&h.Timeout),
		bcol{P: &h.SealedSecret}, tcol{&h.CreatedAt}, &h.Delivered, &h.Failures, &h.Dropped,
		ntcol{&h.LastDeliveryAt}, &h.LastError, &h.Failing}
}

func (o *ops) RecordPluginStart(ctx context.Context, p store.Plugin) error {
	args, err := pluginArgs(p)
	if err != nil {
		return fmt.Errorf("record plugin start %q: %w", p.Name, err)
	}
	// args: name 0, ..., version 6, secret_types 7, kinds 8, identity_fields 9,
	// last_start_at 10, status 11, last_error 12.
	res, err := o.w().ExecContext(ctx, `UPDATE plugins SET version = $1, secret_types = $2, kinds = $3,
		identity_fields = $4, last_start_at = $5, status = $6, last_error = $7 WHERE name = $8`,
		args[6], args[7], args[8], args[9], args[10], args[11], args[12], p.Name)
	if err != nil {
		return fmt.Errorf("record plugin start %q: %w", p.Name, translate(err))
	}
	return mustAffect(res, "record plugin start %q", p.Name)
}

func (o *ops) PutHook(ctx context.Context, h store.Hook) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO hooks (name, on_event, secrets_glob, kind, target, shell, timeout,
			sealed_secret, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (name) DO UPDATE SET on_event = excluded.on_event, secrets_glob = excluded.secrets_glob,
			kind = excluded.kind, target = excluded.target, shell = excluded.shell, timeout = excluded.timeout,
			sealed_secret = excluded.sealed_secret, created_at = excluded.created_at`,
		h.Name, h.On, h.Secrets, h.Kind, h.Target, h.Shell, int64(h.Timeout), bytesArg(h.SealedSecret), ta(h.CreatedAt))
	if err != nil {
		return fmt.Errorf("put hook %q: %w", h.Name, translate(err))
	}
	return nil
}

func (o *ops) GetHook(ctx context.Context, name string) (store.Hook, error) {
	var h store.Hook
	err := o.r().QueryRowContext(ctx, `SELECT `+hookCols+`,
		(SELECT COUNT(*) FROM hook_deliveries d WHERE d.hook = hooks.name AND d.state = 'pending')
		FROM hooks WHERE name = $1`, name).Scan(append(hookDest(&h), &h.Backlog)...)
	if err != nil {
		return store.Hook{}, fmt.Errorf("get hook %q: %w", name, translate(err))
	}
	return h, nil
}

func (o *ops) ListHooks(ctx context.Context) ([]store.Hook, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+hookCols+`,
		(SELECT COUNT(*) FROM hook_deliveries d WHERE d.hook = hooks.name AND d.state = 'pending')
		FROM hooks ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", translate(err))
	}
	return collect(rows, "list hooks", func(h *store.Hook) []any { return append(hookDest(h), &h.Backlog) })
}

func (o *ops) DeleteHook(ctx context.Context, name string) error {
	return o.atomic(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `DELETE FROM hooks WHERE name = $1`, name)
		if err != nil {
			return fmt.Errorf("delete hook %q: %w", name, translate(err))
		}
		if err := mustAffect(res, "delete hook %q", name); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM hook_deliveries WHERE hook = $1`, name); err != nil {
			return fmt.Errorf("delete hook %q: deliveries: %w", name, translate(err))
		}
		return nil
	})
}

// --- hook deliveries ---

const deliveryCols = `hook, event_id, secret, payload, event_at, state, attempts, next_attempt_at, last_error,
	lease_owner, lease_expires_at, created_at, updated_at`

func deliveryDest(d *store.HookDelivery) []any {
	return []any{&d.Hook, &d.EventID, &d.Secret, bcol{P: &d.Payload}, tcol{&d.EventAt}, &d.State, &d.Attempts,
		tcol{&d.NextAttemptAt}, &d.LastError, &d.LeaseOwner, ntcol{&d.LeaseExpiresAt}, tcol{&d.CreatedAt},
		tcol{&d.UpdatedAt}}
}

func (o *ops) AddHookDeliveries(ctx context.Context, ds []store.HookDelivery) error {
	if len(ds) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q querier) error {
		for _, d := range ds {
			state := cmp.Or(d.State, store.DeliveryPending)
			_, err := q.ExecContext(ctx, `INSERT INTO hook_deliveries (`+deliveryCols+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (hook, event_id) DO NOTHING`,
				d.Hook, d.EventID, d.Secret, bytesArg(d.Payload), ta(d.EventAt), state, d.Attempts,
				ta(d.NextAttemptAt), d.LastError, d.LeaseOwner, tpa(d.LeaseExpiresAt), ta(d.CreatedAt), ta(d.UpdatedAt))
			if err != nil {
				return fmt.Errorf("add hook delivery %q/%d: %w", d.Hook, d.EventID, translate(err))
			}
		}
		return nil
	})
}

func (o *ops) ClaimHookDeliveries(ctx context.Context, p store.ClaimParams) ([]store.HookDelivery, error) {
	var ds []store.HookDelivery
	err := o.atomic(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, dialect{}.ClaimLock("hook_deliveries")); err != nil {
			return fmt.Errorf("claim hook deliveries: lock: %w", translate(err))
		}
		rows, err := q.QueryContext(ctx, `WITH free AS (
				SELECT d.hook, d.event_id FROM hook_deliveries d
				WHERE d.state = 'pending' AND d.next_attempt_at <= $3
					AND (d.lease_owner = '' OR d.lease_expires_at IS NULL OR d.lease_expires_at <= $3)
					AND NOT EXISTS (SELECT 1 FROM hook_deliveries e
						WHERE e.hook = d.hook AND e.secret = d.secret AND e.state = 'pending' AND e.event_id < d.event_id)
				ORDER BY d.event_id, d.hook
				LIMIT $4
				FOR UPDATE OF d)
			UPDATE hook_deliveries d SET lease_owner = $1, lease_expires_at = $2, attempts = d.attempts + 1, updated_at = $3
			FROM free WHERE d.hook = free.hook AND d.event_id = free.event_id
			RETURNING `+prefixed("d", deliveryCols),
			p.Owner, ta(p.Now.Add(p.LeaseFor)), ta(p.Now), claimLimit(p.Limit))
		if err != nil {
			return fmt.Errorf("claim hook deliveries: %w", translate(err))
		}
		ds, err = collect(rows, "claim hook deliveries", deliveryDest)
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

func (o *ops) FinishHookDelivery(ctx context.Context, r store.HookDeliveryResult) error {
	var hookSQL string
	var args []any
	switch r.State {
	case store.DeliveryDone:
		hookSQL = `UPDATE hooks SET delivered = delivered + 1, last_delivery_at = $1, failing = false, last_error = '' WHERE name = $2`
		args = []any{ta(r.At), r.Hook}
	case store.DeliveryPending:
		hookSQL = `UPDATE hooks SET failures = failures + 1, last_error = $1 WHERE name = $2`
		args = []any{r.Error, r.Hook}
	case store.DeliveryFailed:
		hookSQL = `UPDATE hooks SET failures = failures + 1, last_error = $1, failing = true WHERE name = $2`
		args = []any{r.Error, r.Hook}
	default:
		return fmt.Errorf("finish hook delivery %q/%d: unknown state %q", r.Hook, r.EventID, r.State)
	}
	return o.atomic(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `UPDATE hook_deliveries SET state = $1, next_attempt_at = $2, last_error = $3,
				lease_owner = '', lease_expires_at = NULL, updated_at = $4
			WHERE hook = $5 AND event_id = $6 AND state = 'pending' AND lease_owner = $7`,
			r.State, ta(r.NextAttemptAt), r.Error, ta(r.At), r.Hook, r.EventID, r.Owner)
		if err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, translate(err))
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, err)
		} else if n == 0 {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, store.ErrLeaseLost)
		}
		if _, err := q.ExecContext(ctx, hookSQL, args...); err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: hook: %w", r.Hook, r.EventID, translate(err))
		}
		return nil
	})
}

func (o *ops) CapHookBacklog(ctx context.Context, hook string, max int, now time.Time) (int, error) {
	var dropped int
	err := o.atomic(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, dialect{}.ClaimLock("hook_deliveries")); err != nil {
			return fmt.Errorf("cap hook backlog %q: lock: %w", hook, translate(err))
		}
		var n int
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM hook_deliveries WHERE hook = $1 AND state = 'pending'`,
			hook).Scan(&n); err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, translate(err))
		}
		if n <= max {
			return nil
		}
		res, err := q.ExecContext(ctx, `UPDATE hook_deliveries SET state = 'dropped', updated_at = $1,
				last_error = 'dropped: backlog over its cap'
			WHERE hook = $2 AND event_id IN (
				SELECT event_id FROM hook_deliveries
				WHERE hook = $2 AND state = 'pending'
					AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at <= $1)
				ORDER BY event_id LIMIT $3)`, ta(now), hook, n-max)
		if err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, translate(err))
		}
		k, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, err)
		}
		dropped = int(k)
		if _, err := q.ExecContext(ctx, `UPDATE hooks SET dropped = dropped + $1 WHERE name = $2`, dropped, hook); err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, translate(err))
		}
		return nil
	})
	return dropped, err
}

func (o *ops) ReleaseHookDeliveries(ctx context.Context, owner string) (int, error) {
	res, err := o.w().ExecContext(ctx, `UPDATE hook_deliveries SET lease_owner = '', lease_expires_at = NULL
		WHERE state = 'pending' AND lease_owner = $1`, owner)
	if err != nil {
		return 0, fmt.Errorf("release hook deliveries of %q: %w", owner, translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release hook deliveries of %q: %w", owner, err)
	}
	return int(n), nil
}

func (o *ops) TrimHookDeliveries(ctx context.Context, before time.Time) (int, error) {
	res, err := o.w().ExecContext(ctx, `DELETE FROM hook_deliveries WHERE state <> 'pending' AND updated_at < $1`, ta(before))
	if err != nil {
		return 0, fmt.Errorf("trim hook deliveries: %w", translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trim hook deliveries: %w", err)
	}
	return int(n), nil
}

// --- named locks ---

func (o *ops) TryLock(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	rows, err := o.w().QueryContext(ctx, `INSERT INTO locks (name, owner, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE locks.owner = excluded.owner OR locks.expires_at <= $4
		RETURNING owner`, name, owner, ta(until), ta(now))
	if err != nil {
		return false, fmt.Errorf("try lock %q: %w", name, translate(err))
	}
	got, err := collectScalar[string](rows, "try lock")
	if err != nil {
		return false, err
	}
	return len(got) == 1, nil
}

func (o *ops) Unlock(ctx context.Context, name, owner string) error {
	if _, err := o.w().ExecContext(ctx, `DELETE FROM locks WHERE name = $1 AND owner = $2`, name, owner); err != nil {
		return fmt.Errorf("unlock %q: %w", name, translate(err))
	}
	return nil
}

// --- helpers ---

func (o *ops) count(ctx context.Context, table string) (int, error) {
	var n int
	if err := o.r().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, translate(err))
	}
	return n, nil
}

// defaultClaimLimit applies when ClaimParams.Limit is not positive.
const defaultClaimLimit = 100

func claimLimit(n int) int {
	if n <= 0 {
		return defaultClaimLimit
	}
	return n
}

// insert runs an INSERT with ON CONFLICT DO NOTHING appended, and reports
// ErrConflict when no row went in: a unique conflict then does not abort
// the caller's transaction, as it would with a raised error.
func insert(ctx context.Context, q querier, query string, args ...any) error {
	res, err := q.ExecContext(ctx, query+` ON CONFLICT DO NOTHING`, args...)
	if err != nil {
		return translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrConflict
	}
	return nil
}

// Column scanners and argument helpers shared with the other backend.
type (
	bcol       = sqlcol.Bytes
	nullString = sqlcol.NullString
	stagesCol  = sqlcol.Stages
)

type jsonCol[T any] = sqlcol.JSON[T]

var (
	mustAffect = sqlcol.MustAffect
	aliasArg   = sqlcol.AliasArg
	jsonArg    = sqlcol.JSONArg
	secretJSON = sqlcol.SecretJSON
	bytesArg   = sqlcol.BytesArg
)

func collect[T any](rows *sql.Rows, what string, dest func(*T) []any) ([]T, error) {
	return sqlcol.Collect(rows, what, dest, translate)
}

func collectScalar[T any](rows *sql.Rows, what string) ([]T, error) {
	return sqlcol.CollectScalar[T](rows, what, translate)
}
