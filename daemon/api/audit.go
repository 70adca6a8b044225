package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/store"
)

func auditJSON(rec store.AuditRecord) client.AuditRecord {
	return client.AuditRecord{
		Seq: rec.Seq, Time: rec.Time, TokenID: rec.TokenID, Action: rec.Action, Target: rec.Target,
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

// chainWalk reads the whole chain through the store, page by page, for
// audit.Key.Verify, and remembers the hashes of the records it is asked
// about.
type chainWalk struct {
	ctx   context.Context
	st    store.Ops
	buf   []store.AuditRecord
	i     int
	after int64
	last  []byte
	watch map[int64][]byte // seq → its hash, filled as the walk passes it
}

func newChainWalk(ctx context.Context, st store.Ops, watch ...int64) *chainWalk {
	w := &chainWalk{ctx: ctx, st: st, watch: map[int64][]byte{}}
	for _, seq := range watch {
		w.watch[seq] = nil
	}
	return w
}

func (w *chainWalk) next() (audit.Record, bool, error) {
	const page = 5000
	if w.i == len(w.buf) {
		recs, err := w.st.ListAudit(w.ctx, store.AuditFilter{AfterSeq: w.after, Limit: page})
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
	return audit.Record(rec), true, nil
}

// hashAt returns the hash the walk saw for a watched record (Genesis for
// record 0), or nil if it never reached it.
func (w *chainWalk) hashAt(seq int64) []byte {
	if seq == 0 {
		return audit.Genesis()
	}
	return w.watch[seq]
}

// chainState is the outcome of checking the whole log against the head
// row the store keeps.
type chainState struct {
	records int64
	head    []byte // hash of the last record verified
	bad     *audit.BrokenError
	walk    *chainWalk
}

// checkChain verifies the keyed chain from record 1 and compares it with
// the head row, which is read first so that records appended meanwhile
// do not look like a mismatch. watch names records whose hashes the caller
// wants (a checkpoint's). An error is a store failure; a broken chain is
// in bad.
func (s *Server) checkChain(ctx context.Context, watch ...int64) (chainState, error) {
	headSeq, headHash, err := s.st.AuditHead(ctx)
	if err != nil {
		return chainState{}, err
	}
	w := newChainWalk(ctx, s.st, append(watch, headSeq)...)
	n, err := s.auditKey.Verify(w.next)
	st := chainState{records: n, head: w.last, walk: w}
	if errors.As(err, &st.bad) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	switch {
	case n < headSeq:
		st.bad = &audit.BrokenError{Seq: n + 1, Reason: fmt.Sprintf("the head says %d records, the chain has %d (records removed)", headSeq, n)}
	case headSeq > 0 && !bytes.Equal(w.hashAt(headSeq), headHash):
		st.bad = &audit.BrokenError{Seq: headSeq, Reason: "it does not match the head hash (the newest records were rewritten)"}
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
			info(r).detail = fmt.Sprintf("checkpoint seq=%d", c.Seq)
		}
	}
	var watch []int64
	if cp != nil {
		watch = append(watch, cp.Seq)
	}
	st, err := s.checkChain(r.Context(), watch...)
	if err != nil {
		return err
	}
	out := client.AuditVerify{OK: st.bad == nil, Records: st.records}
	if st.bad != nil {
		out.BadSeq, out.Problem = st.bad.Seq, st.bad.Error()
	} else {
		out.HeadHash = hex.EncodeToString(st.head)
	}
	if cp != nil {
		out.CheckpointSeq = &cp.Seq
		if out.OK {
			switch got := st.walk.hashAt(cp.Seq); {
			case cp.Seq > st.records:
				missing := fmt.Sprintf("record %d is", cp.Seq)
				if cp.Seq > st.records+1 {
					missing = fmt.Sprintf("records %d to %d are", st.records+1, cp.Seq)
				}
				out.OK, out.BadSeq, out.HeadHash = false, st.records+1, ""
				out.Problem = fmt.Sprintf("audit log truncated: the checkpoint of %s vouches for record %d, the log ends at record %d (%s missing: removed)",
					cp.Time.Format(time.RFC3339), cp.Seq, st.records, missing)
			case !bytes.Equal(got, cp.Hash):
				out.OK, out.BadSeq, out.HeadHash = false, cp.Seq, ""
				out.Problem = fmt.Sprintf("audit chain broken at record %d: it does not match the checkpoint of %s (records up to it were rewritten)",
					cp.Seq, cp.Time.Format(time.RFC3339))
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
	if in.Format != audit.CheckpointFormat {
		return audit.Checkpoint{}, badRequest("checkpoint: format: %q is not %q", truncate(in.Format, 64), audit.CheckpointFormat)
	}
	c := audit.Checkpoint{Seq: in.Seq, Time: in.Time}
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
		Format: audit.CheckpointFormat, Seq: c.Seq, Hash: hex.EncodeToString(c.Hash), Time: c.Time,
		PublicKey: base64.StdEncoding.EncodeToString(c.PublicKey), Signature: base64.StdEncoding.EncodeToString(c.Signature),
	}
}

// auditCheckpoint signs the head of the log. It verifies the whole chain
// first: a checkpoint vouches for every record up to its head, so it is
// never signed over a log that is already broken.
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "audit", "checkpoint"); err != nil {
		return err
	}
	st, err := s.checkChain(r.Context())
	if err != nil {
		return err
	}
	if st.bad != nil {
		info(r).result = "broken"
		return &httpError{http.StatusConflict, fmt.Sprintf("no checkpoint signed: %s", st.bad.Error())}
	}
	head := st.head
	if st.records == 0 {
		head = audit.Genesis()
	}
	c := s.signer.Sign(st.records, head, s.now())
	info(r).detail = fmt.Sprintf("checkpoint seq=%d hash=%x", c.Seq, c.Hash)
	writeJSON(w, http.StatusOK, checkpointJSON(c))
	return nil
}
