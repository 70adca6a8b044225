package postgres

import (
	"slices"
	"strings"
	"testing"
)

// TestNoticePayload: a batch's notice names each secret once with its
// newest transaction id, reads back as sent, and turns into "many" when
// it would pass PostgreSQL's 8000-byte limit; a lone name (a daemon
// before batching) reads as one change.
func TestNoticePayload(t *testing.T) {
	p := payload([]change{{"app/db", 7}, {"a_b+c=d.e@f-g", 9}, {"app/db", 8}})
	if want := "!c 8:app/db 9:a_b+c=d.e@f-g"; p != want {
		t.Fatalf("payload = %q, want %q", p, want)
	}
	got, many := parsePayload(p)
	if many || !slices.Equal(got, []change{{"app/db", 8}, {"a_b+c=d.e@f-g", 9}}) {
		t.Errorf("parsePayload(%q) = %v, %v", p, got, many)
	}
	if got, many := parsePayload("app/db"); many || !slices.Equal(got, []change{{"app/db", 0}}) {
		t.Errorf("parsePayload(lone name) = %v, %v", got, many)
	}
	var big []change
	for i := range 40 {
		big = append(big, change{strings.Repeat("n", 200) + string(rune('a'+i%26)) + strings.Repeat("z", i), uint64(i)})
	}
	if p := payload(big); p != manyChanged {
		t.Errorf("payload of %d long names = %d bytes, want %q", len(big), len(p), manyChanged)
	}
	if p := payload(big[:30]); len(p) > maxPayloadBytes || p == manyChanged {
		t.Errorf("payload of 30 long names = %d bytes (%.10q), want one notice under 8000 bytes", len(p), p)
	}
	for _, bad := range []string{"!c 12", "!c x:app", "!c 1:"} {
		if _, many := parsePayload(bad); !many {
			t.Errorf("parsePayload(%q): want many (check instead)", bad)
		}
	}
}

func TestParseSnapshot(t *testing.T) {
	s, err := parseSnapshot("10:20:12,15")
	if err != nil || s.xmin != 10 || s.xmax != 20 || !slices.Equal(s.xip, []uint64{12, 15}) || s.xipArray() != "{12,15}" {
		t.Errorf("parseSnapshot = %+v, %v", s, err)
	}
	if s, err := parseSnapshot("10:10:"); err != nil || len(s.xip) != 0 || s.xipArray() != "{}" {
		t.Errorf("parseSnapshot(empty xip) = %+v, %v", s, err)
	}
	if _, err := parseSnapshot("10:x:"); err == nil {
		t.Errorf("parseSnapshot(bad) = nil error")
	}
}
