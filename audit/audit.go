package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record is one entry of the audit log. Its fields are those of
// store.AuditRecord.
type Record struct {
	Seq       int64
	Time      time.Time
	TokenID   string
	Action    string
	Target    string
	Result    string
	RequestID string
	Detail    string // never a secret value; see the package documentation
	PrevHash  []byte
	Hash      []byte
}

// HashSize is the length of PrevHash and Hash.
const HashSize = sha256.Size

// version tags the encoding so that a future format cannot collide with
// this one.
const version = "rotary-audit-v1\x00"

// Genesis returns the PrevHash of the first record: 32 zero bytes.
func Genesis() []byte { return make([]byte, HashSize) }

// Chain returns the hash of r linked to prev, the hash of the record before
// it. It reads r's Seq, Time and text fields and ignores r.PrevHash and
// r.Hash.
func Chain(prev []byte, r Record) []byte {
	n := len(version) + 8 + 8 + 4*7 + len(prev) + len(r.TokenID) + len(r.Action) +
		len(r.Target) + len(r.Result) + len(r.RequestID) + len(r.Detail)
	b := make([]byte, 0, n)
	b = append(b, version...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixMicro()))
	b = appendField(b, prev)
	for _, s := range []string{r.TokenID, r.Action, r.Target, r.Result, r.RequestID, r.Detail} {
		b = appendField(b, []byte(s))
	}
	h := sha256.Sum256(b)
	return h[:]
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// Seal makes r the record with number seq following the record whose hash
// is prevHash: it sets Seq, truncates Time to microseconds in UTC, and sets
// PrevHash and Hash. An empty prevHash means r is the first record and
// links to Genesis. Appending, with the head from the store:
//
//	seq, head, err := st.AuditHead(ctx)
//	rec := audit.Seal(head, seq+1, audit.Record{Time: now, TokenID: …})
func Seal(prevHash []byte, seq int64, r Record) Record {
	if len(prevHash) == 0 {
		prevHash = Genesis()
	}
	r.Seq = seq
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	r.PrevHash = bytes.Clone(prevHash)
	r.Hash = Chain(r.PrevHash, r)
	return r
}

// ErrBroken matches every *BrokenError with errors.Is.
var ErrBroken = errors.New("audit chain broken")

// BrokenError names the first record of the log that cannot be trusted.
type BrokenError struct {
	Seq    int64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at record %d: %s", e.Seq, e.Reason)
}

// Is makes errors.Is(err, ErrBroken) true.
func (e *BrokenError) Is(target error) bool { return target == ErrBroken }

// Verify reads the whole log from next, in Seq order from the first record,
// and checks the chain. next returns the following record, or false at the
// end; the caller pages through the store inside it. Verify returns how
// many records it checked and found sound; on a broken chain the error is a
// *BrokenError naming the first bad record, and an error from next is
// returned wrapped.
//
// On a jump in Seq, Verify reads on to the end of the log to tell removed
// records from reordered ones; otherwise it stops at the first bad record.
// A valid result says nothing about records cut from the end: compare the
// count and the last Hash with a checkpoint for that.
func Verify(next func() (Record, bool, error)) (count int64, err error) {
	return VerifyFrom(0, nil, next)
}

// VerifyFrom is Verify for a log read from record afterSeq+1 on, where
// afterHash is the Hash of record afterSeq taken from a trusted checkpoint.
// VerifyFrom(0, nil, next) verifies from the beginning.
func VerifyFrom(afterSeq int64, afterHash []byte, next func() (Record, bool, error)) (count int64, err error) {
	want := afterSeq + 1
	prev := afterHash
	if afterSeq == 0 && len(prev) == 0 {
		prev = Genesis()
	}
	for {
		r, ok, err := next()
		if err != nil {
			return count, fmt.Errorf("audit verify: reading the record after %d: %w", want-1, err)
		}
		if !ok {
			return count, nil
		}
		if !bytes.Equal(Chain(r.PrevHash, r), r.Hash) {
			// Whatever the record says its Seq is, it stands where record
			// want should be.
			return count, &BrokenError{Seq: want, Reason: "hash mismatch (record altered)"}
		}
		switch {
		case r.Seq > want:
			// Either records want..r.Seq-1 were removed, or they come later
			// (reordered). Read on to tell which.
			if found, err := seen(want, next); err == nil && found {
				return count, &BrokenError{Seq: want, Reason: fmt.Sprintf("seq out of order: found record %d where %d was expected (records reordered)", r.Seq, want)}
			}
			missing := fmt.Sprintf("record %d", want)
			if r.Seq-want > 1 {
				missing = fmt.Sprintf("records %d to %d", want, r.Seq-1)
			}
			return count, &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("seq gap: %s missing (removed)", missing)}
		case r.Seq < want:
			return count, &BrokenError{Seq: want, Reason: fmt.Sprintf("seq out of order: found record %d where %d was expected (records reordered or duplicated)", r.Seq, want)}
		}
		if !bytes.Equal(r.PrevHash, prev) {
			return count, &BrokenError{Seq: want, Reason: "prev-hash mismatch (a record before it was altered or removed)"}
		}
		prev = r.Hash
		want++
		count++
	}
}

// seen reads the rest of the log looking for a record numbered seq.
func seen(seq int64, next func() (Record, bool, error)) (bool, error) {
	for {
		r, ok, err := next()
		if err != nil || !ok {
			return false, err
		}
		if r.Seq == seq {
			return true, nil
		}
	}
}

// Records returns a next function for Verify over a slice.
func Records(recs []Record) func() (Record, bool, error) {
	i := 0
	return func() (Record, bool, error) {
		if i >= len(recs) {
			return Record{}, false, nil
		}
		i++
		return recs[i-1], true, nil
	}
}
