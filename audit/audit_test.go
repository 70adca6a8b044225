package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 11, 25, 12, 0, 0, 123456789, time.UTC)

// testKey is a fixed chain key: 32 bytes 0x00, 0x01, … 0x1f.
var testKey = func() Key {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = byte(i)
	}
	k, err := NewKey(b)
	if err != nil {
		panic(err)
	}
	return k
}()

// chain builds a sealed log of n records.
func chain(n int) []Record {
	recs := make([]Record, 0, n)
	var prev []byte
	for i := range n {
		r := testKey.Seal(prev, int64(i+1), Record{
			Time:      t0.Add(time.Duration(i) * time.Second),
			TokenID:   fmt.Sprintf("tok_%012x", i%7),
			Action:    []string{"secret.get", "secret.put", "rotate"}[i%3],
			Target:    fmt.Sprintf("app/db%d", i%5),
			Result:    []string{"ok", "denied", "error"}[i%3],
			RequestID: fmt.Sprintf("req-%d", i),
			Detail:    fmt.Sprintf("version %d", i),
		})
		prev = r.Hash
		recs = append(recs, r)
	}
	return recs
}

func clone(recs []Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		r.PrevHash = bytes.Clone(r.PrevHash)
		r.Hash = bytes.Clone(r.Hash)
		out[i] = r
	}
	return out
}

func wantBroken(t *testing.T, what string, err error, seq int64, reason string) {
	t.Helper()
	var be *BrokenError
	if !errors.As(err, &be) || !errors.Is(err, ErrBroken) {
		t.Fatalf("%s: Verify err = %v, want *BrokenError at %d", what, err, seq)
	}
	if be.Seq != seq || !strings.Contains(be.Reason, reason) {
		t.Fatalf("%s: Verify err = %q, want record %d, reason containing %q", what, err, seq, reason)
	}
}

func TestVerifyValid(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 100} {
		count, err := testKey.Verify(Records(chain(n)))
		if err != nil || count != int64(n) {
			t.Fatalf("Verify(chain of %d) = %d, %v; want %d, nil", n, count, err, n)
		}
	}
}

func TestSeal(t *testing.T) {
	t.Parallel()
	local := time.FixedZone("x", 3600)
	r := testKey.Seal(nil, 1, Record{Time: time.Now().In(local), Action: "a"})
	if r.Seq != 1 || !bytes.Equal(r.PrevHash, Genesis()) || len(r.Hash) != HashSize {
		t.Fatalf("Seal(nil, 1, …) = %+v, want Seq 1, genesis prev, a hash", r)
	}
	if r.Time.Location() != time.UTC || r.Time.Nanosecond()%1000 != 0 {
		t.Fatalf("Seal Time = %v, want UTC truncated to microseconds", r.Time)
	}
	// The hash does not depend on the zone or the monotonic clock reading.
	r2 := r
	r2.Time = r.Time.In(local)
	if !bytes.Equal(testKey.Chain(r.PrevHash, r2), r.Hash) {
		t.Fatal("Chain depends on the time zone")
	}
	if !bytes.Equal(Genesis(), make([]byte, 32)) {
		t.Fatal("Genesis is not 32 zero bytes")
	}
}

// TestChainVector pins both encodings: changing one breaks every stored log.
func TestChainVector(t *testing.T) {
	t.Parallel()
	r := Record{Seq: 1, Time: time.Unix(1700000000, 123456000).UTC(), TokenID: "tok_000000000001", Action: "secret.get",
		Target: "app/db", Result: "ok", RequestID: "req-1", Detail: "version 3"}
	got := hex.EncodeToString(ChainV1(Genesis(), r))
	const want = "cbcb1793b986a1ad5219c107deaa7c3f44ce41fd05799423762833eb2fe2a5e1"
	if got != want {
		t.Fatalf("ChainV1(vector) = %s, want %s", got, want)
	}
	got = hex.EncodeToString(testKey.Chain(Genesis(), r))
	const wantV2 = "e2705e1ec044d7e67599f99c6a1a99fc77c778c89f064aebe693b499e306dadf"
	if got != wantV2 {
		t.Fatalf("Key.Chain(vector) = %s, want %s", got, wantV2)
	}
}

// TestChainUnambiguous checks that moving bytes between fields changes the
// hash.
func TestChainUnambiguous(t *testing.T) {
	t.Parallel()
	a := Record{Seq: 1, Time: t0, TokenID: "ab", Action: "c"}
	b := Record{Seq: 1, Time: t0, TokenID: "a", Action: "bc"}
	if bytes.Equal(testKey.Chain(nil, a), testKey.Chain(nil, b)) {
		t.Fatal("Chain: shifting a byte between fields keeps the hash")
	}
	c := Record{Seq: 1, Time: t0, Detail: "x"}
	if bytes.Equal(testKey.Chain([]byte("x"), Record{Seq: 1, Time: t0}), testKey.Chain(nil, c)) {
		t.Fatal("Chain: moving a byte from prev into Detail keeps the hash")
	}
}

func TestVerifyAltered(t *testing.T) {
	t.Parallel()
	orig := chain(100)
	alters := map[string]func(*Record){
		"Seq":       func(r *Record) { r.Seq += 1000 },
		"Seq-1":     func(r *Record) { r.Seq-- },
		"Time":      func(r *Record) { r.Time = r.Time.Add(time.Microsecond) },
		"TokenID":   func(r *Record) { r.TokenID += "x" },
		"Action":    func(r *Record) { r.Action = "secret.delete" },
		"Target":    func(r *Record) { r.Target = "other" },
		"Result":    func(r *Record) { r.Result = "ok!" },
		"RequestID": func(r *Record) { r.RequestID = "" },
		"Detail":    func(r *Record) { r.Detail += " " },
		"PrevHash":  func(r *Record) { r.PrevHash[5] ^= 1 },
		"Hash":      func(r *Record) { r.Hash[31] ^= 0x80 },
		"HashShort": func(r *Record) { r.Hash = r.Hash[:16] },
	}
	for field, alter := range alters {
		for i := range orig {
			recs := clone(orig)
			alter(&recs[i])
			count, err := testKey.Verify(Records(recs))
			wantBroken(t, fmt.Sprintf("alter %s of record %d", field, i+1), err, int64(i+1), "hash mismatch (record altered)")
			if count != int64(i) {
				t.Fatalf("alter %s of record %d: count = %d, want %d", field, i+1, count, i)
			}
		}
	}
}

