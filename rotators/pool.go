package rotators

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// Admin connection pools (issue 12).
//
// A rotation with the admin or alternating strategy changes a password
// over a session of the admin secret's user. Opening that session costs a
// login (on PostgreSQL a backend fork and a SCRAM exchange, tens of
// milliseconds on a loaded machine), so the database rotators keep the
// admin sessions open between rotations, in one pool per admin secret and
// server (AdminPools). A rotation then opens exactly one new connection:
// the test login with the new password, which no pool can avoid.
//
// A pool belongs to one admin credential. It is found by a key the
// rotator builds from the admin secret's name and the server it names
// (never a password), and it remembers a fingerprint of the credential it
// was opened with: SHA-256 over a random salt drawn once per process and
// the credential, compared in constant time. A rotation handed another
// admin credential than the pool's (the admin secret itself was rotated,
// or changed by hand) drops the pool, closing its idle sessions at once
// and its lent ones when they come back, and opens a new one: a session
// opened with an old admin password never acts for a newer one, and the
// server sees the old password's sessions end. A login that the server
// refuses (AuthFailed) drops the pool too: its other sessions were opened
// with a credential that no longer logs in.
//
// A pool holds at most MaxOpen sessions (idle and lent); a rotation that
// finds none free waits for one, up to its context. At most MaxIdle stay
// open between rotations, none longer than IdleTimeout unused or
// MaxLifetime in all, and an idle session is checked (Alive: a round trip)
// before it is lent, so a session the server ended is closed and replaced
// instead of failing the rotation. A session on which anything failed is
// closed, not returned. Close closes every pool; sessions lent at that
// moment are closed when they come back.

// Default limits of an admin pool: as many sessions as the daemon runs
// rotations at once by default (with fewer, rotations queue for the admin
// session while another one's commit waits for its WAL flush), all kept
// between rotations (a session closed on return would be a login more at
// the next rotation), until 30 seconds without a rotation: a burst of
// rotations reuses them, and a fleet of admin secrets does not sit on the
// server's connection slots (PostgreSQL's max_connections) in between.
const (
	DefaultPoolMaxOpen     = 8
	DefaultPoolMaxIdle     = 8
	DefaultPoolIdleTimeout = 30 * time.Second
	DefaultPoolMaxLifetime = 30 * time.Minute
)

// ErrPoolClosed is returned by Acquire after Close.
var ErrPoolClosed = errors.New("admin connection pool closed")

// PoolLimits bound each admin pool. Zero fields take the defaults.
type PoolLimits struct {
	MaxOpen     int           // sessions open at once, idle and lent
	MaxIdle     int           // sessions kept open between rotations
	IdleTimeout time.Duration // an idle session unused this long is closed
	MaxLifetime time.Duration // a session this old is closed when it comes back
}

func (l PoolLimits) withDefaults() PoolLimits {
	if l.MaxOpen <= 0 {
		l.MaxOpen = DefaultPoolMaxOpen
	}
	if l.MaxIdle <= 0 {
		l.MaxIdle = DefaultPoolMaxIdle
	}
	l.MaxIdle = min(l.MaxIdle, l.MaxOpen)
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultPoolIdleTimeout
	}
	if l.MaxLifetime <= 0 {
		l.MaxLifetime = DefaultPoolMaxLifetime
	}
	return l
}

// PoolDriver is what a rotator tells AdminPools about its sessions.
type PoolDriver[S any] struct {
	// Alive checks an idle session before it is lent (a ping).
	Alive func(ctx context.Context, s S) error
	// Close closes a session.
	Close func(s S)
	// AuthFailed reports whether a login error means the server refused
	// the credential (or the session was not the admin's own): the pool
	// is dropped.
	AuthFailed func(err error) bool
}

// AdminPools keeps one pool of admin sessions per key. The zero value is
// not usable: make one with NewAdminPools. Safe for concurrent use.
type AdminPools[S any] struct {
	limits PoolLimits
	drv    PoolDriver[S]
	salt   [32]byte
	now    func() time.Time

	mu     sync.Mutex
	pools  map[string]*pool[S]
	closed bool
}

