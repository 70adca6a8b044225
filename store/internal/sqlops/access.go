package sqlops

import (
	"context"
	"fmt"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// --- tokens ---

const tokenCols = `id, hash, name, policies, created_at, expires_at, revoked_at`

func tokenDest(t *store.Token) []any {
	return []any{&t.ID, bcol{P: &t.Hash}, &t.Name, jsonCol[[]string]{P: &t.Policies}, tcol{P: &t.CreatedAt},
		ntcol{P: &t.ExpiresAt}, ntcol{P: &t.RevokedAt}}
}

func (o *Ops) CreateToken(ctx context.Context, t store.Token) error {
	pol, err := jsonArg(t.Policies, len(t.Policies) == 0)
	if err != nil {
		return fmt.Errorf("create token %q: %w", t.ID, err)
	}
	err = o.insert(ctx, o.w(), `INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		t.ID, t.Hash, t.Name, pol, o.d.Time(t.CreatedAt), o.tpa(t.ExpiresAt), o.tpa(t.RevokedAt))
	if err != nil {
		return fmt.Errorf("create token %q: %w", t.ID, err)
	}
	return nil
}

func (o *Ops) GetTokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	var t store.Token
	err := o.r().QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, hash).Scan(tokenDest(&t)...)
	if err != nil {
		// Never the hash in the message.
		return store.Token{}, fmt.Errorf("get token by hash: %w", o.translate(err))
	}
	return t, nil
}

func (o *Ops) GetToken(ctx context.Context, id string) (store.Token, error) {
	var t store.Token
	err := o.r().QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id).Scan(tokenDest(&t)...)
	if err != nil {
		return store.Token{}, fmt.Errorf("get token %q: %w", id, o.translate(err))
	}
	return t, nil
}

func (o *Ops) ListTokens(ctx context.Context, p store.Page) ([]store.Token, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id > ? ORDER BY id LIMIT ?`,
		p.After, o.d.Limit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list tokens", tokenDest)
}

func (o *Ops) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := o.w().ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, o.d.Time(at), id)
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", id, o.translate(err))
	}
	return mustAffect(res, "revoke token %q", id)
}

// --- policies ---

func (o *Ops) PutPolicy(ctx context.Context, p store.Policy) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO policies (name, document, created_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET document = excluded.document, created_at = excluded.created_at,
			updated_at = excluded.updated_at`,
		p.Name, bytesArg(p.Document), o.d.Time(p.CreatedAt), o.d.Time(p.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put policy %q: %w", p.Name, o.translate(err))
	}
	return nil
}

func policyDest(p *store.Policy) []any {
	return []any{&p.Name, bcol{P: &p.Document}, tcol{P: &p.CreatedAt}, tcol{P: &p.UpdatedAt}}
}

func (o *Ops) GetPolicy(ctx context.Context, name string) (store.Policy, error) {
	var p store.Policy
	err := o.r().QueryRowContext(ctx, `SELECT name, document, created_at, updated_at FROM policies WHERE name = ?`, name).
		Scan(policyDest(&p)...)
	if err != nil {
		return store.Policy{}, fmt.Errorf("get policy %q: %w", name, o.translate(err))
	}
	return p, nil
}

func (o *Ops) ListPolicies(ctx context.Context, p store.Page) ([]store.Policy, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT name, document, created_at, updated_at FROM policies
		WHERE name > ? ORDER BY name LIMIT ?`, p.After, o.d.Limit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list policies", policyDest)
}

func (o *Ops) DeletePolicy(ctx context.Context, name string) error {
	res, err := o.w().ExecContext(ctx, `DELETE FROM policies WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete policy %q: %w", name, o.translate(err))
	}
	return mustAffect(res, "delete policy %q", name)
}

// --- audit ---

const auditCols = `seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash`

func auditDest(a *store.AuditRecord) []any {
	return []any{&a.Seq, tcol{P: &a.Time}, &a.TokenID, &a.Action, &a.Target, &a.Result, &a.RequestID, &a.Detail,
		bcol{P: &a.PrevHash}, bcol{P: &a.Hash}}
}

const auditHeadQuery = `SELECT seq, hash FROM audit_head WHERE id = 1`

// AuditHead reads the one-row audit_head table. Inside InTx it locks the
// row (ForUpdate) until the transaction ends, so concurrent appenders
// queue here and each sees the head the previous one committed (SQLite's
// IMMEDIATE transaction holds the write lock already).
func (o *Ops) AuditHead(ctx context.Context) (int64, []byte, error) {
	q := auditHeadQuery
	if o.tx != nil {
		q = o.q.auditHeadForUpdate
	}
	var (
		seq  int64
		hash []byte
	)
	if err := o.r().QueryRowContext(ctx, q).Scan(&seq, bcol{P: &hash}); err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", o.translate(err))
	}
	return seq, hash, nil
}

// AppendAudit inserts the records and moves the head to the one with the
// highest Seq, whatever their order in recs (the chain is ordered by Seq),
// and never backwards.
func (o *Ops) AppendAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q Querier) error {
		last := recs[0]
		for _, a := range recs {
			err := o.insert(ctx, q, `INSERT INTO audit (`+auditCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				a.Seq, o.d.Time(a.Time), a.TokenID, a.Action, a.Target, a.Result, a.RequestID, a.Detail,
				bytesArg(a.PrevHash), bytesArg(a.Hash))
			if err != nil {
				return fmt.Errorf("append audit seq %d: %w", a.Seq, err)
			}
			if a.Seq > last.Seq {
				last = a
			}
		}
		_, err := q.ExecContext(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq < ?`,
			last.Seq, bytesArg(last.Hash), last.Seq)
		if err != nil {
			return fmt.Errorf("append audit: head: %w", o.translate(err))
		}
		return nil
	})
}

func (o *Ops) RehashAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q Querier) error {
		last := recs[0]
		for _, a := range recs {
			res, err := q.ExecContext(ctx, `UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?`,
				bytesArg(a.PrevHash), bytesArg(a.Hash), a.Seq)
			if err != nil {
				return fmt.Errorf("rehash audit seq %d: %w", a.Seq, o.translate(err))
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("rehash audit seq %d: %w", a.Seq, store.ErrNotFound)
			}
			if a.Seq > last.Seq {
				last = a
			}
		}
		_, err := q.ExecContext(ctx, `UPDATE audit_head SET hash = ? WHERE id = 1 AND seq = ?`, bytesArg(last.Hash), last.Seq)
		if err != nil {
			return fmt.Errorf("rehash audit: head: %w", o.translate(err))
		}
		return nil
	})
}

func (o *Ops) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	q := `SELECT ` + auditCols + ` FROM audit WHERE seq > ?`
	args := []any{f.AfterSeq}
	if !f.Since.IsZero() {
		q += ` AND time >= ?`
		args = append(args, o.d.Time(f.Since))
	}
	if f.Target != "" {
		q += ` AND target = ?`
		args = append(args, f.Target)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, o.d.Limit(f.Limit))
	rows, err := o.r().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list audit", auditDest)
}
