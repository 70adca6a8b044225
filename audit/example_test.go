package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/rotary-secrets/rotary/audit"
)

// A checkpoint's signature can be checked offline, with nothing but the
// public key pinned when the daemon was set up: decode the fields of the
// JSON that "rotary audit checkpoint -o json" printed and call Verify.
func ExampleCheckpoint_Verify() {
	// What the daemon did: sign the head of its log.
	signer, _ := audit.NewSigner(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	head := bytes.Repeat([]byte{0xab}, audit.HashSize)
	made := signer.Sign(audit.AnchorChain, 42, head, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	doc := map[string]string{ // its JSON fields
		"hash":       hex.EncodeToString(made.Hash),
		"public_key": base64.StdEncoding.EncodeToString(made.PublicKey),
		"signature":  base64.StdEncoding.EncodeToString(made.Signature),
	}
	pinned := signer.PublicKey() // kept by the auditor since set-up

	// What an auditor does, offline.
	cp := audit.Checkpoint{Chain: audit.AnchorChain, Seq: 42, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cp.Hash, _ = hex.DecodeString(doc["hash"])
	cp.PublicKey, _ = base64.StdEncoding.DecodeString(doc["public_key"])
	cp.Signature, _ = base64.StdEncoding.DecodeString(doc["signature"])
	fmt.Println(cp.Verify(pinned))

	cp.Seq = 41 // edited by hand
	fmt.Println(cp.Verify(pinned))
	// Output:
	// <nil>
	// audit checkpoint invalid: signature: does not match the checkpoint (forged or altered)
}
