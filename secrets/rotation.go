package secrets

import (
	"context"
	"fmt"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// PromoteParams makes a rotation's pending version current.
type PromoteParams struct {
	Name    string
	Version int64  // the pending version
	Reason  string // manual, scheduled, emergency
}

// ErrNotPending is returned by Promote when the version is no longer the
// pending one (a put abandoned the rotation).
var ErrNotPending = fmt.Errorf("%w: the version is no longer pending", ErrInvalid)

// Invalidate drops name from the read cache; a caller of the *Tx
// operations calls it once their transaction has ended.
func (s *Service) Invalidate(name string) { s.cache.invalidate(name) }

// PromoteTx moves stages inside the caller's transaction tx (the rotation
// engine commits its step with it): pending → current, current →
// previous, with the rotated event and the audit record. It refuses if
// the version is no longer pending. Call Invalidate after the transaction.
func (s *Service) PromoteTx(ctx context.Context, tx store.Ops, p PromoteParams) error {
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
	if err := tx.NotifySecretChanged(ctx, p.Name); err != nil {
		return err
	}
	if err := s.outbox(ctx, tx, sec, ver, events.Rotated, p.Reason, []string{store.StageCurrent}); err != nil {
		return err
	}
	return s.AuditTx(ctx, tx, AuditEntry{Action: "secret.rotate", Target: p.Name, Result: "ok", Detail: fmt.Sprintf("version=%d reason=%s", p.Version, p.Reason)})
}

// DropPendingTx clears the pending stage if it still names version (a
// rotation rolled back), with its audit record, inside tx. Call
// Invalidate after the transaction.
func (s *Service) DropPendingTx(ctx context.Context, tx store.Ops, name string, version int64) error {
	stages, err := tx.GetStages(ctx, name)
	if err != nil {
		return err
	}
	if stages[store.StagePending] == version {
		if err := tx.ClearStage(ctx, name, store.StagePending); err != nil {
			return err
		}
		if err := tx.NotifySecretChanged(ctx, name); err != nil {
			return err
		}
	}
	return s.AuditTx(ctx, tx, AuditEntry{Action: "secret.rotate", Target: name, Result: "rolled_back", Detail: fmt.Sprintf("version=%d", version)})
}

// RotationFailedTx records a failed rotation attempt inside tx: the
// rotation_failed event and the audit record, with the (already
// sanitized) error.
func (s *Service) RotationFailedTx(ctx context.Context, tx store.Ops, name, reason, sanitizedErr string) error {
	sec, err := tx.GetSecret(ctx, name)
	if err != nil {
		return err
	}
	if err := s.outbox(ctx, tx, sec, store.SecretVersion{}, events.RotationFailed, reason, nil); err != nil {
		return err
	}
	return s.AuditTx(ctx, tx, AuditEntry{Action: "secret.rotate", Target: name, Result: "failed", Detail: truncateDetail(sanitizedErr)})
}

func truncateDetail(s string) string {
	if len(s) > 300 {
		return s[:300]
	}
	return s
}
