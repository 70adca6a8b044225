package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/store"
)

func auditJSON(rec store.AuditRecord) client.AuditRecord {
	return client.AuditRecord{
		Chain: rec.Chain, Seq: rec.Seq, Time: rec.Time, TokenID: rec.TokenID, Action: rec.Action, Target: rec.Target,
		Result: rec.Result, RequestID: rec.RequestID, Detail: rec.Detail, Hash: hex.EncodeToString(rec.Hash),
	}
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "audit", "list"); err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.AuditFilter{Target: q.Get("secret"), Limit: 1000}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return badRequest("since: %q is not an RFC 3339 time", v)
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return badRequest("limit: %q must be between 1 and 100000", v)
		}
		f.Limit = n
	}
	if v := q.Get("chain"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badRequest("chain: %q is not a chain number", v)
		}
		f.ByChain, f.Chain = true, n
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badRequest("after: %q is not a sequence number", v)
		}
		f.AfterSeq = n
	}
	recs, err := s.st.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := client.AuditList{Records: []client.AuditRecord{}}
	for _, rec := range recs {
		out.Records = append(out.Records, auditJSON(rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// chainWalk reads one whole chain through the store, page by page, for
// audit.Key.Verify, remembers the hashes of the records it is asked
// about, and hands each record Verify accepted to verified.
type chainWalk struct {
	ctx      context.Context
	st       store.Ops
	chain    int64
	buf      []store.AuditRecord
	i        int
	after    int64
	last     []byte
	watch    map[int64][]byte // seq → its hash, filled as the walk passes it
	verified func(audit.Record) error
	pending  *audit.Record // returned by next, accepted once next is called again
}

func newChainWalk(ctx context.Context, st store.Ops, chain int64, watch ...int64) *chainWalk {
	w := &chainWalk{ctx: ctx, st: st, chain: chain, watch: map[int64][]byte{}}
	for _, seq := range watch {
		w.watch[seq] = nil
	}
	return w
}

func (w *chainWalk) next() (audit.Record, bool, error) {
	const page = 5000
	if w.pending != nil && w.verified != nil {
		if err := w.verified(*w.pending); err != nil {
			return audit.Record{}, false, err
		}
	}
	w.pending = nil
	if w.i == len(w.buf) {
		recs, err := w.st.ListAudit(w.ctx, store.AuditFilter{ByChain: true, Chain: w.chain, AfterSeq: w.after, Limit: page})
		if err != nil {
			return audit.Record{}, false, err
		}
		if len(recs) == 0 {
			return audit.Record{}, false, nil
		}
		w.buf, w.i = recs, 0
		w.after = recs[len(recs)-1].Seq
	}
	rec := w.buf[w.i]
	w.i++
	w.last = rec.Hash
	if _, ok := w.watch[rec.Seq]; ok {
		w.watch[rec.Seq] = rec.Hash
	}
	r := audit.Record(rec)
	w.pending = &r
	return r, true, nil
}

// hashAt returns the hash the walk saw for a watched record (Genesis for
// record 0), or nil if it never reached it.
func (w *chainWalk) hashAt(seq int64) []byte {
	if seq == 0 {
		return audit.Genesis()
	}
	return w.watch[seq]
}

// chainState is the outcome of checking every chain of the log against
// its head row and the anchors.
type chainState struct {
	records int64 // in every chain
	chains  int
	anchors int64
	head    []byte // hash of the anchor chain's last record (the legacy chain's without anchors)
	bad     *audit.BrokenError
	walks   map[int64]*chainWalk
	counts  map[int64]int64 // records verified per chain
}

// checkChain verifies every chain from its record 1: the anchor chain
// first, collecting what its anchors vouch for, then every other chain
// (those with a head row, with records, or named by an anchor), each
// against its head row (read first, so that records appended meanwhile do
// not look like a mismatch) and against the newest anchor naming it. watch
// names records whose hashes the caller wants, by chain (a checkpoint's).
// An error is a store failure; the first record that cannot be trusted,
// in chain order, is in bad.
func (s *Server) checkChain(ctx context.Context, watch map[int64][]int64) (chainState, error) {
	heads, err := s.st.AuditHeads(ctx)
	if err != nil {
		return chainState{}, err
	}
	st := chainState{walks: map[int64]*chainWalk{}, counts: map[int64]int64{}}
	headOf := map[int64]store.AuditHead{}
	ids := map[int64]bool{audit.LegacyChain: true, audit.AnchorChain: true}
	for _, h := range heads {
		headOf[h.Chain] = h
		ids[h.Chain] = true
	}
	var (
		anchored audit.Anchored
		bads     []*audit.BrokenError
	)
	check := func(c int64, extra ...int64) error {
		h := headOf[c]
		w := newChainWalk(ctx, s.st, c, append(append(extra, watch[c]...), h.Seq)...)
		if c == audit.AnchorChain {
			w.verified = anchored.Add
		}
		n, err := s.auditKey.Verify(w.next)
		if err == nil && w.pending != nil && w.verified != nil {
			err = w.verified(*w.pending)
		}
		st.walks[c], st.counts[c] = w, n
		st.records += n
		var bad *audit.BrokenError
		switch {
		case errors.As(err, &bad):
			bad.Chain = c
		case err != nil:
			return err
		case h.Missing:
			bad = &audit.BrokenError{Chain: c, Seq: n, Reason: "the chain has records but no head row (its head was removed)"}
		case n < h.Seq:
			bad = &audit.BrokenError{Chain: c, Seq: n + 1, Reason: fmt.Sprintf("the head says %d records, the chain has %d (records removed)", h.Seq, n)}
		case h.Seq > 0 && !bytes.Equal(w.hashAt(h.Seq), h.Hash):
			bad = &audit.BrokenError{Chain: c, Seq: h.Seq, Reason: "it does not match the head hash (the newest records were rewritten)"}
		}
		if bad == nil && c != audit.AnchorChain {
			var at []byte
			if cl, ok := anchored.Claims[c]; ok {
				at = w.hashAt(cl.Seq)
			}
			bad = anchored.Check(c, n, at)
		}
		if bad != nil {
			bads = append(bads, bad)
		}
		return nil
	}
	// The anchor chain first: its anchors say which records every other
	// chain must still hold.
	if err := check(audit.AnchorChain); err != nil {
		return st, err
	}
	for c := range anchored.Claims {
		ids[c] = true
	}
	order := make([]int64, 0, len(ids))
	for c := range ids {
		order = append(order, c)
	}
	slices.Sort(order)
	for _, c := range order {
		if c == audit.AnchorChain {
			continue
		}
		var extra []int64
		if cl, ok := anchored.Claims[c]; ok {
			extra = append(extra, cl.Seq)
		}
		if err := check(c, extra...); err != nil {
			return st, err
		}
	}
	st.chains, st.anchors = len(order), anchored.Anchors
	st.head = st.walks[audit.AnchorChain].last
	if st.counts[audit.AnchorChain] == 0 {
		st.head = st.walks[audit.LegacyChain].last
	}
	for _, b := range bads {
		if st.bad == nil || b.Chain < st.bad.Chain {
			st.bad = b
		}
	}
	return st, nil
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "audit", "verify"); err != nil {
		return err
	}
	var cp *audit.Checkpoint
	if r.ContentLength != 0 {
		var req client.AuditVerifyRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.Checkpoint != nil {
			c, err := s.parseCheckpoint(*req.Checkpoint)
			if err != nil {
				return err
			}
			cp = &c
			info(r).detail = fmt.Sprintf("checkpoint chain=%d seq=%d", c.Chain, c.Seq)
		}
	}
	watch := map[int64][]int64{}
	if cp != nil {
		watch[cp.Chain] = append(watch[cp.Chain], cp.Seq)
	}
	st, err := s.checkChain(r.Context(), watch)
	if err != nil {
		return err
	}
	out := client.AuditVerify{OK: st.bad == nil, Records: st.records, Chains: st.chains, Anchors: st.anchors}
	if st.bad != nil {
		out.BadChain, out.BadSeq, out.Problem = &st.bad.Chain, st.bad.Seq, st.bad.Error()
	} else {
		out.HeadHash = hex.EncodeToString(st.head)
	}
	if cp != nil {
		out.CheckpointSeq = &cp.Seq
		if out.OK {
			n := st.counts[cp.Chain]
			chain := cp.Chain
			var got []byte
			if w := st.walks[cp.Chain]; w != nil {
				got = w.hashAt(cp.Seq)
			}
			where := ""
			if cp.Chain != audit.LegacyChain {
				where = fmt.Sprintf(" of chain %d", cp.Chain)
			}
			switch {
			case cp.Seq > n:
				missing := fmt.Sprintf("record %d is", cp.Seq)
				if cp.Seq > n+1 {
					missing = fmt.Sprintf("records %d to %d are", n+1, cp.Seq)
				}
				out.OK, out.BadChain, out.BadSeq, out.HeadHash = false, &chain, n+1, ""
				out.Problem = fmt.Sprintf("audit log truncated: the checkpoint of %s vouches for record %d%s, the chain ends at record %d (%s missing: removed)",
					cp.Time.Format(time.RFC3339), cp.Seq, where, n, missing)
			case !bytes.Equal(got, cp.Hash):
				out.OK, out.BadChain, out.BadSeq, out.HeadHash = false, &chain, cp.Seq, ""
				out.Problem = fmt.Sprintf("audit chain broken at record %d%s: it does not match the checkpoint of %s (records up to it were rewritten)",
					cp.Seq, where, cp.Time.Format(time.RFC3339))
			}
		}
	}
	if !out.OK {
		info(r).result = "broken"
		info(r).detail = truncate(out.Problem, 200)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// parseCheckpoint reads a checkpoint from the wire and checks that this
// daemon's checkpoint key signed it.
func (s *Server) parseCheckpoint(in client.AuditCheckpoint) (audit.Checkpoint, error) {
	c := audit.Checkpoint{Chain: in.Chain, Seq: in.Seq, Time: in.Time}
	if in.Format != c.Format() {
		if in.Format != audit.CheckpointFormat && in.Format != audit.CheckpointFormatV1 {
			return audit.Checkpoint{}, badRequest("checkpoint: format: %q is not %q", truncate(in.Format, 64), audit.CheckpointFormat)
		}
		return audit.Checkpoint{}, badRequest("checkpoint: chain: %d does not go with format %q", in.Chain, in.Format)
	}
	var err error
	if c.Hash, err = hex.DecodeString(in.Hash); err != nil {
		return c, badRequest("checkpoint: hash: not hex")
	}
	if c.PublicKey, err = base64.StdEncoding.DecodeString(in.PublicKey); err != nil {
		return c, badRequest("checkpoint: public_key: not base64")
	}
	if c.Signature, err = base64.StdEncoding.DecodeString(in.Signature); err != nil {
		return c, badRequest("checkpoint: signature: not base64")
	}
	if err := c.Verify(s.signer.PublicKey()); err != nil {
		return c, badRequest("checkpoint: %s", strings.TrimPrefix(err.Error(), audit.ErrCheckpoint.Error()+": "))
	}
	return c, nil
}

func checkpointJSON(c audit.Checkpoint) client.AuditCheckpoint {
	return client.AuditCheckpoint{
		Format: c.Format(), Chain: c.Chain, Seq: c.Seq, Hash: hex.EncodeToString(c.Hash), Time: c.Time,
		PublicKey: base64.StdEncoding.EncodeToString(c.PublicKey), Signature: base64.StdEncoding.EncodeToString(c.Signature),
	}
}

// auditCheckpoint anchors the heads of every chain (or finds that the
// newest anchor binds them already), verifies the whole log, and signs
// that anchor: a checkpoint vouches for every record of every chain up to
// the anchor, so it is never signed over a log that is already broken.
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "audit", "checkpoint"); err != nil {
		return err
	}
	anchor, err := s.audit.Anchor(r.Context())
	if err != nil {
		return err
	}
	st, err := s.checkChain(r.Context(), map[int64][]int64{audit.AnchorChain: {anchor.Seq}})
	if err != nil {
		return err
	}
	if st.bad != nil {
		info(r).result = "broken"
		return &httpError{http.StatusConflict, fmt.Sprintf("no checkpoint signed: %s", st.bad.Error())}
	}
	hash := st.walks[audit.AnchorChain].hashAt(anchor.Seq)
	if anchor.Seq == 0 {
		hash = audit.Genesis()
	}
	c := s.signer.Sign(audit.AnchorChain, anchor.Seq, hash, s.now())
	info(r).detail = fmt.Sprintf("checkpoint chain=%d seq=%d hash=%x", c.Chain, c.Seq, c.Hash)
	writeJSON(w, http.StatusOK, checkpointJSON(c))
	return nil
}
