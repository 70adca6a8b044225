package sqlops

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
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

const auditCols = `chain, seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash`

func auditDest(a *store.AuditRecord) []any {
	return []any{&a.Chain, &a.Seq, tcol{P: &a.Time}, &a.TokenID, &a.Action, &a.Target, &a.Result, &a.RequestID, &a.Detail,
		bcol{P: &a.PrevHash}, bcol{P: &a.Hash}}
}

const auditHeadQuery = `SELECT seq, hash FROM audit_heads WHERE chain = ?`

// AuditHead reads chain's row of audit_heads. Inside InTx it locks the
// row (ForUpdate) until the transaction ends, so concurrent appenders to
// that chain queue here and each sees the head the previous one committed
// (SQLite's IMMEDIATE transaction holds the write lock already). A chain
// without a row has no record: 0, nil.
func (o *Ops) AuditHead(ctx context.Context, chain int64) (int64, []byte, error) {
	q := auditHeadQuery
	if o.tx != nil {
		q = o.q.auditHeadForUpdate
	}
	var (
		seq  int64
		hash []byte
	)
	err := o.r().QueryRowContext(ctx, q, chain).Scan(&seq, bcol{P: &hash})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("audit head of chain %d: %w", chain, o.translate(err))
	}
	return seq, hash, nil
}

// ClaimAuditChain locks the lowest writer chain no other transaction
// holds (the dialect's SkipLocked), or adds a chain with the number the
// dialect's NewAuditChain gives (on PostgreSQL a sequence, so that two
// transactions adding a chain at once never pick the same number and
// wait for each other on its key).
func (o *Ops) ClaimAuditChain(ctx context.Context) (store.AuditHead, error) {
	if o.tx == nil {
		return store.AuditHead{}, errors.New("claim audit chain: only inside a transaction")
	}
	for attempt := 0; attempt < 100; attempt++ {
		h := store.AuditHead{}
		err := o.tx.QueryRowContext(ctx, o.q.claimAuditChain, store.AuditFirstWriterChain).Scan(&h.Chain, &h.Seq, bcol{P: &h.Hash})
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return h, fmt.Errorf("claim audit chain: %w", o.translate(err))
		}
		var next int64
		if err := o.tx.QueryRowContext(ctx, o.d.NewAuditChain()).Scan(&next); err != nil {
			return h, fmt.Errorf("claim audit chain: %w", o.translate(err))
		}
		err = o.insert(ctx, o.tx, `INSERT INTO audit_heads (chain, seq, hash) VALUES (?, 0, NULL) ON CONFLICT DO NOTHING`, next)
		if errors.Is(err, store.ErrConflict) {
			continue // another transaction made it; look again
		}
		if err != nil {
			return h, fmt.Errorf("claim audit chain: new chain %d: %w", next, err)
		}
		return store.AuditHead{Chain: next}, nil
	}
	return store.AuditHead{}, fmt.Errorf("claim audit chain: no chain free after 100 attempts: %w", store.ErrConflict)
}

