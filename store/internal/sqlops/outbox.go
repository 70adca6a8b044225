package sqlops

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// --- outbox ---

// OutboxCols are an outbox event's columns, in OutboxDest's order.
const OutboxCols = `id, type, secret, version, payload, created_at, delivered_at, lease_owner, lease_expires_at`

// OutboxDest is where a row of OutboxCols scans to.
func OutboxDest(e *store.OutboxEvent) []any {
	return []any{&e.ID, &e.Type, &e.Secret, &e.Version, bcol{P: &e.Payload}, tcol{P: &e.CreatedAt},
		ntcol{P: &e.DeliveredAt}, &e.LeaseOwner, ntcol{P: &e.LeaseExpiresAt}}
}

func (o *Ops) AppendOutbox(ctx context.Context, e store.OutboxEvent) (int64, error) {
	var id int64
	err := o.w().QueryRowContext(ctx, `INSERT INTO outbox (type, secret, version, payload, created_at,
		delivered_at, lease_owner, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.Type, e.Secret, e.Version, bytesArg(e.Payload), o.d.Time(e.CreatedAt),
		o.tpa(e.DeliveredAt), e.LeaseOwner, o.tpa(e.LeaseExpiresAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append outbox %q: %w", e.Type, o.translate(err))
	}
	return id, nil
}

// ClaimOutbox runs the dialect's claim where claimers serialize.
func (o *Ops) ClaimOutbox(ctx context.Context, p store.ClaimParams) ([]store.OutboxEvent, error) {
	var es []store.OutboxEvent
	err := o.serialized(ctx, "outbox", "claim outbox", func(q Querier) (err error) {
		es, err = o.d.ClaimOutbox(ctx, q, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].ID < es[j].ID })
	return es, nil
}

func (o *Ops) OutboxBacklog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	err := o.r().QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL`).
		Scan(&n, ntcol{P: &oldest})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox backlog: %w", o.translate(err))
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, *oldest, nil
}

func (o *Ops) MarkDelivered(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	mark := func(q Querier, ids []int64) error {
		cond, args := o.d.Int64In("id", ids)
		_, err := q.ExecContext(ctx, `UPDATE outbox SET delivered_at = ? WHERE `+cond, append([]any{o.d.Time(at)}, args...)...)
		if err != nil {
			return fmt.Errorf("mark delivered: %w", o.translate(err))
		}
		return nil
	}
	chunk := o.d.MaxInList()
	if chunk <= 0 || len(ids) <= chunk {
		return mark(o.w(), ids)
	}
	return o.atomic(ctx, func(q Querier) error {
		for len(ids) > 0 {
			n := min(len(ids), chunk)
			if err := mark(q, ids[:n]); err != nil {
				return err
			}
			ids = ids[n:]
		}
		return nil
	})
}

func (o *Ops) ListOutboxAfter(ctx context.Context, after int64, limit int) ([]store.OutboxEvent, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+OutboxCols+` FROM outbox WHERE id > ? ORDER BY id LIMIT ?`,
		after, o.d.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list outbox after %d: %w", after, o.translate(err))
	}
	return Collect(o.d, rows, "list outbox", OutboxDest)
}

func (o *Ops) TrimOutbox(ctx context.Context, before time.Time) (int, error) {
	res, err := o.w().ExecContext(ctx, `DELETE FROM outbox WHERE delivered_at IS NOT NULL AND created_at < ?`, o.d.Time(before))
	if err != nil {
		return 0, fmt.Errorf("trim outbox: %w", o.translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trim outbox: %w", err)
	}
	return int(n), nil
}
