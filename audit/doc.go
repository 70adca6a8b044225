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
// # Chains and anchors
//
// The log is several hash chains, so that writers never wait for each
// other: each record names its Chain and is numbered (Seq) within it, and
// each chain has its own head row in the store. LegacyChain (0) is the
// single chain of stores written before there were several: its records
// keep their version 2 hashes and nothing appends to it after the daemon
// migrated it. AnchorChain (1) holds anchor records. Writers take chains
// from FirstWriterChain (2) on: a group-commit transaction, or an audited
// write's transaction, locks the head of a writer chain no other
// transaction holds (PostgreSQL: FOR UPDATE SKIP LOCKED) and appends to
// it, making a new chain when every one is held, so the number of chains
// is the highest number of audit transactions ever open at once.
//
// An anchor record (Action AnchorAction, in AnchorChain) binds the heads
// of every other chain, as committed when it was written: its Detail
// lists chain:seq:hash for each (AnchorDetail), covered by its keyed hash.
// The daemon writes one every N records or T seconds (1,000 records or 1
// s by default) when a chain moved, and at shutdown; on PostgreSQL
// whichever daemon gets there, the anchor chain's head row serializing
// them.
//
// Verification walks every chain on its own (each record's Chain is part
// of its hash, so a record moved to another chain does not verify there),
// then checks every chain against the newest anchor naming it (Anchored):
// a chain that now ends before the anchored record was truncated, a
// different hash there means it was rewritten. So an edited, removed,
// reordered or moved record in any chain is found and named by chain and
// Seq, and so is any cut of records an anchor names. What anchors cannot
// show: someone with the database can cut every chain back to a
// consistent point (remove the newest anchors and every record after the
// heads the remaining newest anchor names, and rewrite the head rows): in
// particular the records written after the last anchor (at most about T
// seconds or N records) can be removed with their head rows rewritten,
// undetected. A checkpoint closes that gap up to its anchor.
//
// # The chain
//
// Record n of a chain carries PrevHash, the Hash of record n-1 (32 zero
// bytes for the first record, Seq 1), and its own Hash:
//
//	Hash = HMAC-SHA-256(chain key, encoding of Chain, Seq, Time, PrevHash and every text field)
//
// The chain key (a Key) is derived from the root key (kms.DeriveKey with
// the label "rotary audit chain v2", HKDF-SHA-256) and never stored, so
// someone who can write the store but does not hold the root key cannot
// forge a record, nor recompute the chain after altering, inserting or
// removing one. Every writer seals with it: the API's group committer and
// secrets.Service, inside the transaction of the change they record.
//
// The encoding is unambiguous: a version tag ("rotary-audit-v3\x00"),
// the Chain as 8 bytes big-endian (version 2, the tag
// "rotary-audit-v2\x00" and no chain, is the encoding of LegacyChain's
// records), then Seq as 8 bytes big-endian, Time as Unix microseconds (8 bytes
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
// The chains cannot see their tails being cut back to a consistent point
// (see above). A Checkpoint closes that gap: the daemon anchors every
// chain's head (or takes the newest anchor if nothing moved since),
// verifies the log, then signs "record Seq of chain Chain (the anchor
// chain) has hash Hash, at Time" with an Ed25519 key derived from the root
// key (label "rotary audit checkpoint v1"). The signed message is
// "rotary-audit-checkpoint-v2\x00" ‖ Chain (8 bytes) ‖ Seq (8 bytes) ‖
// Time in Unix microseconds (8 bytes) ‖ len(Hash) (4 bytes) ‖ Hash,
// integers big-endian (version 1, of logs with one chain, has the tag
// "rotary-audit-checkpoint-v1\x00" and no Chain, and means LegacyChain;
// such checkpoints still verify); the public key travels with it, so the signature can be
// checked offline by anyone who pinned the key. Kept outside the store
// (`rotary audit checkpoint -o json > FILE`), it is given back to
// `rotary audit verify --checkpoint FILE`, which checks the signature
// against the daemon's own key and that the log still holds that anchor
// with that Hash: an anchor chain that now ends before Seq was truncated;
// a different hash means records up to it were rewritten. The anchor in
// turn vouches for every chain's records up to the heads it names. Nothing can
// prove that records newer than the last exported checkpoint were not cut,
// so export them often (a cron job, a log collector).
package audit
