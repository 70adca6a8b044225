package sqlops

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// --- rotations ---

// RotationCols are a rotation's columns, in RotationDest's order.
const RotationCols = `secret, rotator, config, schedule, window_ns, enabled, next_due_at, last_rotated_at,
	last_error, consecutive_failures, lease_owner, lease_expires_at, updated_at, target`

// rotationSettingsCols are the columns PutRotation writes: all but the lease.
const rotationSettingsCols = `secret, rotator, config, schedule, window_ns, enabled, next_due_at, last_rotated_at,
	last_error, consecutive_failures, updated_at, target`

// RotationDest is where a row of RotationCols scans to.
func RotationDest(r *store.Rotation) []any {
	return []any{&r.Secret, &r.Rotator, bcol{P: &r.Config}, &r.Schedule, (*int64)(&r.Window), &r.Enabled,
		ntcol{P: &r.NextDueAt}, ntcol{P: &r.LastRotatedAt}, &r.LastError, &r.ConsecutiveFailures,
		&r.LeaseOwner, ntcol{P: &r.LeaseExpiresAt}, tcol{P: &r.UpdatedAt}, bcol{P: &r.Target}}
}

// PutRotation writes every column but the lease: an update keeps the
// lease as it is (claim, renew, release and reclaim own it), an insert
// starts unleased.
func (o *Ops) PutRotation(ctx context.Context, r store.Rotation) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO rotations (`+rotationSettingsCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (secret) DO UPDATE SET rotator = excluded.rotator, config = excluded.config,
			schedule = excluded.schedule, window_ns = excluded.window_ns, enabled = excluded.enabled,
			next_due_at = excluded.next_due_at, last_rotated_at = excluded.last_rotated_at,
			last_error = excluded.last_error, consecutive_failures = excluded.consecutive_failures,
			updated_at = excluded.updated_at, target = excluded.target`,
		r.Secret, r.Rotator, bytesArg(r.Config), r.Schedule, int64(r.Window), r.Enabled,
		o.tpa(r.NextDueAt), o.tpa(r.LastRotatedAt), r.LastError, r.ConsecutiveFailures,
		o.d.Time(r.UpdatedAt), bytesArg(r.Target))
	if o.d.IsForeignKey(err) {
		return fmt.Errorf("put rotation: secret %q: %w", r.Secret, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("put rotation: secret %q: %w", r.Secret, o.translate(err))
	}
	return nil
}

func (o *Ops) GetRotation(ctx context.Context, secret string) (store.Rotation, error) {
	var r store.Rotation
	err := o.r().QueryRowContext(ctx, `SELECT `+RotationCols+` FROM rotations WHERE secret = ?`, secret).
		Scan(RotationDest(&r)...)
	if err != nil {
		return store.Rotation{}, fmt.Errorf("get rotation %q: %w", secret, o.translate(err))
	}
	return r, nil
}