// TestVerifyRehashed: an attacker who alters a record and recomputes its
// hash is caught at the next record.
func TestVerifyRehashed(t *testing.T) {
	t.Parallel()
	recs := chain(100)
	recs[16].Detail = "forged"
	recs[16] = testKey.Seal(recs[16].PrevHash, recs[16].Seq, recs[16])
	_, err := testKey.Verify(Records(recs))
	wantBroken(t, "rehash record 17", err, 18, "prev-hash mismatch")
}

func TestVerifyRemoved(t *testing.T) {
	t.Parallel()
	orig := chain(100)
	for i := 0; i < len(orig)-1; i++ {
		recs := append(clone(orig[:i]), orig[i+1:]...)
		_, err := testKey.Verify(Records(recs))
		wantBroken(t, fmt.Sprintf("remove record %d", i+1), err, int64(i+2), fmt.Sprintf("seq gap: record %d missing (removed)", i+1))
	}
	recs := append(clone(orig[:10]), orig[15:]...)
	_, err := testKey.Verify(Records(recs))
	wantBroken(t, "remove records 11 to 15", err, 16, "records 11 to 15 missing")
}

// TestVerifyRemovedRenumbered: removing a record and renumbering and
// rehashing the next one is still caught there.
func TestVerifyRemovedRenumbered(t *testing.T) {
	t.Parallel()
	orig := chain(100)
	recs := append(clone(orig[:16]), orig[17:]...)
	recs[16] = testKey.Seal(recs[16].PrevHash, 17, recs[16])
	_, err := testKey.Verify(Records(recs))
	wantBroken(t, "remove 17 and renumber 18", err, 17, "prev-hash mismatch")
}

func TestVerifySwapped(t *testing.T) {
	t.Parallel()
	orig := chain(100)
	for _, p := range [][2]int{{0, 1}, {16, 17}, {16, 40}, {0, 99}, {98, 99}} {
		recs := clone(orig)
		recs[p[0]], recs[p[1]] = recs[p[1]], recs[p[0]]
		_, err := testKey.Verify(Records(recs))
		wantBroken(t, fmt.Sprintf("swap %d and %d", p[0]+1, p[1]+1), err, int64(p[0]+1), "reordered")
	}
}

func TestVerifyDuplicated(t *testing.T) {
	t.Parallel()
	orig := chain(100)
	recs := append(clone(orig[:50]), orig[49:]...)
	_, err := testKey.Verify(Records(recs))
	wantBroken(t, "duplicate record 50", err, 51, "reordered or duplicated")
}

// TestVerifyTruncated documents the limit: a log cut at its tail is a valid
// shorter chain; only a checkpoint of the head catches it.
func TestVerifyTruncated(t *testing.T) {
	t.Parallel()
	recs := chain(100)
	for _, n := range []int{99, 50, 1, 0} {
		count, err := testKey.Verify(Records(recs[:n]))
		if err != nil || count != int64(n) {
			t.Fatalf("Verify(first %d) = %d, %v; want %d, nil", n, count, err, n)
		}
	}
}

// TestVerifyHeadTruncated: cutting the start is a gap before record 1.
func TestVerifyHeadTruncated(t *testing.T) {
	t.Parallel()
	recs := chain(100)
	_, err := testKey.Verify(Records(recs[5:]))
	wantBroken(t, "drop records 1 to 5", err, 6, "records 1 to 5 missing")
}

func TestVerifyFrom(t *testing.T) {
	t.Parallel()
	recs := chain(100)
	count, err := testKey.VerifyFrom(40, recs[39].Hash, Records(recs[40:]))
	if err != nil || count != 60 {
		t.Fatalf("VerifyFrom(40) = %d, %v; want 60, nil", count, err)
	}
	_, err = testKey.VerifyFrom(40, recs[38].Hash, Records(recs[40:]))
	wantBroken(t, "VerifyFrom with a wrong checkpoint", err, 41, "prev-hash mismatch")
}

func TestVerifyReadError(t *testing.T) {
	t.Parallel()
	recs := chain(10)
	boom := errors.New("store down")
	next := Records(recs)
	n := 0
	count, err := testKey.Verify(func() (Record, bool, error) {
		if n++; n == 6 {
			return Record{}, false, boom
		}
		return next()
	})
	if !errors.Is(err, boom) || errors.Is(err, ErrBroken) || count != 5 {
		t.Fatalf("Verify with a failing source = %d, %v; want 5, wrapped store error", count, err)
	}
}

func TestBrokenErrorMessage(t *testing.T) {
	t.Parallel()
	err := &BrokenError{Seq: 17, Reason: "hash mismatch (record altered)"}
	if got, want := err.Error(), "audit chain broken at record 17: hash mismatch (record altered)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func BenchmarkChain(b *testing.B) {
	r := chain(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		testKey.Chain(r.PrevHash, r)
	}
}

func BenchmarkVerify1000(b *testing.B) {
	recs := chain(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := testKey.Verify(Records(recs)); err != nil {
			b.Fatal(err)
		}
	}
}
