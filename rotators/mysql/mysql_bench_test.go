package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
)

const benchUsers = 1000

// benchAccounts creates n users with a few multi-user statements (100
// accounts per CREATE USER / GRANT / DROP USER) and drops them at the end.
func benchAccounts(b *testing.B, e *env, n int) []rotators.Value {
	b.Helper()
	prefix := testenv.Unique("rt_bench_") + "_"
	vals := make([]rotators.Value, n)
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("%s%04d", prefix, i))
	}
	const batch = 100
	b.Cleanup(func() {
		for i := 0; i < n; i += batch {
			var specs []string
			var args []any
			for _, u := range names[i:min(i+batch, n)] {
				specs = append(specs, "?@'%'")
				args = append(args, u)
			}
			if _, err := e.root.Exec("DROP USER IF EXISTS "+strings.Join(specs, ", "), args...); err != nil {
				b.Logf("drop bench users: %v", err)
			}
		}
	})
	for i := 0; i < n; i += batch {
		var create, grant []string
		var cargs, gargs []any
		for j := i; j < min(i+batch, n); j++ {
			pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
			if err != nil {
				b.Fatal(err)
			}
			create = append(create, "?@'%' IDENTIFIED BY PASSWORD ?")
			cargs = append(cargs, names[j], nativeHash(pw.Reveal()))
			grant = append(grant, "?@'%'")
			gargs = append(gargs, names[j])
			vals[j] = e.value(b, names[j], pw)
		}
		if _, err := e.root.Exec("CREATE USER "+strings.Join(create, ", "), cargs...); err != nil {
			b.Fatalf("create bench users: %v", err)
		}
		if _, err := e.root.Exec("GRANT SELECT ON test.* TO "+strings.Join(grant, ", "), gargs...); err != nil {
			b.Fatalf("grant bench users: %v", err)
		}
	}
	return vals
}

