package audit

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// AnchorAction is the Action of an anchor record, TokenID "system",
// Target "audit".
const AnchorAction = "audit.anchor"

// Head is where one chain stood: its newest record's Seq and Hash.
type Head struct {
	Chain int64
	Seq   int64
	Hash  []byte
}

// AnchorDetail is the Detail of an anchor record binding heads: "heads="
// then, for each chain in increasing order, "chain:seq:hash" (hash in
// hex), separated by commas. The anchor's own keyed hash covers it, so a
// changed head is an altered anchor. Chains with no record (Seq 0) are
// left out.
func AnchorDetail(heads []Head) string {
	hs := append([]Head(nil), heads...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Chain < hs[j].Chain })
	var b strings.Builder
	b.WriteString("heads=")
	n := 0
	for _, h := range hs {
		if h.Seq <= 0 {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		fmt.Fprintf(&b, "%d:%d:%x", h.Chain, h.Seq, h.Hash)
	}
	return b.String()
}

// ParseAnchor reads the heads an anchor record's Detail binds.
func ParseAnchor(detail string) ([]Head, error) {
	rest, ok := strings.CutPrefix(detail, "heads=")
	if !ok {
		return nil, fmt.Errorf("anchor: detail does not start with heads=")
	}
	if rest == "" {
		return nil, nil
	}
	var out []Head
	for _, f := range strings.Split(rest, ",") {
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("anchor: %q is not chain:seq:hash", f)
		}
		c, err1 := strconv.ParseInt(parts[0], 10, 64)
		s, err2 := strconv.ParseInt(parts[1], 10, 64)
		h, err3 := hex.DecodeString(parts[2])
		if err1 != nil || err2 != nil || err3 != nil || s <= 0 || len(h) != HashSize {
			return nil, fmt.Errorf("anchor: %q is not chain:seq:hash", f)
		}
		out = append(out, Head{Chain: c, Seq: s, Hash: h})
	}
	return out, nil
}

// SameHeads reports whether an anchor binding a would bind b too (chains
// with no record aside).
func SameHeads(a, b []Head) bool { return AnchorDetail(a) == AnchorDetail(b) }

// Anchored collects, from the anchor records of a log read in order, the
// highest record each chain is known to have reached: the newest anchor
// naming a chain vouches that the chain held that record with that hash,
// so a chain that now ends before it lost records (truncated), and one
// whose record there has another hash was rewritten.
type Anchored struct {
	// Claims maps a chain to the highest record an anchor names for it.
	Claims map[int64]Claim
	// Anchors counts the anchor records read.
	Anchors int64
}

// Claim is what the newest anchor naming a chain says about it.
type Claim struct {
	Seq       int64
	Hash      []byte
	AnchorSeq int64 // the anchor record (in AnchorChain) that says it
}

// Add reads the anchor record r (sealed and verified by the caller). A
// record of the anchor chain that is not an anchor is ignored; an anchor
// whose detail does not parse is an error naming it.
func (a *Anchored) Add(r Record) error {
	if r.Action != AnchorAction {
		return nil
	}
	heads, err := ParseAnchor(r.Detail)
	if err != nil {
		return &BrokenError{Chain: r.Chain, Seq: r.Seq, Reason: err.Error()}
	}
	if a.Claims == nil {
		a.Claims = map[int64]Claim{}
	}
	a.Anchors++
	for _, h := range heads {
		if old, ok := a.Claims[h.Chain]; ok && old.Seq > h.Seq {
			return &BrokenError{Chain: r.Chain, Seq: r.Seq, Reason: fmt.Sprintf("anchor names record %d of chain %d, an earlier anchor named record %d", h.Seq, h.Chain, old.Seq)}
		}
		a.Claims[h.Chain] = Claim{Seq: h.Seq, Hash: bytes.Clone(h.Hash), AnchorSeq: r.Seq}
	}
	return nil
}

// Check compares chain c, which verified up to record records with hash
// at the anchored Seq equal to hashAt (nil if the walk never reached it),
// with the newest anchor naming it.
func (a *Anchored) Check(c, records int64, hashAt []byte) *BrokenError {
	cl, ok := a.Claims[c]
	if !ok {
		return nil
	}
	switch {
	case records < cl.Seq:
		missing := fmt.Sprintf("record %d is", cl.Seq)
		if cl.Seq > records+1 {
			missing = fmt.Sprintf("records %d to %d are", records+1, cl.Seq)
		}
		return &BrokenError{Chain: c, Seq: records + 1, Reason: fmt.Sprintf("chain truncated: anchor %d vouches for record %d, the chain ends at record %d (%s missing: removed)", cl.AnchorSeq, cl.Seq, records, missing)}
	case !bytes.Equal(hashAt, cl.Hash):
		return &BrokenError{Chain: c, Seq: cl.Seq, Reason: fmt.Sprintf("it does not match anchor %d (records up to it were rewritten)", cl.AnchorSeq)}
	}
	return nil
}
