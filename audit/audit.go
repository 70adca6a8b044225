package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record is one entry of the audit log. Its fields are those of
// store.AuditRecord.
type Record struct {
	Chain     int64 // which chain the record belongs to; see the package documentation
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

// KeySize is the length of a chain Key.
const KeySize = 32

// Version tags of the two encodings, so that the two hashes of one record
// never collide and a future format cannot collide with either.
const (
	tagV1 = "rotary-audit-v1\x00"
	tagV2 = "rotary-audit-v2\x00"
	tagV3 = "rotary-audit-v3\x00"
)

// The chains of the log (see the package documentation).
const (
	// LegacyChain is the single chain of stores written before the log
	// had several: its records keep the version 2 encoding, which names
	// no chain, and nothing appends to it once the daemon has migrated it.
	LegacyChain int64 = 0
	// AnchorChain holds the anchor records, which bind the heads of every
	// other chain.
	AnchorChain int64 = 1
	// FirstWriterChain is the lowest chain a writer appends to; writers
	// take chains FirstWriterChain, FirstWriterChain+1, … as they need them.
	FirstWriterChain int64 = 2
)

// Genesis returns the PrevHash of the first record: 32 zero bytes.
func Genesis() []byte { return make([]byte, HashSize) }

// Key is the secret key of the chain (version 2): every Hash is
// HMAC-SHA-256 under it, so someone who can write the store but does not
// hold the key cannot forge a record or recompute the chain after one. The
// daemon derives it from the root key. A Key never prints its bytes; the
// zero Key is invalid and seals nothing.
type Key struct{ k []byte }

// ErrNoKey is returned for a zero Key or key bytes of the wrong size.
var ErrNoKey = errors.New("audit: the chain key must be 32 bytes")

// NewKey makes a Key from KeySize bytes (copied).
func NewKey(b []byte) (Key, error) {
	if len(b) != KeySize {
		return Key{}, ErrNoKey
	}
	return Key{k: bytes.Clone(b)}, nil
}

// Valid reports whether k was made by NewKey.
func (k Key) Valid() bool { return len(k.k) == KeySize }

// String, GoString and Format never show the key.
func (Key) String() string               { return "[redacted]" }
func (Key) GoString() string             { return "[redacted]" }
func (Key) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte("[redacted]")) }
func (Key) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Chain returns the keyed hash of r linked to prev, the hash of the record
// before it:
//
//	HMAC-SHA-256(k, encoding of r with the v2 tag)
//
// It reads r's Chain, Seq, Time and text fields and ignores r.PrevHash
// and r.Hash. Records of LegacyChain use the version 2 encoding (no chain
// id); every other chain's use version 3, which starts with the chain id,
// so a record moved to another chain no longer verifies. It panics on an invalid Key: an unkeyed chain is what version 2 exists
// to prevent.
func (k Key) Chain(prev []byte, r Record) []byte {
	if !k.Valid() {
		panic("audit: Chain with an invalid Key")
	}
	m := hmac.New(sha256.New, k.k)
	if r.Chain == LegacyChain {
		m.Write(encode(tagV2, prev, r))
	} else {
		m.Write(encode(tagV3, prev, r))
	}
	return m.Sum(nil)
}

// ChainV1 is the unkeyed hash of version 1, SHA-256 of the encoding with
// the v1 tag. Anyone who can write the store can recompute it, so it is
// used only to verify a version 1 log before it is migrated (see
// MigrateV1), and by tests that build such logs.
func ChainV1(prev []byte, r Record) []byte {
	h := sha256.Sum256(encode(tagV1, prev, r))
	return h[:]
}

func encode(tag string, prev []byte, r Record) []byte {
	n := len(tag) + 8 + 8 + 8 + 4*7 + len(prev) + len(r.TokenID) + len(r.Action) +
		len(r.Target) + len(r.Result) + len(r.RequestID) + len(r.Detail)
	b := make([]byte, 0, n)
	b = append(b, tag...)
	if tag == tagV3 {
		b = binary.BigEndian.AppendUint64(b, uint64(r.Chain))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixMicro()))
	b = appendField(b, prev)
	for _, s := range []string{r.TokenID, r.Action, r.Target, r.Result, r.RequestID, r.Detail} {
		b = appendField(b, []byte(s))
	}
	return b
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// Seal makes r (of chain r.Chain) the record with number seq following the record whose hash
// is prevHash: it sets Seq, truncates Time to microseconds in UTC, and sets
// PrevHash and the keyed Hash. An empty prevHash means r is the first
// record and links to Genesis. Appending, with the head from the store:
//
//	seq, head, err := st.AuditHead(ctx)
//	rec := key.Seal(head, seq+1, audit.Record{Time: now, TokenID: …})
func (k Key) Seal(prevHash []byte, seq int64, r Record) Record {
	return seal(k.Chain, prevHash, seq, r)
}

// SealV1 is Seal with the unkeyed version 1 hash. Nothing in rotary
// writes version 1 records any more; tests use it to build the logs of
// older stores.
func SealV1(prevHash []byte, seq int64, r Record) Record {
	return seal(ChainV1, prevHash, seq, r)
}

func seal(chain func([]byte, Record) []byte, prevHash []byte, seq int64, r Record) Record {
	if len(prevHash) == 0 {
		prevHash = Genesis()
	}
	r.Seq = seq
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	r.PrevHash = bytes.Clone(prevHash)
	r.Hash = chain(r.PrevHash, r)
	return r
}

// ErrBroken matches every *BrokenError with errors.Is.
var ErrBroken = errors.New("audit chain broken")

// BrokenError names the first record of the log that cannot be trusted.
type BrokenError struct {
	Chain  int64
	Seq    int64
	Reason string
}

func (e *BrokenError) Error() string {
	if e.Chain == LegacyChain {
		return fmt.Sprintf("audit chain broken at record %d: %s", e.Seq, e.Reason)
	}
	return fmt.Sprintf("audit chain %d broken at record %d: %s", e.Chain, e.Seq, e.Reason)
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
func (k Key) Verify(next func() (Record, bool, error)) (count int64, err error) {
	return k.VerifyFrom(0, nil, next)
}

// VerifyV1 is Verify for a version 1 (unkeyed) log.
func VerifyV1(next func() (Record, bool, error)) (count int64, err error) {
	return verifyFrom(ChainV1, 0, nil, next)
}

// VerifyFrom is Verify for a log read from record afterSeq+1 on, where
// afterHash is the Hash of record afterSeq taken from a trusted checkpoint.
// k.VerifyFrom(0, nil, next) verifies from the beginning.
func (k Key) VerifyFrom(afterSeq int64, afterHash []byte, next func() (Record, bool, error)) (count int64, err error) {
	if !k.Valid() {
		return 0, ErrNoKey
	}
	return verifyFrom(k.Chain, afterSeq, afterHash, next)
}

func verifyFrom(chain func([]byte, Record) []byte, afterSeq int64, afterHash []byte, next func() (Record, bool, error)) (count int64, err error) {
	var id int64 = -1 // the chain walked, from its first record
	defer func() {
		var b *BrokenError
		if errors.As(err, &b) && id >= 0 {
			b.Chain = id
		}
	}()
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
		if id < 0 {
			id = r.Chain
		} else if r.Chain != id {
			return count, &BrokenError{Seq: want, Reason: fmt.Sprintf("record of chain %d found in chain %d", r.Chain, id)}
		}
		if !hmac.Equal(chain(r.PrevHash, r), r.Hash) {
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
