package rotators

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSession is what the generic pool holds in these tests: the
// database rotators' tests run it against real servers; here it is the
// container itself that is checked, under load and -race.
type fakeSession struct {
	cred   string
	closed atomic.Bool
	dead   atomic.Bool
}

type fakeServer struct {
	mu       sync.Mutex
	accepted string // the one credential that logs in
	open     map[*fakeSession]bool
	maxOpen  int
	dials    atomic.Int64
}

var errRefused = errors.New("refused")

func (f *fakeServer) pools(limits PoolLimits) *AdminPools[*fakeSession] {
	return NewAdminPools(limits, PoolDriver[*fakeSession]{
		Alive: func(_ context.Context, s *fakeSession) error {
			if s.dead.Load() {
				return errors.New("dead")
			}
			return nil
		},
		Close: func(s *fakeSession) {
			if s.closed.Swap(true) {
				panic("session closed twice")
			}
			f.mu.Lock()
			delete(f.open, s)
			f.mu.Unlock()
		},
		AuthFailed: func(err error) bool { return errors.Is(err, errRefused) },
	})
}

func (f *fakeServer) dial(cred string) func(context.Context) (*fakeSession, error) {
	return func(context.Context) (*fakeSession, error) {
		f.dials.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if cred != f.accepted {
			return nil, errRefused
		}
		s := &fakeSession{cred: cred}
		f.open[s] = true
		f.maxOpen = max(f.maxOpen, len(f.open))
		return s, nil
	}
}

func (f *fakeServer) openSessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// TestAdminPoolsConcurrent: 32 goroutines lend and give back sessions
// while the credential changes under them and sessions die. Never more
// than MaxOpen sessions of one credential are open at once, a session is
// only ever lent for the credential it was opened with, none is closed
// twice, and Close leaves none open.
func TestAdminPoolsConcurrent(t *testing.T) {
	f := &fakeServer{accepted: "pw-1", open: map[*fakeSession]bool{}}
	ps := f.pools(PoolLimits{MaxOpen: 3, MaxIdle: 2})
	var cred atomic.Value
	cred.Store("pw-1")
	var lent, maxLent atomic.Int64
	var wrongCred atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				c := cred.Load().(string)
				l, err := ps.Acquire(ctx, "key", []byte(c), f.dial(c))
				if err != nil {
					continue // refused: the credential changed meanwhile
				}
				if l.S.cred != c {
					wrongCred.Add(1)
				}
				n := lent.Add(1)
				for {
					m := maxLent.Load()
					if n <= m || maxLent.CompareAndSwap(m, n) {
						break
					}
				}
				if (g+i)%37 == 0 {
					l.S.dead.Store(true) // the server ends it while lent
				}
				lent.Add(-1)
				var rerr error
				if l.S.dead.Load() {
					rerr = errors.New("broken")
				}
				l.Release(rerr)
				if g == 0 && i%50 == 49 { // the admin secret rotates
					next := "pw-" + strings.Repeat("x", i/50+2)
					f.mu.Lock()
					f.accepted = next
					f.mu.Unlock()
					cred.Store(next)
				}
			}
		})
	}
	wg.Wait()
	if n := wrongCred.Load(); n != 0 {
		t.Errorf("%d sessions lent for another credential than theirs", n)
	}
	if m := maxLent.Load(); m > 3 {
		t.Errorf("%d sessions lent at once; want at most MaxOpen 3", m)
	}
	if st, ok := ps.Stats("key"); ok && (st.Open > 3 || st.Idle > 2) {
		t.Errorf("pool %+v; want at most 3 open, 2 idle", st)
	}
	if err := ps.Close(); err != nil {
		t.Fatal(err)
	}
	if n := f.openSessions(); n != 0 {
		t.Errorf("%d sessions open after Close", n)
	}
	if _, err := ps.Acquire(ctx, "key", []byte("pw-1"), f.dial("pw-1")); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Acquire after Close = %v; want ErrPoolClosed", err)
	}
}

// TestAdminPoolsWaitForASession: with MaxOpen sessions lent, Acquire
// waits for one to come back (and opens nothing), or gives up with its
// context.
func TestAdminPoolsWaitForASession(t *testing.T) {
	f := &fakeServer{accepted: "pw", open: map[*fakeSession]bool{}}
	ps := f.pools(PoolLimits{MaxOpen: 1})
	defer ps.Close()
	l, err := ps.Acquire(context.Background(), "k", []byte("pw"), f.dial("pw"))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := ps.Acquire(short, "k", []byte("pw"), f.dial("pw")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with the one session lent = %v; want to wait until the context ends", err)
	}
	got := make(chan *Lease[*fakeSession])
	go func() {
		l2, err := ps.Acquire(context.Background(), "k", []byte("pw"), f.dial("pw"))
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	l.Release(nil)
	l2 := <-got
	if l2.S != l.S || !l2.Reused {
		t.Errorf("the waiting Acquire got another session; want the one given back")
	}
	l2.Release(nil)
	if n := f.dials.Load(); n != 1 {
		t.Errorf("%d logins; want 1", n)
	}
}

// TestAdminPoolKey: the key names the admin secret and the server, never
// the password or the user (a new admin user replaces the pool).
func TestAdminPoolKey(t *testing.T) {
	cfg := DBConfig{AdminSecret: "db/admin"}
	a := DBCredentials{Engine: "postgres", Host: "db.example", Port: 5432, Username: "dba_user", Password: "canary-password-123", DBName: "app"}
	b := a
	b.Username, b.Password = "dba_user_b", "other-password-456"
	ka, kb := AdminPoolKey(cfg, a), AdminPoolKey(cfg, b)
	if strings.Contains(ka, a.Password) || strings.Contains(ka, a.Username) {
		t.Errorf("the key %q holds the password or the user", ka)
	}
	if ka != kb {
		t.Errorf("keys differ by user or password: %q, %q", ka, kb)
	}
	c := a
	c.Port = 5433
	if AdminPoolKey(cfg, c) == ka {
		t.Errorf("another port gave the same key")
	}
	if AdminPoolKey(DBConfig{AdminSecret: "db/other"}, a) == ka {
		t.Errorf("another admin secret gave the same key")
	}
	// The fingerprint is salted per process: two pools' fingerprints of one
	// credential differ, and neither is the bare SHA-256.
	f := &fakeServer{open: map[*fakeSession]bool{}}
	p1, p2 := f.pools(PoolLimits{}), f.pools(PoolLimits{})
	if p1.fingerprint([]byte(a.Password)) == p2.fingerprint([]byte(a.Password)) {
		t.Errorf("two pools fingerprint a credential alike: no salt")
	}
}
