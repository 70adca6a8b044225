package api

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/store"
)

// appendChain seals n records onto chain c of st under testKey.
func appendChain(t *testing.T, st store.Store, c int64, n int) []store.AuditRecord {
	t.Helper()
	ctx := context.Background()
	seq, head, err := st.AuditHead(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.AuditRecord
	for range n {
		r := testKey.Seal(head, seq+1, audit.Record{Chain: c, Time: time.Now(), TokenID: "tok", Action: "secret.get",
			Target: fmt.Sprintf("app/%d", c), Result: "ok", Detail: fmt.Sprintf("chain %d record %d", c, seq+1)})
		recs = append(recs, store.AuditRecord(r))
		seq, head = r.Seq, r.Hash
	}
	if err := st.AppendAudit(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	return recs
}

// rawExec runs SQL written with ? placeholders on either backend.
func rawExec(t *testing.T, db *sql.DB, dialect, q string, args ...any) {
	t.Helper()
	if dialect == "postgres" {
		for i := 1; strings.Contains(q, "?"); i++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestAuditVerifyChains: a log of the legacy chain, three writer chains
// and an anchor verifies; an edit, a deletion, a reorder or a truncation
// in a writer chain that is not the first (chain 3) is reported naming
// chain 3 and the record; truncating the newest records after the last
// anchor, with the head row rewritten to match, is not (the documented
// limit), unless an anchor (as a checkpoint writes) came after them.
func TestAuditVerifyChains(t *testing.T) {
	t.Parallel()
	type log struct {
		chain3 []store.AuditRecord // 7 records, 5 of them anchored
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, dialect string, l log, st store.Store)
		chain  int64 // -1: the log verifies
		seq    int64
		reason string
	}{
		{"untouched", func(*testing.T, *sql.DB, string, log, store.Store) {}, -1, 0, ""},
		{"edit", func(t *testing.T, db *sql.DB, d string, _ log, _ store.Store) {
			rawExec(t, db, d, `UPDATE audit SET detail = 'nothing to see' WHERE chain = 3 AND seq = 2`)
		}, 3, 2, "altered"},
		{"delete", func(t *testing.T, db *sql.DB, d string, _ log, _ store.Store) {
			rawExec(t, db, d, `DELETE FROM audit WHERE chain = 3 AND seq = 2`)
		}, 3, 3, "removed"},
		{"reorder", func(t *testing.T, db *sql.DB, d string, _ log, _ store.Store) {
			rawExec(t, db, d, `UPDATE audit SET seq = -2 WHERE chain = 3 AND seq = 2`)
			rawExec(t, db, d, `UPDATE audit SET seq = 2 WHERE chain = 3 AND seq = 3`)
			rawExec(t, db, d, `UPDATE audit SET seq = 3 WHERE chain = 3 AND seq = -2`)
		}, 3, 2, "altered"},
		// The chain id is part of the keyed hash: a record moved to
		// another chain (chain 3 cut back to match) does not verify there.
		{"move to another chain", func(t *testing.T, db *sql.DB, d string, l log, _ store.Store) {
			rawExec(t, db, d, `UPDATE audit SET chain = 9, seq = 1, prev_hash = ? WHERE chain = 3 AND seq = 7`, audit.Genesis())
			rawExec(t, db, d, `UPDATE audit_heads SET seq = 6, hash = ? WHERE chain = 3`, l.chain3[5].Hash)
		}, 9, 1, "altered"},
		{"truncate anchored records, head rewritten", func(t *testing.T, db *sql.DB, d string, l log, _ store.Store) {
			rawExec(t, db, d, `DELETE FROM audit WHERE chain = 3 AND seq >= 4`)
			rawExec(t, db, d, `UPDATE audit_heads SET seq = 3, hash = ? WHERE chain = 3`, l.chain3[2].Hash)
		}, 3, 4, "anchor 1 vouches for record 5"},
		{"drop the whole chain and its head", func(t *testing.T, db *sql.DB, d string, _ log, _ store.Store) {
			rawExec(t, db, d, `DELETE FROM audit WHERE chain = 3`)
			rawExec(t, db, d, `DELETE FROM audit_heads WHERE chain = 3`)
		}, 3, 1, "truncated"},
		{"truncate the tail, head row left", func(t *testing.T, db *sql.DB, d string, _ log, _ store.Store) {
			rawExec(t, db, d, `DELETE FROM audit WHERE chain = 3 AND seq >= 6`)
		}, 3, 6, "records removed"},
		{"truncate after the last anchor, head rewritten (not detected)", func(t *testing.T, db *sql.DB, d string, l log, _ store.Store) {
			rawExec(t, db, d, `DELETE FROM audit WHERE chain = 3 AND seq >= 6`)
			rawExec(t, db, d, `UPDATE audit_heads SET seq = 5, hash = ? WHERE chain = 3`, l.chain3[4].Hash)
		}, -1, 0, ""},
		{"truncate after a newer anchor, head rewritten", func(t *testing.T, db *sql.DB, d string, l log, st store.Store) {
			if _, err := newAuditLog(st, testKey, time.Now, slog.New(slog.DiscardHandler), 1, 0, 0).Anchor(context.Background()); err != nil {
				t.Fatal(err)
			}
			rawExec(t, db, d, `DELETE FROM audit WHERE chain = 3 AND seq >= 6`)
			rawExec(t, db, d, `UPDATE audit_heads SET seq = 5, hash = ? WHERE chain = 3`, l.chain3[4].Hash)
		}, 3, 6, "anchor 2 vouches for record 7"},
		{"anchor edited", func(t *testing.T, db *sql.DB, d string, _ log, _ store.Store) {
			rawExec(t, db, d, `UPDATE audit SET detail = 'heads=' WHERE chain = 1 AND seq = 1`)
		}, 1, 1, "altered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for name, ss := range openStores(t) {
				t.Run(name, func(t *testing.T) {
					ctx := context.Background()
					st := ss.pair[0]
					appendChain(t, st, audit.LegacyChain, 2)
					appendChain(t, st, 2, 5)
					c3 := appendChain(t, st, 3, 5)
					appendChain(t, st, 4, 5)
					al := newAuditLog(st, testKey, time.Now, slog.New(slog.DiscardHandler), 1, 0, 0)
					a, err := al.Anchor(ctx)
					if err != nil || a.Seq != 1 || a.Chain != audit.AnchorChain {
						t.Fatalf("Anchor = %+v, %v; want anchor record 1", a, err)
					}
					if again, err := al.Anchor(ctx); err != nil || again.Seq != 1 {
						t.Fatalf("Anchor with no chain moved = %+v, %v; want anchor 1 again, nothing written", again, err)
					}
					c3 = append(c3, appendChain(t, st, 3, 2)...)
					tc.tamper(t, ss.raw, name, log{chain3: c3}, st)
					s := &Server{st: st, auditKey: testKey}
					got, err := s.checkChain(ctx, nil)
					if err != nil {
						t.Fatal(err)
					}
					if tc.chain < 0 {
						if got.bad != nil {
							t.Fatalf("verify = %v, want the log intact", got.bad)
						}
						if got.chains != 5 || got.anchors < 1 {
							t.Fatalf("verify checked %d chains and %d anchors, want 5 and at least 1", got.chains, got.anchors)
						}
						return
					}
					if got.bad == nil || got.bad.Chain != tc.chain || got.bad.Seq != tc.seq || !strings.Contains(got.bad.Error(), tc.reason) {
						t.Fatalf("verify = %v, want chain %d record %d broken (%s)", got.bad, tc.chain, tc.seq, tc.reason)
					}
					if want := fmt.Sprintf("audit chain %d broken at record %d", tc.chain, tc.seq); !strings.Contains(got.bad.Error(), want) {
						t.Fatalf("verify = %q, want it to say %q", got.bad.Error(), want)
					}
				})
			}
		})
	}
}

// TestAuditLogTwoDaemons: two daemons' group committers (two writers
// each) append concurrently to one store; every record lands exactly once
// in some writer chain, each read back through verify, the anchors written
// by both (every 10 records, and at Stop) bind every chain, and the whole
// log verifies. On PostgreSQL the writers use several chains.
func TestAuditLogTwoDaemons(t *testing.T) {
	t.Parallel()
	for name, ss := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var logs [2]*auditLog
			for i := range logs {
				logs[i] = newAuditLog(ss.pair[i], testKey, time.Now, slog.New(slog.DiscardHandler), 2, 10, time.Hour)
				if err := logs[i].Start(ctx); err != nil {
					t.Fatal(err)
				}
			}
			const clients, each = 8, 25
			errs := make(chan error, clients*each)
			done := make(chan struct{})
			for c := range clients {
				go func() {
					defer func() { done <- struct{}{} }()
					for i := range each {
						errs <- logs[c%2].Append(ctx, store.AuditRecord{Time: time.Now(), TokenID: "tok", Action: "secret.get",
							Target: fmt.Sprintf("app/%d/%d", c, i), Result: "ok"})
					}
				}()
			}
			for range clients {
				<-done
			}
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
			}
			for _, l := range logs {
				l.Stop()
			}
			s := &Server{st: ss.pair[0], auditKey: testKey}
			got, err := s.checkChain(ctx, nil)
			if err != nil || got.bad != nil {
				t.Fatalf("verify = %+v, %v; want intact", got.bad, err)
			}
			if got.records-got.anchors != clients*each || got.anchors < 1 {
				t.Fatalf("verify counted %d records with %d anchors, want %d requests and at least one anchor", got.records, got.anchors, clients*each)
			}
			seen := map[string]bool{}
			writers := 0
			for c, n := range got.counts {
				if c < audit.FirstWriterChain || n == 0 {
					continue
				}
				writers++
				recs, err := ss.pair[0].ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: c})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					if seen[r.Target] {
						t.Fatalf("record for %s twice", r.Target)
					}
					seen[r.Target] = true
				}
			}
			if len(seen) != clients*each {
				t.Fatalf("%d distinct records in the writer chains, want %d", len(seen), clients*each)
			}
			// The last anchor binds every writer chain's final head.
			seq, _, _ := ss.pair[0].AuditHead(ctx, audit.AnchorChain)
			last, _ := ss.pair[0].ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: audit.AnchorChain, AfterSeq: seq - 1})
			heads, _ := audit.ParseAnchor(last[0].Detail)
			if len(heads) != writers {
				t.Fatalf("last anchor %q binds %d chains, want the %d writer chains", last[0].Detail, len(heads), writers)
			}
			if name == "postgres" && writers < 2 {
				t.Errorf("four writers on PostgreSQL used %d chain(s), want several", writers)
			}
		})
	}
}

