package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestVerifyRecomputedWithoutKey is the attack the keyed chain stops:
// someone with write access to the store alters a record and recomputes
// every hash from there on, with the unkeyed SHA-256 of version 1 (all the
// old chain needed) or under a key of their own. Verify names the altered
// record.
func TestVerifyRecomputedWithoutKey(t *testing.T) {
	t.Parallel()
	otherKey, _ := NewKey(bytes.Repeat([]byte{7}, KeySize))
	for name, reseal := range map[string]func([]byte, int64, Record) Record{
		"SHA-256 (v1)": SealV1,
		"another key":  otherKey.Seal,
	} {
		recs := chain(100)
		recs[16].Detail = "forged"
		prev := recs[15].Hash
		for i := 16; i < len(recs); i++ {
			recs[i] = reseal(prev, recs[i].Seq, recs[i])
			prev = recs[i].Hash
		}
		if name == "SHA-256 (v1)" {
			// Control: the same attack on an unkeyed (v1) log passes its
			// verification; that is what the key is for.
			v1 := make([]Record, len(recs))
			var p []byte
			for i, r := range chain(100) {
				if i == 16 {
					r.Detail = "forged"
				}
				v1[i] = SealV1(p, r.Seq, r)
				p = v1[i].Hash
			}
			if _, err := VerifyV1(Records(v1)); err != nil {
				t.Fatalf("control: VerifyV1 of a v1 log forged this way = %v, want nil", err)
			}
		}
		count, err := testKey.Verify(Records(recs))
		wantBroken(t, "recomputed with "+name, err, 17, "hash mismatch (record altered)")
		if count != 16 {
			t.Fatalf("recomputed with %s: count = %d, want 16", name, count)
		}
	}
}

// TestVerifyWrongKey: a log verifies only under the key that sealed it.
func TestVerifyWrongKey(t *testing.T) {
	t.Parallel()
	recs := chain(10)
	if _, err := testKey.Verify(Records(recs)); err != nil {
		t.Fatalf("control: Verify under the sealing key = %v", err)
	}
	other, _ := NewKey(bytes.Repeat([]byte{1}, KeySize))
	_, err := other.Verify(Records(recs))
	wantBroken(t, "Verify under another key", err, 1, "hash mismatch")
	_, err = VerifyV1(Records(recs))
	wantBroken(t, "VerifyV1 of a keyed log", err, 1, "hash mismatch")
}

func TestKeyInvalid(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewKey(make([]byte, n)); !errors.Is(err, ErrNoKey) {
			t.Errorf("NewKey(%d bytes) err = %v, want ErrNoKey", n, err)
		}
	}
	var zero Key
	if zero.Valid() {
		t.Fatal("zero Key is Valid")
	}
	if _, err := zero.Verify(Records(chain(3))); !errors.Is(err, ErrNoKey) {
		t.Fatalf("zero Key Verify err = %v, want ErrNoKey", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("zero Key Seal did not panic")
		}
	}()
	zero.Seal(nil, 1, Record{})
}

// TestKeyNeverPrints: a Key or Signer formatted any way shows no key byte.
func TestKeyNeverPrints(t *testing.T) {
	t.Parallel()
	canary := []byte("CANARY-audit-key-0123456789abcde")
	k, err := NewKey(canary)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(canary)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{k, &k, s, &s, struct{ K Key }{k}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, "CANARY") || strings.Contains(out, fmt.Sprintf("%x", canary[:8])) {
				t.Errorf("Sprintf(%s, %T) = %q shows the key", verb, v, out)
			}
		}
	}
	// The bytes were copied: changing the caller's slice changes nothing.
	before := k.Chain(nil, Record{Seq: 1})
	canary[0] ^= 1
	if !bytes.Equal(before, k.Chain(nil, Record{Seq: 1})) {
		t.Fatal("NewKey keeps the caller's slice")
	}
}