func (o *Ops) ListRotations(ctx context.Context, p store.ListRotationsParams) ([]store.Rotation, error) {
	where, args := "secret > ?", []any{p.After}
	if len(p.Globs) > 0 {
		cond, a := o.d.GlobMatch("secret", p.Globs)
		where, args = where+" AND "+cond, append(args, a...)
	}
	args = append(args, o.d.Limit(p.Limit))
	rows, err := o.r().QueryContext(ctx, `SELECT `+RotationCols+` FROM rotations WHERE `+where+` ORDER BY secret LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list rotations: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list rotations", RotationDest)
}

// ClaimDueRotations runs the dialect's claim; see store/storetest for the
// lease protocol.
func (o *Ops) ClaimDueRotations(ctx context.Context, p store.ClaimParams) ([]store.Rotation, error) {
	rows, err := o.d.ClaimDueRotations(ctx, o.w(), p)
	if err != nil {
		return nil, fmt.Errorf("claim due rotations: %w", o.translate(err))
	}
	rs, err := Collect(o.d, rows, "claim due rotations", RotationDest)
	if err != nil {
		return nil, err
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i].NextDueAt, rs[j].NextDueAt
		if !a.Equal(*b) {
			return a.Before(*b)
		}
		return rs[i].Secret < rs[j].Secret
	})
	return rs, nil
}

func (o *Ops) ClaimRotation(ctx context.Context, secret string, p store.ClaimParams) (store.Rotation, error) {
	var r store.Rotation
	err := o.atomic(ctx, func(q Querier) error {
		err := q.QueryRowContext(ctx, `UPDATE rotations SET lease_owner = ?, lease_expires_at = ?
			WHERE secret = ? AND (lease_owner = '' OR lease_owner = ? OR lease_expires_at IS NULL OR lease_expires_at <= ?)
			RETURNING `+RotationCols,
			p.Owner, o.d.Time(p.Now.Add(p.LeaseFor)), secret, p.Owner, o.d.Time(p.Now)).Scan(RotationDest(&r)...)
		if !errors.Is(err, sql.ErrNoRows) {
			if err != nil {
				return fmt.Errorf("claim rotation %q: %w", secret, o.translate(err))
			}
			return nil
		}
		var one int
		if err := q.QueryRowContext(ctx, `SELECT 1 FROM rotations WHERE secret = ?`, secret).Scan(&one); err != nil {
			return fmt.Errorf("claim rotation %q: %w", secret, o.translate(err))
		}
		return fmt.Errorf("claim rotation %q: leased by another owner: %w", secret, store.ErrConflict)
	})
	if err != nil {
		return store.Rotation{}, err
	}
	return r, nil
}

func (o *Ops) RenewRotationLease(ctx context.Context, secret, owner string, until time.Time) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotations SET lease_expires_at = ?
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> ''`, o.d.Time(until), secret, owner)
	if err != nil {
		return fmt.Errorf("renew rotation lease %q: %w", secret, o.translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("renew rotation lease %q for %q: %w", secret, owner, store.ErrLeaseLost)
	}
	return nil
}

func (o *Ops) ReleaseRotation(ctx context.Context, secret, owner string) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotations SET lease_owner = '', lease_expires_at = NULL
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> ''`, secret, owner)
	if err != nil {
		return fmt.Errorf("release rotation %q: %w", secret, o.translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("release rotation %q for %q: %w", secret, owner, store.ErrLeaseLost)
	}
	return nil
}

func (o *Ops) GetRotationForUpdate(ctx context.Context, secret string) (store.Rotation, error) {
	// ForUpdate: inside InTx the row stays locked until the transaction
	// ends (SQLite's write lock already keeps other writers out).
	var r store.Rotation
	err := o.w().QueryRowContext(ctx, o.q.rotationForUpdate, secret).
		Scan(RotationDest(&r)...)
	if err != nil {
		return store.Rotation{}, fmt.Errorf("get rotation %q for update: %w", secret, o.translate(err))
	}
	return r, nil
}

func (o *Ops) CheckRotationLease(ctx context.Context, secret, owner string, now time.Time) error {
	// ForUpdate: inside InTx the row stays locked until the transaction
	// ends (SQLite's write lock already keeps other writers out). A claim by another owner (an UPDATE of the row) waits for it, so what
	// this transaction commits happens while the lease is this owner's.
	var one int
	err := o.w().QueryRowContext(ctx, o.q.checkRotationLease, secret, owner, o.d.Time(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("rotation %q: %q holds no live lease: %w", secret, owner, store.ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("check rotation lease %q: %w", secret, o.translate(err))
	}
	return nil
}

func (o *Ops) ReclaimRotationLease(ctx context.Context, secret, owner string, now time.Time) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotations SET lease_owner = '', lease_expires_at = NULL
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> ''
			AND (lease_expires_at IS NULL OR lease_expires_at <= ?)`, secret, owner, o.d.Time(now))
	if err != nil {
		return fmt.Errorf("reclaim rotation lease %q: %w", secret, o.translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("reclaim rotation lease %q of %q: renewed, taken or released meanwhile: %w", secret, owner, store.ErrLeaseLost)
	}
	return nil
}

