package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Failed authentication is rate-limited in the audit log: every failure is
// counted in metrics, but only a few per client address per minute get
// their own record, and the rest are summed into one summary record per
// address ("N more failed auth from ADDR suppressed") written every
// summary interval and at Stop. Without this, anyone who can reach the
// port could grow the permanent, append-only log without bound. A global
// bucket bounds the records per minute whatever the number of addresses,
// and the table of addresses is bounded: beyond maxAddrs, new addresses
// share one "other addresses" entry. IPv6 addresses are grouped by /64,
// which one client usually holds whole.
const (
	failedAuthBurst       = 5                // records per address, at once
	failedAuthEvery       = 12 * time.Second // one more per address every …
	failedAuthGlobalBurst = 60               // records for all addresses, at once
	failedAuthGlobalEvery = time.Second      // one more for all every …
	failedAuthMaxAddrs    = 4096
	failedAuthSummary     = time.Minute
	otherAddrs            = "other addresses"
)

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int64
}

// refill adds the tokens earned since b was last used, up to burst; a new
// bucket starts full.
func (b *bucket) refill(now time.Time, burst float64, every time.Duration) {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+float64(d)/float64(every))
		b.last = now
	}
}

// failedAuth decides which failed authentications get an audit record.
type failedAuth struct {
	now      func() time.Time
	maxAddrs int

	mu     sync.Mutex
	addrs  map[string]*bucket
	global bucket
}

func newFailedAuth(now func() time.Time) *failedAuth {
	return &failedAuth{now: now, maxAddrs: failedAuthMaxAddrs, addrs: map[string]*bucket{}}
}

// allow reports whether a failed authentication from addr (a clientAddr)
// gets its own audit record; if not, it is counted for the summary.
func (f *failedAuth) allow(addr string) bool {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.addrs[addr]
	if !ok {
		if len(f.addrs) >= f.maxAddrs {
			addr = otherAddrs
			b = f.addrs[addr]
		}
		if b == nil {
			b = &bucket{}
			f.addrs[addr] = b
		}
	}
	b.refill(now, failedAuthBurst, failedAuthEvery)
	f.global.refill(now, failedAuthGlobalBurst, failedAuthGlobalEvery)
	if b.tokens >= 1 && f.global.tokens >= 1 {
		b.tokens--
		f.global.tokens--
		return true
	}
	b.suppressed++
	return false
}

type suppressedCount struct {
	addr string
	n    int64
}

// drain returns the suppressed counts since the last drain, by address,
// resets them, and forgets addresses whose bucket has refilled (nothing
// to remember about them).
func (f *failedAuth) drain() []suppressedCount {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []suppressedCount
	for addr, b := range f.addrs {
		if b.suppressed > 0 {
			out = append(out, suppressedCount{addr, b.suppressed})
			b.suppressed = 0
		}
		b.refill(now, failedAuthBurst, failedAuthEvery)
		if b.tokens >= failedAuthBurst {
			delete(f.addrs, addr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}

func (f *failedAuth) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.addrs)
}

// clientAddr is the address a request came from, as the rate limit keys
// it: the peer's IP (never a forwarding header, which the client writes),
// IPv6 reduced to its /64.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "unknown"
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// authFailureReason names why authentication failed, for the metric, or
// false if err is not a failed authentication (a store error is not).
func authFailureReason(header string, err error) (string, bool) {
	switch {
	case errors.Is(err, errTokenExpired):
		return "expired", true
	case errors.Is(err, errTokenRevoked):
		return "revoked", true
	case errors.Is(err, errUnauthorized):
		if header == "" {
			return "missing", true
		}
		return "invalid", true
	}
	return "", false
}

func suppressedDetail(s suppressedCount) string {
	return fmt.Sprintf("%d more failed auth from %s suppressed", s.n, s.addr)
}
