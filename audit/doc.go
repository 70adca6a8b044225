// Package audit keeps rotary's append-only, hash-chained audit log and
// verifies it.
//
// Every request produces one Record: who (TokenID), what (Action), on what
// (Target), how it ended (Result), the request id and a short Detail.
// Detail must never carry a secret value, a token or key material, only
// facts about them (a version number, a fingerprint, a reason). This package
// cannot tell a value from a description, so the callers that build records
// are responsible.
//
// # The chain
//
// Record n carries PrevHash, the Hash of record n-1 (32 zero bytes for the
// first record, Seq 1), and its own Hash:
//
//	Hash = SHA-256(encoding of Seq, Time, PrevHash and every text field)
//
// The encoding is unambiguous: a version tag, then Seq as 8 bytes
// big-endian, Time as Unix microseconds (8 bytes big-endian, two's
// complement), then PrevHash, TokenID, Action, Target, Result, RequestID
// and Detail, each preceded by its length as 4 bytes big-endian. No two
// different records encode the same way, so no field can be shifted into
// another. Time is hashed at microsecond precision because PostgreSQL keeps
// no more; Seal truncates Time to match, so a record read back from any
// store hashes the same.
//
// # What verification proves
//
// Verify walks the log in Seq order and stops at the first record that
// cannot be trusted:
//
//   - a record whose Hash does not match its contents was altered
//     (Seq is where it stands, the Seq that was expected there);
//   - a record whose PrevHash does not match the Hash of the record before
//     it follows an altered or removed record;
//   - a jump in Seq means records were removed (Seq names the first record
//     after the gap), unless the missing Seq turns up later, which means
//     records were reordered (Seq names the first misplaced position);
//   - a Seq lower than expected means records were reordered or duplicated.
//
// The chain has no key: someone who can rewrite the store can rewrite a
// record and every record after it. It also cannot see the tail being cut
// off: a truncated log is a valid shorter chain. Both are caught only by
// comparing the head (the last Seq and its Hash, from store.AuditHead) with
// a checkpoint kept elsewhere: printed by `rotary audit verify`, shipped to
// a log collector, or written to a second store.
package audit
