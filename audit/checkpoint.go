package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A Checkpoint is a signed statement "record Seq of the log has hash Hash",
// made at Time. Kept outside the store, it later proves that the log still
// holds that record unchanged, which the chain alone cannot: records cut
// from the end leave a valid, shorter chain. It is signed with Ed25519, so
// anyone holding the public key can check the signature offline.
type Checkpoint struct {
	// Chain is the chain of record Seq: AnchorChain for the checkpoints
	// rotary signs now (an anchor binds the heads of every chain), or
	// LegacyChain for a version 1 checkpoint taken when the log had one
	// chain.
	Chain     int64
	Seq       int64
	Hash      []byte
	Time      time.Time
	PublicKey ed25519.PublicKey
	Signature []byte
}

// checkpointTag starts the signed message, so a checkpoint signature can
// never be taken for a signature over anything else.
const (
	checkpointTag   = "rotary-audit-checkpoint-v1\x00"
	checkpointTagV2 = "rotary-audit-checkpoint-v2\x00"
)

// CheckpointFormat names the checkpoint encoding in its JSON form: version
// 2 names the chain (Chain); version 1, of logs with one chain, does not
// and means LegacyChain.
const (
	CheckpointFormat   = "rotary-audit-checkpoint-v2"
	CheckpointFormatV1 = "rotary-audit-checkpoint-v1"
)

// Format is c's format name: CheckpointFormatV1 for a checkpoint of the
// legacy chain, CheckpointFormat otherwise.
func (c Checkpoint) Format() string {
	if c.Chain == LegacyChain {
		return CheckpointFormatV1
	}
	return CheckpointFormat
}

// ErrCheckpoint matches every error about a checkpoint that does not
// verify (a bad signature, another key, a malformed field) with errors.Is.
var ErrCheckpoint = errors.New("audit checkpoint invalid")

// Signer signs checkpoints. The daemon derives its seed from the root key,
// so the public key stays the same for the life of the root key. A Signer
// never prints its key.
type Signer struct{ priv ed25519.PrivateKey }

// NewSigner makes a Signer from a 32-byte Ed25519 seed.
func NewSigner(seed []byte) (Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return Signer{}, fmt.Errorf("audit: checkpoint signing seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return Signer{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Valid reports whether s was made by NewSigner.
func (s Signer) Valid() bool { return len(s.priv) == ed25519.PrivateKeySize }

// String, GoString and Format never show the key.
func (Signer) String() string             { return "[redacted]" }
func (Signer) GoString() string           { return "[redacted]" }
func (Signer) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// PublicKey returns the key that verifies s's checkpoints.
func (s Signer) PublicKey() ed25519.PublicKey {
	return bytes.Clone(s.priv.Public().(ed25519.PublicKey))
}

// Sign makes the checkpoint of record seq of chain, whose hash is hash, at
// time at (truncated to microseconds, in UTC).
func (s Signer) Sign(chain, seq int64, hash []byte, at time.Time) Checkpoint {
	c := Checkpoint{Chain: chain, Seq: seq, Hash: bytes.Clone(hash), Time: at.UTC().Truncate(time.Microsecond), PublicKey: s.PublicKey()}
	c.Signature = ed25519.Sign(s.priv, c.message())
	return c
}

// message is the signed encoding: the tag, (version 2: Chain,) Seq and
// Time (Unix microseconds) as 8 bytes big-endian each, then Hash preceded
// by its length as 4 bytes big-endian.
func (c Checkpoint) message() []byte {
	b := make([]byte, 0, len(checkpointTagV2)+8+8+8+4+len(c.Hash))
	if c.Chain == LegacyChain {
		b = append(b, checkpointTag...)
	} else {
		b = append(b, checkpointTagV2...)
		b = binary.BigEndian.AppendUint64(b, uint64(c.Chain))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixMicro()))
	b = appendField(b, c.Hash)
	return b
}

// Verify checks that c is signed by pub (and that c names pub). It says
// nothing about the log; compare c.Seq and c.Hash with the stored record
// for that.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	switch {
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: the trusted public key is %d bytes, want %d", ErrCheckpoint, len(pub), ed25519.PublicKeySize)
	case !bytes.Equal(c.PublicKey, pub):
		return fmt.Errorf("%w: public_key: signed by another key than this log's", ErrCheckpoint)
	case c.Chain < 0:
		return fmt.Errorf("%w: chain: %d is negative", ErrCheckpoint, c.Chain)
	case c.Seq < 0:
		return fmt.Errorf("%w: seq: %d is negative", ErrCheckpoint, c.Seq)
	case len(c.Hash) != HashSize:
		return fmt.Errorf("%w: hash: %d bytes, want %d", ErrCheckpoint, len(c.Hash), HashSize)
	case !ed25519.Verify(pub, c.message(), c.Signature):
		return fmt.Errorf("%w: signature: does not match the checkpoint (forged or altered)", ErrCheckpoint)
	}
	return nil
}