func (o *Ops) EarliestDue(ctx context.Context) (time.Time, error) {
	// A rotation leased by a live claimer is not claimable before its
	// lease ends, so it counts as due at the later of the two times. Only
	// the first rows in due order are looked at (through the index): if
	// they are all leased, the answer may be late by a little, which the
	// runner's bounded sleep absorbs.
	rows, err := o.r().QueryContext(ctx, o.q.earliestDue)
	if err != nil {
		return time.Time{}, fmt.Errorf("earliest due: %w", o.translate(err))
	}
	defer rows.Close()
	var best time.Time
	for rows.Next() {
		var due, exp *time.Time
		var owner string
		if err := rows.Scan(ntcol{P: &due}, &owner, ntcol{P: &exp}); err != nil {
			return time.Time{}, fmt.Errorf("earliest due: %w", o.translate(err))
		}
		t := *due
		if owner != "" && exp != nil && exp.After(t) {
			t = *exp
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, fmt.Errorf("earliest due: %w", o.translate(err))
	}
	if best.IsZero() {
		return time.Time{}, fmt.Errorf("earliest due: no rotation scheduled: %w", store.ErrNotFound)
	}
	return best, nil
}

// --- runs ---

const runCols = `id, secret, run_trigger, step, state, pending_version, attempt, options,
	started_at, updated_at, ended_at, error`

func runDest(r *store.RotationRun) []any {
	return []any{&r.ID, &r.Secret, &r.Trigger, &r.Step, &r.State, &r.PendingVersion, &r.Attempt, bcol{P: &r.Options},
		tcol{P: &r.StartedAt}, tcol{P: &r.UpdatedAt}, ntcol{P: &r.EndedAt}, &r.Error}
}

func (o *Ops) CreateRun(ctx context.Context, r store.RotationRun) error {
	err := o.insert(ctx, o.w(), `INSERT INTO rotation_runs (`+runCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		r.ID, r.Secret, r.Trigger, r.Step, r.State, r.PendingVersion, r.Attempt, bytesArg(r.Options),
		o.d.Time(r.StartedAt), o.d.Time(r.UpdatedAt), o.tpa(r.EndedAt), r.Error)
	if o.d.IsForeignKey(err) {
		return fmt.Errorf("create run %q: secret %q: %w", r.ID, r.Secret, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("create run %q: %w", r.ID, err)
	}
	return nil
}

func (o *Ops) UpdateRun(ctx context.Context, r store.RotationRun) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotation_runs SET run_trigger = ?, step = ?, state = ?,
		pending_version = ?, attempt = ?, options = ?, updated_at = ?, ended_at = ?, error = ?
		WHERE id = ?`,
		r.Trigger, r.Step, r.State, r.PendingVersion, r.Attempt, bytesArg(r.Options),
		o.d.Time(r.UpdatedAt), o.tpa(r.EndedAt), r.Error, r.ID)
	if err != nil {
		return fmt.Errorf("update run %q: %w", r.ID, o.translate(err))
	}
	return mustAffect(res, "update run %q", r.ID)
}

func (o *Ops) GetRun(ctx context.Context, id string) (store.RotationRun, error) {
	var r store.RotationRun
	err := o.r().QueryRowContext(ctx, `SELECT `+runCols+` FROM rotation_runs WHERE id = ?`, id).Scan(runDest(&r)...)
	if err != nil {
		return store.RotationRun{}, fmt.Errorf("get run %q: %w", id, o.translate(err))
	}
	return r, nil
}

func (o *Ops) ListRuns(ctx context.Context, secret string, limit int) ([]store.RotationRun, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+runCols+` FROM rotation_runs WHERE secret = ?
		ORDER BY started_at DESC, id DESC LIMIT ?`, secret, o.d.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list runs %q: %w", secret, o.translate(err))
	}
	return Collect(o.d, rows, "list runs", runDest)
}

func (o *Ops) UnfinishedRuns(ctx context.Context) ([]store.RotationRun, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+runCols+` FROM rotation_runs WHERE state = 'running'
		ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("unfinished runs: %w", o.translate(err))
	}
	return Collect(o.d, rows, "unfinished runs", runDest)
}

func (o *Ops) AddRunStep(ctx context.Context, s store.RunStep) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO run_steps (run_id, step, started_at, ended_at, result, error)
		VALUES (?, ?, ?, ?, ?, ?)`, s.RunID, s.Step, o.d.Time(s.StartedAt), o.tpa(s.EndedAt), s.Result, s.Error)
	if o.d.IsForeignKey(err) {
		return fmt.Errorf("add run step: run %q: %w", s.RunID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("add run step: run %q: %w", s.RunID, o.translate(err))
	}
	return nil
}

func (o *Ops) ListRunSteps(ctx context.Context, runID string) ([]store.RunStep, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT run_id, step, started_at, ended_at, result, error
		FROM run_steps WHERE run_id = ? ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("list run steps %q: %w", runID, o.translate(err))
	}
	return Collect(o.d, rows, "list run steps", func(s *store.RunStep) []any {
		return []any{&s.RunID, &s.Step, tcol{P: &s.StartedAt}, ntcol{P: &s.EndedAt}, &s.Result, &s.Error}
	})
}