// AuditHeads returns every head row, and the chains with records but no
// head row, in chain order.
func (o *Ops) AuditHeads(ctx context.Context) ([]store.AuditHead, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT chain, seq, hash FROM audit_heads ORDER BY chain`)
	if err != nil {
		return nil, fmt.Errorf("audit heads: %w", o.translate(err))
	}
	heads, err := Collect(o.d, rows, "audit heads", func(h *store.AuditHead) []any {
		return []any{&h.Chain, &h.Seq, bcol{P: &h.Hash}}
	})
	if err != nil {
		return nil, err
	}
	// The chains that have records, one primary-key lookup per chain (a
	// loose index scan; DISTINCT would read every record).
	rows, err = o.r().QueryContext(ctx, `WITH RECURSIVE c(chain) AS (
		SELECT MIN(chain) FROM audit
		UNION ALL SELECT (SELECT MIN(a.chain) FROM audit a WHERE a.chain > c.chain) FROM c WHERE c.chain IS NOT NULL)
	SELECT chain FROM c WHERE chain IS NOT NULL AND chain NOT IN (SELECT chain FROM audit_heads) ORDER BY chain`)
	if err != nil {
		return nil, fmt.Errorf("audit heads: %w", o.translate(err))
	}
	missing, err := Collect(o.d, rows, "audit heads", func(h *store.AuditHead) []any { return []any{&h.Chain} })
	if err != nil {
		return nil, err
	}
	for _, h := range missing {
		h.Missing = true
		heads = append(heads, h)
	}
	sort.Slice(heads, func(i, j int) bool { return heads[i].Chain < heads[j].Chain })
	return heads, nil
}

// auditInsertRows is how many records one INSERT carries (11 parameters
// each, well under PostgreSQL's 65,535 and SQLite's 32,766).
const auditInsertRows = 200

// AppendAudit inserts the records with multi-row INSERTs and moves each
// chain's head to its record with the highest Seq, whatever their order
// in recs (a chain is ordered by Seq), and never backwards.
func (o *Ops) AppendAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q Querier) error {
		for i := 0; i < len(recs); i += auditInsertRows {
			part := recs[i:min(i+auditInsertRows, len(recs))]
			var b strings.Builder
			b.WriteString(`INSERT INTO audit (` + auditCols + `) VALUES `)
			args := make([]any, 0, 11*len(part))
			for j, a := range part {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				args = append(args, a.Chain, a.Seq, o.d.Time(a.Time), a.TokenID, a.Action, a.Target, a.Result, a.RequestID, a.Detail,
					bytesArg(a.PrevHash), bytesArg(a.Hash))
			}
			b.WriteString(" ON CONFLICT DO NOTHING")
			res, err := q.ExecContext(ctx, b.String(), args...)
			if err != nil {
				return fmt.Errorf("append audit chain %d seq %d: %w", part[0].Chain, part[0].Seq, o.translate(err))
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != int64(len(part)) {
				return fmt.Errorf("append audit chain %d seq %d: %d of %d records taken: %w", part[0].Chain, part[0].Seq, int64(len(part))-n, len(part), store.ErrConflict)
			}
		}
		for _, last := range lastOfChains(recs) {
			_, err := q.ExecContext(ctx, `INSERT INTO audit_heads (chain, seq, hash) VALUES (?, ?, ?)
			ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE audit_heads.seq < excluded.seq`,
				last.Chain, last.Seq, bytesArg(last.Hash))
			if err != nil {
				return fmt.Errorf("append audit: head of chain %d: %w", last.Chain, o.translate(err))
			}
		}
		return nil
	})
}

// lastOfChains returns, for each chain of recs, its record with the
// highest Seq, in chain order.
func lastOfChains(recs []store.AuditRecord) []store.AuditRecord {
	last := map[int64]store.AuditRecord{}
	for _, a := range recs {
		if l, ok := last[a.Chain]; !ok || a.Seq > l.Seq {
			last[a.Chain] = a
		}
	}
	out := make([]store.AuditRecord, 0, len(last))
	for _, a := range last {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Chain < out[j].Chain })
	return out
}

func (o *Ops) RehashAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q Querier) error {
		for _, a := range recs {
			res, err := q.ExecContext(ctx, `UPDATE audit SET prev_hash = ?, hash = ? WHERE chain = ? AND seq = ?`,
				bytesArg(a.PrevHash), bytesArg(a.Hash), a.Chain, a.Seq)
			if err != nil {
				return fmt.Errorf("rehash audit chain %d seq %d: %w", a.Chain, a.Seq, o.translate(err))
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("rehash audit chain %d seq %d: %w", a.Chain, a.Seq, store.ErrNotFound)
			}
		}
		for _, last := range lastOfChains(recs) {
			_, err := q.ExecContext(ctx, `UPDATE audit_heads SET hash = ? WHERE chain = ? AND seq = ?`, bytesArg(last.Hash), last.Chain, last.Seq)
			if err != nil {
				return fmt.Errorf("rehash audit: head of chain %d: %w", last.Chain, o.translate(err))
			}
		}
		return nil
	})
}

func (o *Ops) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	q := `SELECT ` + auditCols + ` FROM audit WHERE seq > ?`
	args := []any{f.AfterSeq}
	if f.ByChain {
		q += ` AND chain = ?`
		args = append(args, f.Chain)
	}
	if !f.Since.IsZero() {
		q += ` AND time >= ?`
		args = append(args, o.d.Time(f.Since))
	}
	if f.Target != "" {
		q += ` AND target = ?`
		args = append(args, f.Target)
	}
	if f.ByChain {
		q += ` ORDER BY seq LIMIT ?`
	} else {
		q += ` ORDER BY time, chain, seq LIMIT ?`
	}
	args = append(args, o.d.Limit(f.Limit))
	rows, err := o.r().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list audit", auditDest)
}
