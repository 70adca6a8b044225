package api

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestFailedAuthRateLimit(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFailedAuth(clk.now)
	allowed := 0
	for range 1000 {
		if f.allow("192.0.2.1") {
			allowed++
		}
	}
	if allowed != failedAuthBurst {
		t.Fatalf("1000 failures at once from one address: %d recorded, want %d", allowed, failedAuthBurst)
	}
	if !f.allow("192.0.2.2") {
		t.Fatal("another address is limited by the first one's bucket")
	}
	clk.t = clk.t.Add(failedAuthEvery)
	if !f.allow("192.0.2.1") || f.allow("192.0.2.1") {
		t.Fatalf("after %v: want exactly one more record", failedAuthEvery)
	}
	got := f.drain()
	want := []suppressedCount{{"192.0.2.1", 996}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("drain = %v, want %v", got, want)
	}
	if d := suppressedDetail(got[0]); d != "996 more failed auth from 192.0.2.1 suppressed" {
		t.Fatalf("summary detail = %q", d)
	}
	if got := f.drain(); len(got) != 0 {
		t.Fatalf("second drain = %v, want nothing", got)
	}
	// Idle addresses are forgotten once their bucket is full again.
	clk.t = clk.t.Add(failedAuthBurst * failedAuthEvery)
	f.drain()
	if n := f.size(); n != 0 {
		t.Fatalf("%d addresses remembered after they went quiet, want 0", n)
	}
}

// TestFailedAuthBounded: many addresses at once neither grow the table
// past its bound nor the records past the global bucket.
func TestFailedAuthBounded(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFailedAuth(clk.now)
	allowed := 0
	const n = 100000
	for i := range n {
		if f.allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)) {
			allowed++
		}
	}
	if allowed != failedAuthGlobalBurst {
		t.Fatalf("%d failures from %d addresses: %d recorded, want the global burst %d", n, n, allowed, failedAuthGlobalBurst)
	}
	if s := f.size(); s > failedAuthMaxAddrs+1 {
		t.Fatalf("table holds %d addresses, want at most %d", s, failedAuthMaxAddrs+1)
	}
	var total int64
	for _, sc := range f.drain() {
		total += sc.n
	}
	if total != n-int64(allowed) {
		t.Fatalf("summaries count %d suppressed, want %d", total, n-allowed)
	}
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	for remote, want := range map[string]string{
		"192.0.2.7:5555":                    "192.0.2.7",
		"[::ffff:192.0.2.7]:1":              "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:1]:9": "2001:db8:1:2::/64",
		"garbage":                           "unknown",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if got := clientAddr(r); got != want {
			t.Errorf("clientAddr(%q) = %q, want %q", remote, got, want)
		}
	}
}