// TestAuditCheckpointV1StillVerifies: a checkpoint taken before the log
// had several chains (format v1, no chain) names a record of the legacy
// chain; it still parses and matches that chain after the upgrade. A v2
// document naming chain 0, or v1 naming another chain, is refused.
func TestAuditCheckpointV1StillVerifies(t *testing.T) {
	t.Parallel()
	for name, ss := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := ss.pair[0]
			legacy := appendChain(t, st, audit.LegacyChain, 3)
			appendChain(t, st, 2, 2)
			signer, err := audit.NewSigner(bytes.Repeat([]byte{9}, 32))
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{st: st, auditKey: testKey, signer: signer}
			old := checkpointJSON(signer.Sign(audit.LegacyChain, 3, legacy[2].Hash, time.Now()))
			if old.Format != audit.CheckpointFormatV1 || old.Chain != 0 {
				t.Fatalf("a legacy-chain checkpoint = %+v, want format v1 without a chain", old)
			}
			cp, err := s.parseCheckpoint(old)
			if err != nil {
				t.Fatalf("parseCheckpoint(v1) = %v", err)
			}
			got, err := s.checkChain(ctx, map[int64][]int64{cp.Chain: {cp.Seq}})
			if err != nil || got.bad != nil {
				t.Fatalf("verify = %v, %v", got.bad, err)
			}
			if h := got.walks[audit.LegacyChain].hashAt(cp.Seq); !bytes.Equal(h, cp.Hash) {
				t.Fatalf("legacy record 3 = %x, checkpoint says %x", h, cp.Hash)
			}
			bad := old
			bad.Format = audit.CheckpointFormat
			if _, err := s.parseCheckpoint(bad); err == nil || !strings.Contains(err.Error(), "chain") {
				t.Fatalf("parseCheckpoint(v2 naming chain 0) = %v, want refused naming the chain", err)
			}
			bad = checkpointJSON(signer.Sign(audit.AnchorChain, 1, legacy[0].Hash, time.Now()))
			bad.Format = audit.CheckpointFormatV1
			if _, err := s.parseCheckpoint(bad); err == nil {
				t.Fatal("parseCheckpoint(v1 naming chain 1) accepted")
			}
		})
	}
}
