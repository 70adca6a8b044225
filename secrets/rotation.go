package secrets

import (
	"context"
	"fmt"
	"time"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// abandonRotation clears a pending version and marks the secret's running
// rotation abandoned, inside a put's transaction.
func abandonRotation(ctx context.Context, tx store.Ops, name string, stages map[string]int64, now time.Time) error {
	if _, ok := stages[store.StagePending]; ok {
		if err := tx.ClearStage(ctx, name, store.StagePending); err != nil {
			return err
		}
	}
	runs, err := tx.ListRuns(ctx, name, 1)
	if err != nil {
		return err
	}
	if len(runs) == 1 && runs[0].State == store.RunRunning {
		r := runs[0]
		r.State, r.UpdatedAt, r.EndedAt = store.RunAbandoned, now, &now
		r.Error = "abandoned: a new current version was written during the rotation"
		return tx.UpdateRun(ctx, r)
	}
	return nil
}

// PromoteParams makes a rotation's pending version current.
type PromoteParams struct {
	Name    string
	Version int64  // the pending version
	Reason  string // manual, scheduled, emergency
	// InTx runs inside the same transaction (the engine ends its run and
	// updates the rotation state there).
	InTx func(tx store.Ops) error
}

// ErrNotPending is returned by Promote when the version is no longer the
// pending one (a put abandoned the rotation).
var ErrNotPending = fmt.Errorf("%w: the version is no longer pending", ErrInvalid)

// Promote moves stages in one transaction: pending → current, current →
// previous, with the rotated event and the audit record. It refuses if
// the version is no longer pending.
func (s *Service) Promote(ctx context.Context, p PromoteParams) error {
	defer s.cache.invalidate(p.Name)
	actor := ActorFrom(ctx)
	return s.st.InTx(ctx, func(tx store.Ops) error {
		sec, err := s.live(ctx, tx, p.Name)
		if err != nil {
			return err
		}
		stages, err := tx.GetStages(ctx, p.Name)
		if err != nil {
			return err
		}
		if stages[store.StagePending] != p.Version {
			return fmt.Errorf("%s version %d: %w", p.Name, p.Version, ErrNotPending)
		}
		if cur, ok := stages[store.StageCurrent]; ok {
			if err := tx.SetStage(ctx, p.Name, store.StagePrevious, cur); err != nil {
				return err
			}
		}
		if err := tx.SetStage(ctx, p.Name, store.StageCurrent, p.Version); err != nil {
			return err
		}
		if err := tx.ClearStage(ctx, p.Name, store.StagePending); err != nil {
			return err
		}
		ver, err := tx.GetVersion(ctx, p.Name, p.Version)
		if err != nil {
			return err
		}
		sec.UpdatedAt = s.now().UTC()
		if err := tx.UpdateSecret(ctx, sec); err != nil {
			return err
		}
		if err := s.outbox(ctx, tx, sec, ver, events.Rotated, p.Reason, []string{store.StageCurrent}); err != nil {
			return err
		}
		if err := s.Audit(ctx, tx, actor, "secret.rotate", p.Name, "ok",
			fmt.Sprintf("version=%d reason=%s", p.Version, p.Reason)); err != nil {
			return err
		}
		if p.InTx != nil {
			return p.InTx(tx)
		}
		return nil
	})
}

// DropPending clears the pending stage if it still names version (a
// rotation rolled back), with its audit record.
func (s *Service) DropPending(ctx context.Context, name string, version int64, inTx func(tx store.Ops) error) error {
	defer s.cache.invalidate(name)
	actor := ActorFrom(ctx)
	return s.st.InTx(ctx, func(tx store.Ops) error {
		stages, err := tx.GetStages(ctx, name)
		if err != nil {
			return err
		}
		if stages[store.StagePending] == version {
			if err := tx.ClearStage(ctx, name, store.StagePending); err != nil {
				return err
			}
		}
		if err := s.Audit(ctx, tx, actor, "secret.rotate", name, "rolled_back", fmt.Sprintf("version=%d", version)); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(tx)
		}
		return nil
	})
}

// RotationFailed records a failed rotation attempt: the rotation_failed
// event and the audit record, with the (already sanitized) error.
func (s *Service) RotationFailed(ctx context.Context, name, reason, sanitizedErr string, inTx func(tx store.Ops) error) error {
	actor := ActorFrom(ctx)
	return s.st.InTx(ctx, func(tx store.Ops) error {
		sec, err := tx.GetSecret(ctx, name)
		if err != nil {
			return err
		}
		if err := s.outbox(ctx, tx, sec, store.SecretVersion{}, events.RotationFailed, reason, nil); err != nil {
			return err
		}
		if err := s.Audit(ctx, tx, actor, "secret.rotate", name, "failed", truncateDetail(sanitizedErr)); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(tx)
		}
		return nil
	})
}

func truncateDetail(s string) string {
	if len(s) > 300 {
		return s[:300]
	}
	return s
}
