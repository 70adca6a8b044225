package api

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "audit", "verify"); err != nil {
		return err
	}
	if r.ContentLength > 0 {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	// Page through the chain; the verifier streams.
	const page = 5000
	var buf []store.AuditRecord
	var after int64
	var lastHash []byte
	i := 0
	next := func() (audit.Record, bool, error) {
		if i == len(buf) {
			recs, err := s.st.ListAudit(r.Context(), store.AuditFilter{AfterSeq: after, Limit: page})
			if err != nil {
				return audit.Record{}, false, err
			}
			if len(recs) == 0 {
				return audit.Record{}, false, nil
			}
			buf, i = recs, 0
			after = recs[len(recs)-1].Seq
		}
		rec := buf[i]
		i++
		lastHash = rec.Hash
		return audit.Record(rec), true, nil
	}
	n, err := audit.Verify(next)
	out := client.AuditVerify{OK: err == nil, Records: n}
	var be *audit.BrokenError
	switch {
	case errors.As(err, &be):
		out.BadSeq, out.Problem = be.Seq, be.Error()
		info(r).result = "broken"
	case err != nil:
		return err
	}
	seq, head, herr := s.st.AuditHead(r.Context())
	if herr == nil && out.OK {
		out.HeadHash = hex.EncodeToString(head)
		switch {
		case seq != n:
			out.OK, out.BadSeq = false, n+1
			out.Problem = fmt.Sprintf("audit chain broken at record %d: the head says %d records, the chain has %d (records removed)", n+1, seq, n)
			info(r).result = "broken"
		case n > 0 && !bytes.Equal(head, lastHash):
			out.OK, out.BadSeq = false, n
			out.Problem = fmt.Sprintf("audit chain broken at record %d: it does not match the head hash (the newest records were rewritten)", n)
			info(r).result = "broken"
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