// NewAdminPools returns an empty set of pools.
func NewAdminPools[S any](limits PoolLimits, drv PoolDriver[S]) *AdminPools[S] {
	p := &AdminPools[S]{limits: limits.withDefaults(), drv: drv, now: time.Now, pools: map[string]*pool[S]{}}
	if _, err := rand.Read(p.salt[:]); err != nil {
		panic("rotators: no randomness for the admin pool salt: " + err.Error())
	}
	return p
}

type idleSession[S any] struct {
	s      S
	opened time.Time
	used   time.Time
}

type pool[S any] struct {
	key   string
	fp    [sha256.Size]byte
	open  int // sessions open: idle and lent
	idle  []idleSession[S]
	dead  bool
	wake  chan struct{} // closed and replaced whenever a session comes back or the pool dies
	timer *time.Timer   // closes sessions idle past IdleTimeout
}

// Lease is one admin session lent to a rotation. Give it back with
// Release exactly once.
type Lease[S any] struct {
	S      S
	ps     *AdminPools[S]
	p      *pool[S]
	opened time.Time
	// Reused is true when the session was open before this lease (no login).
	Reused bool
	done   bool
}

// fingerprint returns the salted SHA-256 of a credential, as pools
// compare them.
func (ps *AdminPools[S]) fingerprint(cred []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(ps.salt[:])
	h.Write(cred)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Acquire lends a session of the pool under key, opened with cred (the
// credential's canonical bytes: its fingerprint, never the bytes, is
// kept). A pool under key opened with another credential is dropped
// first. An idle session that passes Alive is lent; otherwise, below
// MaxOpen, dial opens a new one; otherwise Acquire waits for a session to
// come back. A dial error for which AuthFailed holds drops the pool.
func (ps *AdminPools[S]) Acquire(ctx context.Context, key string, cred []byte, dial func(context.Context) (S, error)) (*Lease[S], error) {
	fp := ps.fingerprint(cred)
	for {
		ps.mu.Lock()
		if ps.closed {
			ps.mu.Unlock()
			return nil, ErrPoolClosed
		}
		p := ps.pools[key]
		var drop []idleSession[S]
		if p != nil && subtle.ConstantTimeCompare(p.fp[:], fp[:]) != 1 {
			// The admin credential changed: the old pool's sessions end.
			drop = ps.killLocked(p)
			p = nil
		}
		if p == nil {
			p = &pool[S]{key: key, fp: fp, wake: make(chan struct{})}
			ps.pools[key] = p
		}
		now := ps.now()
		var got *idleSession[S]
		for len(p.idle) > 0 && got == nil {
			is := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if now.Sub(is.used) >= ps.limits.IdleTimeout || now.Sub(is.opened) >= ps.limits.MaxLifetime {
				p.open--
				drop = append(drop, is)
				continue
			}
			got = &is
		}
		if got == nil && p.open < ps.limits.MaxOpen {
			p.open++ // the slot of the session dial opens
			ps.mu.Unlock()
			ps.closeAll(drop)
			s, err := dial(ctx)
			if err != nil {
				ps.mu.Lock()
				p.open--
				p.wakeLocked()
				var more []idleSession[S]
				if ps.drv.AuthFailed != nil && ps.drv.AuthFailed(err) && ps.pools[key] == p {
					more = ps.killLocked(p)
				}
				ps.mu.Unlock()
				ps.closeAll(more)
				return nil, err
			}
			return &Lease[S]{S: s, ps: ps, p: p, opened: ps.now()}, nil
		}
		wake := p.wake
		ps.mu.Unlock()
		ps.closeAll(drop)
		if got != nil {
			if ps.drv.Alive == nil || ps.drv.Alive(ctx, got.s) == nil {
				return &Lease[S]{S: got.s, ps: ps, p: p, opened: got.opened, Reused: true}, nil
			}
			// The server ended it (restart, terminated backend, timeout):
			// close it and look again.
			ps.drv.Close(got.s)
			ps.mu.Lock()
			p.open--
			p.wakeLocked()
			ps.mu.Unlock()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Release gives the session back: kept idle when err is nil and the pool
// wants it, closed otherwise (anything that failed on a session may have
// left it in any state).
func (l *Lease[S]) Release(err error) {
	if l == nil || l.done {
		return
	}
	l.done = true
	ps, p := l.ps, l.p
	now := ps.now()
	ps.mu.Lock()
	keep := err == nil && !ps.closed && !p.dead && len(p.idle) < ps.limits.MaxIdle && now.Sub(l.opened) < ps.limits.MaxLifetime
	if keep {
		p.idle = append(p.idle, idleSession[S]{s: l.S, opened: l.opened, used: now})
		if p.timer == nil {
			p.timer = time.AfterFunc(ps.limits.IdleTimeout, func() { ps.reap(p) })
		}
	} else if !p.dead {
		p.open--
	}
	p.wakeLocked()
	ps.mu.Unlock()
	if !keep {
		ps.drv.Close(l.S)
	}
}

// reap closes the sessions of p idle for IdleTimeout, and runs again
// while any stay idle.
func (ps *AdminPools[S]) reap(p *pool[S]) {
	ps.mu.Lock()
	now := ps.now()
	var drop []idleSession[S]
	kept := p.idle[:0]
	next := ps.limits.IdleTimeout
	for _, is := range p.idle {
		if left := ps.limits.IdleTimeout - now.Sub(is.used); left > 0 {
			kept = append(kept, is)
			next = min(next, left)
		} else {
			drop = append(drop, is)
			p.open--
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.timer = nil
	if len(p.idle) > 0 && !p.dead && !ps.closed {
		p.timer = time.AfterFunc(next, func() { ps.reap(p) })
	}
	ps.mu.Unlock()
	ps.closeAll(drop)
}

// killLocked marks p dead, removes it from the map and returns its idle
// sessions to close (outside the lock).
func (ps *AdminPools[S]) killLocked(p *pool[S]) []idleSession[S] {
	if ps.pools[p.key] == p {
		delete(ps.pools, p.key)
	}
	p.dead = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	drop := p.idle
	p.idle = nil
	p.wakeLocked()
	return drop
}

func (p *pool[S]) wakeLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

func (ps *AdminPools[S]) closeAll(drop []idleSession[S]) {
	for _, is := range drop {
		ps.drv.Close(is.s)
	}
}

// Close closes every pool and their idle sessions; sessions lent now are
// closed when they come back, and Acquire fails from now on. Idempotent.
func (ps *AdminPools[S]) Close() error {
	ps.mu.Lock()
	ps.closed = true
	var drop []idleSession[S]
	for _, p := range ps.pools {
		drop = append(drop, ps.killLocked(p)...)
	}
	ps.mu.Unlock()
	ps.closeAll(drop)
	return nil
}

// PoolStats is what a pool holds, for tests and metrics.
type PoolStats struct {
	Open, Idle int
}

// Stats returns the pool under key (ok false: none).
func (ps *AdminPools[S]) Stats(key string) (PoolStats, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.pools[key]
	if p == nil {
		return PoolStats{}, false
	}
	return PoolStats{Open: p.open, Idle: len(p.idle)}, true
}

// Len returns how many pools are open.
func (ps *AdminPools[S]) Len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.pools)
}

// AdminPoolKey is the key of the admin pool for a db-credentials admin
// value: the admin secret's name, the connect timeout and every field of
// the server and the way to it (DBTarget without the user name, so that a
// new admin user, the other user of an alternating admin pair, replaces
// the pool instead of adding one). It holds no password.
func AdminPoolKey(cfg DBConfig, admin DBCredentials) string {
	var b strings.Builder
	b.WriteString(cfg.AdminSecret)
	b.WriteByte(0)
	b.WriteString(cfg.Timeout().String())
	for _, f := range DBTarget(DBConfig{}, admin, "") {
		if f.Name == "username" {
			continue
		}
		b.WriteByte(0)
		b.WriteString(f.Name)
		b.WriteByte('=')
		b.WriteString(f.Value)
	}
	return b.String()
}

// AdminCredential is the canonical form of an admin value whose
// fingerprint a pool keeps: every field, so that any change to the
// credential (user, password, TLS files) gives another pool.
func AdminCredential(admin DBCredentials) []byte {
	b, _ := json.Marshal(admin)
	return b
}