// BenchmarkRotate: single-user rotations of 1,000 users, each a full
// Create → Set → Test → Finish, by 1 and 8 workers (each user belongs to
// one worker, as the engine never rotates a secret twice at once). It
// reports rotations/s and the mean time of each step per rotation; the
// step=* sub-benchmarks split a step into its login and its statement.
func BenchmarkRotate(b *testing.B) {
	e := newEnv(b)
	vals := benchAccounts(b, e, benchUsers)
	r := New()
	cfg := json.RawMessage(`{}`)
	var mu sync.Mutex // guards vals between sub-benchmark runs

	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			var next atomic.Int64
			var tCreate, tSet, tTest, tFinish atomic.Int64
			var failed atomic.Value
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for k := w; ; k += conc {
						if next.Add(1) > int64(b.N) {
							return
						}
						i := k % benchUsers
						// Worker w owns the users with i%conc == w (1000 is a
						// multiple of 1 and 8), so no user is rotated twice at once.
						mu.Lock()
						cur := vals[i]
						mu.Unlock()
						sec := rotators.Secret{Name: "bench", Type: SecretType}
						t0 := time.Now()
						resp, err := r.Create(ctx, rotators.CreateRequest{Secret: sec, Config: cfg, Current: cur})
						t1 := time.Now()
						if err == nil {
							err = r.Set(ctx, rotators.SetRequest{Secret: sec, Config: cfg, Current: cur, Pending: resp.Value})
						}
						t2 := time.Now()
						if err == nil {
							err = r.Test(ctx, rotators.TestRequest{Secret: sec, Config: cfg, Value: resp.Value})
						}
						t3 := time.Now()
						if err == nil {
							err = r.Finish(ctx, rotators.FinishRequest{Secret: sec, Config: cfg, Current: resp.Value, Previous: cur})
						}
						t4 := time.Now()
						if err != nil {
							failed.CompareAndSwap(nil, err)
							return
						}
						tCreate.Add(int64(t1.Sub(t0)))
						tSet.Add(int64(t2.Sub(t1)))
						tTest.Add(int64(t3.Sub(t2)))
						tFinish.Add(int64(t4.Sub(t3)))
						mu.Lock()
						vals[i] = resp.Value
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatalf("rotation: %v", err)
			}
			n := float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "rotations/s")
			b.ReportMetric(float64(tCreate.Load())/n/1e3, "create-µs/rot")
			b.ReportMetric(float64(tSet.Load())/n/1e6, "set-ms/rot")
			b.ReportMetric(float64(tTest.Load())/n/1e6, "test-ms/rot")
			b.ReportMetric(float64(tFinish.Load())/n/1e3, "finish-µs/rot")
		})
	}

	// The parts of Set and Test: a login (TCP, handshake with
	// mysql_native_password, and the one query that reads VERSION(),
	// sql_mode, CURRENT_USER() and CONNECTION_ID()), and the SET PASSWORD
	// statement alone on an open session.
	b.Run("step=login", func(b *testing.B) {
		c, err := rotators.ParseDBCredentials(vals[0])
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			s, err := connect(context.Background(), c, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			s.close()
		}
	})
	b.Run("step=set-password", func(b *testing.B) {
		c, err := rotators.ParseDBCredentials(vals[0])
		if err != nil {
			b.Fatal(err)
		}
		s, err := connect(context.Background(), c, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer s.close()
		// Alternate between two passwords: setting the same verifier twice
		// in one second leaves the stored row unchanged, which the server
		// does not write, and would time nothing. Ending on the old
		// password leaves vals[0] working.
		other, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
		if err != nil {
			b.Fatal(err)
		}
		stmts := [2]string{setOwnPasswordSQL(s.flavor, other), setOwnPasswordSQL(s.flavor, []byte(c.Password))}
		i := 0
		b.ResetTimer()
		for b.Loop() {
			if err := s.exec(context.Background(), "set password", stmts[i%2]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StopTimer()
		if i%2 == 1 {
			if err := s.exec(context.Background(), "set password", stmts[1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("step=generate", func(b *testing.B) {
		for b.Loop() {
			if _, err := rotators.GeneratePassword(rotators.PasswordPolicy{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRotateAdmin: admin-strategy rotations of 1,000 users by 8
// workers on one Rotator (one admin pool), each a full Create → Set (ALTER
// USER over a pooled admin session) → Test (a new login with the new
// password) → Finish. It reports rotations/s, the connections the rotator
// opened per rotation (counted by a dial hook: 1, the test login, plus
// the pool's own sessions at the start) and the mean time of each step.
// The aim of issue 12 is ≥ 1,000 rotations/s at 8 concurrent.
func BenchmarkRotateAdmin(b *testing.B) {
	e := newEnv(b)
	vals := benchAccounts(b, e, benchUsers)
	var dials atomic.Int64
	testDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	b.Cleanup(func() { testDial = nil })
	r := New()
	b.Cleanup(func() { r.Close() })
	cfg := json.RawMessage(`{"strategy":"admin","admin_secret":"bench-admin"}`)
	var mu sync.Mutex // guards vals between sub-benchmark runs
	const conc = 8
	b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
		var next atomic.Int64
		var tSet, tTest, tOther atomic.Int64
		var failed atomic.Value
		dials.Store(0)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for w := range conc {
			wg.Go(func() {
				ctx := context.Background()
				for k := w; ; k += conc {
					if next.Add(1) > int64(b.N) {
						return
					}
					i := k % benchUsers // worker w owns the users with i%conc == w
					mu.Lock()
					cur := vals[i]
					mu.Unlock()
					sec := rotators.Secret{Name: "bench", Type: SecretType}
					t0 := time.Now()
					resp, err := r.Create(ctx, rotators.CreateRequest{Secret: sec, Config: cfg, Current: cur})
					t1 := time.Now()
					if err == nil {
						err = r.Set(ctx, rotators.SetRequest{Secret: sec, Config: cfg, Current: cur, Pending: resp.Value, Admin: e.admin})
					}
					t2 := time.Now()
					if err == nil {
						err = r.Test(ctx, rotators.TestRequest{Secret: sec, Config: cfg, Value: resp.Value})
					}
					t3 := time.Now()
					if err == nil {
						err = r.Finish(ctx, rotators.FinishRequest{Secret: sec, Config: cfg, Current: resp.Value, Previous: cur, Admin: e.admin})
					}
					t4 := time.Now()
					if err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
					tSet.Add(int64(t2.Sub(t1)))
					tTest.Add(int64(t3.Sub(t2)))
					tOther.Add(int64(t1.Sub(t0) + t4.Sub(t3)))
					mu.Lock()
					vals[i] = resp.Value
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("rotation: %v", err)
		}
		n := float64(b.N)
		b.ReportMetric(n/elapsed.Seconds(), "rotations/s")
		b.ReportMetric(float64(dials.Load())/n, "conns/rot")
		b.ReportMetric(float64(tSet.Load())/n/1e6, "set-ms/rot")
		b.ReportMetric(float64(tTest.Load())/n/1e6, "test-ms/rot")
		b.ReportMetric(float64(tOther.Load())/n/1e6, "create+finish-ms/rot")
	})
}
