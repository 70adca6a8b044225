// Package kms is rotary's key management: root key sources, regions,
// master keys and their versions, envelope encryption of secret values
// (Seal, Open, Rewrap), keyed fingerprints, and the KMS operations offered
// to applications (Encrypt, Decrypt, GenerateDataKey).
//
// kms is a leaf package. It persists through the KeyStore interface it
// defines; the daemon adapts its SQLite or PostgreSQL store to it.
//
// # Key hierarchy
//
//	root key                 32 bytes from a KeySource (file, env, passphrase); never stored
//	├── region fingerprint key   one per region, for HMAC fingerprints      (wrapped by root)
//	└── master key versions      32 bytes each, per key, per version         (wrapped by root)
//	    └── data keys            one fresh 32-byte key per sealed value     (wrapped by a master key version)
//	        └── value            the secret, encrypted with its data key
//
// Everything is AES-256-GCM with random 96-bit nonces. Material wrapped by
// the root key is stored as
//
//	0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//
// with additional authenticated data (AAD) naming what it is: the key id
// and version for master key material, the region name for a fingerprint
// key. A row copied onto another key or version therefore fails to unwrap.
//
// The first Manager to open a store records a key check value under the
// meta name "kms.root_check": 0x01 ‖ HMAC-SHA-256(root key,
// "rotary/kms/v1/root-check"). Every later New compares its root key's
// value with it in constant time and fails with ErrWrongRootKey on a
// mismatch, so a wrong root key stops the daemon at start instead of
// surfacing later as undecryptable secrets. Two daemons starting at once on
// an empty store race through PutMetaIfAbsent; the loser verifies against
// the winner's value.
//
// # Envelope format (version 1)
//
// Seal, Encrypt and GenerateDataKey produce a self-describing binary
// envelope:
//
//	offset   size  field
//	0        1     format version, 0x01
//	1        1     kind: 0x01 secret value (Seal/Open), 0x02 application data (Encrypt/Decrypt)
//	2        1     n, the length of the key id (1–64)
//	3        n     master key id, ASCII ("mk-" and 16 hex digits)
//	3+n      4     master key version, big-endian uint32, ≥ 1
//	7+n      60    wrapped data key: nonce (12) ‖ AES-256-GCM(master key version, data key) (32) ‖ tag (16)
//	67+n     12    value nonce
//	79+n     m+16  AES-256-GCM(data key, value) ‖ tag
//
// Every field has a fixed or explicit length and nothing may follow the
// value's ciphertext, so each envelope has exactly one encoding.
// ParseEnvelope reads the header without decrypting anything.
//
// Two AADs protect an envelope. Strings in them are prefixed with their
// length (big-endian uint32) and each starts with a fixed domain label:
//
//	wrap AAD   = "rotary/kms/v1/wrap\x00" ‖ format ‖ kind ‖ region ‖ key id ‖ key version (uint32)
//	secret AAD = "rotary/kms/v1/data\x00" ‖ format ‖ 0x01 ‖ region ‖ secret name ‖ secret version (uint64)
//	data AAD   = "rotary/kms/v1/data\x00" ‖ format ‖ 0x02 ‖ region ‖ pair count (uint32) ‖ (key ‖ value)… sorted by key
//
// The value's AAD binds region, secret name and version number (or, for
// application data, the region and the canonical encryption context) and
// the immutable header fields, format and kind; an envelope moved to
// another secret, version or region, or opened as the other kind, fails.
// The key id and key version are bound by the wrap AAD instead, so that
// Rewrap can move the data key to a newer master key version by replacing
// only the header's key version and the wrapped data key, never touching
// (or needing) the value. A data key cannot be transplanted into another
// envelope: it would not authenticate that envelope's ciphertext.
//
// Open and Decrypt fail with the single error ErrDecrypt for every problem
// with an envelope: malformed or truncated bytes, a flipped bit, a wrong
// secret, version, region or encryption context, an unknown, disabled,
// pending-deletion or purged key. Only an unreachable KeyStore is reported
// as itself. No error or log line contains plaintext or key material;
// plaintext comes back as sensitive.Bytes, which prints as "[redacted]".
//
// # Master keys
//
// A master key belongs to one region, so one region's keys never open
// another's secrets. It has an id ("mk-" and 16 hex digits), an optional
// alias unique in its region (referred to as "alias/NAME"), a state and
// versions. Each region's "alias/default" key is created on first use;
// races between daemons are settled by the KeyStore's unique alias
// constraint (ErrConflict), after which the loser reads the winner's key.
//
//	enabled ⇄ disabled            (EnableKey, DisableKey)
//	enabled, disabled → pending_deletion   (ScheduleKeyDeletion, 7–30 days)
//	pending_deletion → disabled   (CancelKeyDeletion, as in AWS KMS)
//	pending_deletion → deleted    (PurgeDueKeys once the date has passed)
//
// Only an enabled key seals or opens. Rotation adds a version and makes it
// primary; new envelopes use the primary version, old ones open with the
// version they name. Deleting a key removes every version of its material:
// whatever it protected is gone for good (crypto-shredding).
//
// # Caching
//
// Seal and Open must be fast (a few microseconds for a 1 KiB value), so a
// Manager keeps in memory:
//
//   - unwrapped master key versions as ready cipher.AEADs, and regions'
//     fingerprint keys. These never change, so they are kept until the key
//     is purged (or, for another daemon's purge, until its metadata is
//     re-read and found missing);
//   - key metadata (state, primary version, alias) for at most CacheTTL
//     (default 5 s). A change made through this Manager updates the cache
//     at once; a change made by another daemon sharing the store takes
//     effect here within CacheTTL. Administrative calls (DescribeKey and
//     every state change) always read the store.
//
// A warm Seal or Open therefore touches no store at all. Only the cipher
// per data key is built per call; the data key itself is never cached.
package kms