func TestMigrateV1(t *testing.T) {
	t.Parallel()
	var v1 []Record
	var prev []byte
	for _, r := range chain(50) {
		r = SealV1(prev, r.Seq, r)
		prev = r.Hash
		v1 = append(v1, r)
	}
	if _, err := VerifyV1(Records(v1)); err != nil {
		t.Fatalf("control: VerifyV1(v1 log) = %v", err)
	}
	m := testKey.MigrateV1()
	var out []Record
	for _, r := range v1 {
		r2, err := m.Next(r)
		if err != nil {
			t.Fatalf("Next(record %d) = %v", r.Seq, err)
		}
		out = append(out, r2)
	}
	if count, err := testKey.Verify(Records(out)); err != nil || count != 50 || m.Count() != 50 {
		t.Fatalf("migrated log: Verify = %d, %v; Count = %d; want 50, nil, 50", count, err, m.Count())
	}
	if !bytes.Equal(m.HeadV1(), v1[49].Hash) {
		t.Fatal("HeadV1 is not the v1 hash of the last record")
	}
	want := chain(50)
	for i := range out {
		if !bytes.Equal(out[i].Hash, want[i].Hash) || out[i].Detail != v1[i].Detail {
			t.Fatalf("migrated record %d differs from the same record sealed under the key", i+1)
		}
	}

	// A v1 log that does not verify is not vouched for by the key.
	for name, tc := range map[string]struct {
		alter   func([]Record) []Record
		seq     int64
		problem string
	}{
		"altered":    {func(r []Record) []Record { r[9].Detail = "x"; return r }, 10, "hash mismatch"},
		"removed":    {func(r []Record) []Record { return append(r[:9:9], r[10:]...) }, 10, "found record 11 where 10 was expected"},
		"rehashed":   {func(r []Record) []Record { r[9].Detail = "x"; r[9] = SealV1(r[9].PrevHash, 10, r[9]); return r }, 11, "prev-hash mismatch"},
		"keyed (v2)": {func([]Record) []Record { return chain(5) }, 1, "not a version 1 record"},
	} {
		recs := tc.alter(clone(v1))
		m := testKey.MigrateV1()
		var err error
		for _, r := range recs {
			if _, err = m.Next(r); err != nil {
				break
			}
		}
		wantBroken(t, "migrate "+name, err, tc.seq, tc.problem)
	}
}

func TestCheckpoint(t *testing.T) {
	t.Parallel()
	seed := bytes.Repeat([]byte{9}, 32)
	s, err := NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	hash := chain(3)[2].Hash
	at := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("x", 3600))
	c := s.Sign(AnchorChain, 3, hash, at)
	if c.Seq != 3 || !bytes.Equal(c.Hash, hash) || c.Time.Location() != time.UTC || c.Time.Nanosecond()%1000 != 0 {
		t.Fatalf("Sign = %+v", c)
	}
	if err := c.Verify(s.PublicKey()); err != nil {
		t.Fatalf("Verify(own key) = %v", err)
	}
	s2, _ := NewSigner(bytes.Repeat([]byte{8}, 32))
	for name, tc := range map[string]struct {
		alter func(*Checkpoint)
		pub   []byte
		field string
	}{
		"seq":         {func(c *Checkpoint) { c.Seq++ }, nil, "signature"},
		"chain":       {func(c *Checkpoint) { c.Chain = 2 }, nil, "signature"},
		"as v1":       {func(c *Checkpoint) { c.Chain = LegacyChain }, nil, "signature"},
		"hash":        {func(c *Checkpoint) { c.Hash[0] ^= 1 }, nil, "signature"},
		"time":        {func(c *Checkpoint) { c.Time = c.Time.Add(time.Microsecond) }, nil, "signature"},
		"signature":   {func(c *Checkpoint) { c.Signature[5] ^= 1 }, nil, "signature"},
		"short hash":  {func(c *Checkpoint) { c.Hash = c.Hash[:16] }, nil, "hash"},
		"negative":    {func(c *Checkpoint) { c.Seq = -1 }, nil, "seq"},
		"other key":   {func(*Checkpoint) {}, s2.PublicKey(), "public_key"},
		"resigned":    {func(c *Checkpoint) { *c = s2.Sign(c.Chain, c.Seq, c.Hash, c.Time) }, nil, "public_key"},
		"pub swapped": {func(c *Checkpoint) { c.PublicKey = s2.PublicKey() }, nil, "public_key"},
	} {
		cc := c
		cc.Hash, cc.Signature = bytes.Clone(c.Hash), bytes.Clone(c.Signature)
		tc.alter(&cc)
		pub := s.PublicKey()
		if tc.pub != nil {
			pub = tc.pub
		}
		err := cc.Verify(pub)
		if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Verify(checkpoint with %s changed) = %v, want ErrCheckpoint naming %q", name, err, tc.field)
		}
	}
	if _, err := NewSigner(seed[:31]); err == nil {
		t.Error("NewSigner(31 bytes) succeeded")
	}
	// Deterministic: the same seed signs the same checkpoint the same way.
	s3, _ := NewSigner(seed)
	if !bytes.Equal(s3.Sign(AnchorChain, 3, hash, at).Signature, c.Signature) {
		t.Error("Ed25519 signature not deterministic")
	}
}
