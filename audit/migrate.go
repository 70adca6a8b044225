package audit

import (
	"bytes"
	"crypto/hmac"
	"fmt"
)

// Migration re-chains a version 1 (unkeyed) log under a Key. Feed Next
// the log's records in Seq order from record 1; it checks each against the
// version 1 chain and returns it with the keyed PrevHash and Hash. See the
// package documentation for when the daemon runs it.
type Migration struct {
	k      Key
	want   int64
	prevV1 []byte
	prevV2 []byte
}

// MigrateV1 starts a migration of a version 1 log to k.
func (k Key) MigrateV1() *Migration {
	return &Migration{k: k, want: 1, prevV1: Genesis(), prevV2: Genesis()}
}

// Next checks r, the next record of the version 1 log, and returns it
// sealed under the key, linked to the previous record's new hash. A record
// that does not continue the version 1 chain is a *BrokenError naming it:
// a log that cannot be trusted as it is must not be vouched for by the key.
func (m *Migration) Next(r Record) (Record, error) {
	if !m.k.Valid() {
		return Record{}, ErrNoKey
	}
	switch {
	case r.Seq != m.want:
		return Record{}, &BrokenError{Seq: m.want, Reason: fmt.Sprintf("version 1 chain: found record %d where %d was expected (records removed or reordered)", r.Seq, m.want)}
	case !hmac.Equal(ChainV1(r.PrevHash, r), r.Hash):
		return Record{}, &BrokenError{Seq: m.want, Reason: "version 1 chain: hash mismatch (record altered, or not a version 1 record)"}
	case !bytes.Equal(r.PrevHash, m.prevV1):
		return Record{}, &BrokenError{Seq: m.want, Reason: "version 1 chain: prev-hash mismatch (a record before it was altered or removed)"}
	}
	m.prevV1 = r.Hash
	out := m.k.Seal(m.prevV2, r.Seq, r)
	m.prevV2 = out.Hash
	m.want++
	return out, nil
}

// Count returns how many records Next has re-chained.
func (m *Migration) Count() int64 { return m.want - 1 }

// HeadV1 returns the version 1 hash of the last record re-chained (the
// Genesis hash before the first).
func (m *Migration) HeadV1() []byte { return bytes.Clone(m.prevV1) }
