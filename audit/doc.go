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
//	Hash = HMAC-SHA-256(chain key, encoding of Seq, Time, PrevHash and every text field)
//
// The chain key (a Key) is derived from the root key (kms.DeriveKey with
// the label "rotary audit chain v2", HKDF-SHA-256) and never stored, so
// someone who can write the store but does not hold the root key cannot
// forge a record, nor recompute the chain after altering, inserting or
// removing one. Every writer seals with it: the API's group committer and
// secrets.Service, inside the transaction of the change they record.
//
// The encoding is unambiguous: a version tag ("rotary-audit-v2\x00"),
// then Seq as 8 bytes big-endian, Time as Unix microseconds (8 bytes
// big-endian, two's complement), then PrevHash, TokenID, Action, Target,
// Result, RequestID and Detail, each preceded by its length as 4 bytes
// big-endian. No two different records encode the same way, so no field
// can be shifted into another. Time is hashed at microsecond precision
// because PostgreSQL keeps no more; Seal truncates Time to match, so a
// record read back from any store hashes the same.
//
// # Version 1 and the migration
//
// Stores written before the key existed hold version 1 records: the same
// encoding with the tag "rotary-audit-v1\x00", hashed with plain SHA-256
// (ChainV1). Anyone with the database can recompute that, so no version 1
// record may remain for an attacker to extend or rewrite. At start, before
// anything appends, the daemon (api.MigrateAuditLog) takes the audit
// head's lock in one transaction and, unless the store carries the marker
// meta "audit.chain", verifies the whole version 1 chain against the head
// row, re-seals every record under the key (Migration; same fields, new
// PrevHash and Hash), writes the marker, and appends an "audit.migrate"
// record naming how many records were re-chained and their old head hash.
// Either all of it commits or none. A version 1 log that does not verify
// is refused and the daemon does not start, naming the record: re-sealing
// it would have the key vouch for a forgery. Once marked, a store is never
// migrated again, whatever its records look like, so a record forged and
// re-hashed with SHA-256 later is reported as altered. A store without the
// marker whose log holds an "audit.migrate" record, or a record already
// sealed under the key, lost its marker to someone with the database: it
// is refused too.
//
// What the migration cannot do: nothing in the database is beyond an
// attacker's reach, so one who deletes the marker and rewrites the whole
// log as a valid version 1 chain (dropping any audit.migrate record and
// renumbering) gets it re-chained at the next start. It is visible (an
// "audit.migrate" record and a warning in the daemon's log where no
// upgrade happened), and any checkpoint taken before catches altered
// records (their keyed hashes differ from the checkpoint's). Export
// checkpoints.
// Upgrade every daemon sharing a store together: an old daemon still
// running would append version 1 records, which verify reports as altered.
//
// # What verification proves
//
// Key.Verify walks the log in Seq order and stops at the first record that
// cannot be trusted:
//
//   - a record whose Hash does not match its contents under the key was
//     altered or forged (Seq is where it stands, the Seq that was expected
//     there);
//   - a record whose PrevHash does not match the Hash of the record before
//     it follows an altered or removed record;
//   - a jump in Seq means records were removed (Seq names the first record
//     after the gap), unless the missing Seq turns up later, which means
//     records were reordered (Seq names the first misplaced position);
//   - a Seq lower than expected means records were reordered or duplicated.
//
// The daemon also compares the chain with the head row the store keeps
// apart (the newest Seq and Hash): a chain that ends before the head lost
// its newest records.
//
// # Checkpoints
//
// The chain cannot see its tail being cut: a truncated log is a valid
// shorter chain, and someone with the database can rewrite the head row to
// match. A Checkpoint closes that gap: the daemon verifies the log, then
// signs "record Seq has hash Hash, at Time" with an Ed25519 key derived
// from the root key (label "rotary audit checkpoint v1"). The signed
// message is "rotary-audit-checkpoint-v1\x00" ‖ Seq (8 bytes) ‖ Time in
// Unix microseconds (8 bytes) ‖ len(Hash) (4 bytes) ‖ Hash, integers
// big-endian; the public key travels with it, so the signature can be
// checked offline by anyone who pinned the key. Kept outside the store
// (`rotary audit checkpoint -o json > FILE`), it is given back to
// `rotary audit verify --checkpoint FILE`, which checks the signature
// against the daemon's own key and that the log still holds record Seq
// with that Hash: a log that now ends before Seq was truncated; a
// different hash means the records up to Seq were rewritten. Nothing can
// prove that records newer than the last exported checkpoint were not cut,
// so export them often (a cron job, a log collector).
package audit
