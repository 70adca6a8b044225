package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

const benchRoles = 1000

type benchRole struct {
	mu    sync.Mutex
	value rotators.Value
}

// benchPool creates benchRoles login roles in rotary_pwcheck (so every
// login in the benchmark is a real SCRAM-SHA-256 exchange) in one
// transaction, with verifiers computed here, and drops them at the end.
func benchPool(b *testing.B) []*benchRole {
	b.Helper()
	h := newTarget(b)
	prefix := testenv.Unique("rt_bench_") + "_"
	roles := make([]*benchRole, benchRoles)
	var stmt strings.Builder
	stmt.WriteString("BEGIN;\n")
	for i := range roles {
		name := fmt.Sprintf("%s%04d", prefix, i)
		pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
		if err != nil {
			b.Fatal(err)
		}
		v, err := ScramVerifier(pw, 0)
		if err != nil {
			b.Fatal(err)
		}
		stmt.WriteString("CREATE ROLE " + pq.QuoteIdentifier(name) + " LOGIN IN ROLE rotary_pwcheck PASSWORD " + pq.QuoteLiteral(v) + ";\n")
		roles[i] = &benchRole{value: h.value(name, pw)}
	}
	stmt.WriteString("COMMIT;")
	if _, err := h.db.Exec(stmt.String()); err != nil {
		b.Fatalf("create %d roles: %v", benchRoles, err)
	}
	b.Cleanup(func() {
		var drop strings.Builder
		drop.WriteString("BEGIN;\n")
		for i := range roles {
			drop.WriteString("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(fmt.Sprintf("%s%04d", prefix, i)) + ";\n")
		}
		drop.WriteString("COMMIT;")
		if _, err := h.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE starts_with(usename, $1)`, prefix); err != nil {
			b.Logf("end sessions: %v", err)
		}
		if _, err := h.db.Exec(drop.String()); err != nil {
			b.Errorf("drop the benchmark roles: %v", err)
		}
	})
	return roles
}

// BenchmarkRotate runs whole single-user rotations (Create → Set → Test →
// Finish, the Test a real login with the new password) over 1,000 roles,
// at 1 and 8 rotations at a time, and reports rotations/s and the mean
// time of each step per rotation.
func BenchmarkRotate(b *testing.B) {
	roles := benchPool(b)
	r := New()
	cfg := json.RawMessage(`{"strategy":"single-user"}`)
	var next atomic.Int64
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			var create, set, test, finish atomic.Int64 // nanoseconds, summed
			var failed atomic.Value
			var work atomic.Int64
			work.Store(int64(b.N))
			ctx := context.Background()
			b.ResetTimer()
			cpu0 := processCPU()
			start := time.Now()
			var wg sync.WaitGroup
			for range conc {
				wg.Go(func() {
					for work.Add(-1) >= 0 {
						role := roles[next.Add(1)%benchRoles]
						role.mu.Lock()
						t0 := time.Now()
						resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: role.value})
						t1 := time.Now()
						if err == nil {
							err = r.Set(ctx, rotators.SetRequest{Config: cfg, Current: role.value, Pending: resp.Value})
						}
						t2 := time.Now()
						if err == nil {
							err = r.Test(ctx, rotators.TestRequest{Config: cfg, Value: resp.Value})
						}
						t3 := time.Now()
						if err == nil {
							err = r.Finish(ctx, rotators.FinishRequest{Config: cfg, Current: resp.Value, Previous: role.value})
						}
						t4 := time.Now()
						if err != nil {
							failed.CompareAndSwap(nil, err)
						} else {
							role.value = resp.Value
						}
						role.mu.Unlock()
						create.Add(int64(t1.Sub(t0)))
						set.Add(int64(t2.Sub(t1)))
						test.Add(int64(t3.Sub(t2)))
						finish.Add(int64(t4.Sub(t3)))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu := processCPU() - cpu0
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatalf("rotation failed: %v", err)
			}
			n := float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "rotations/s")
			b.ReportMetric(float64(create.Load())/n/1e6, "create-ms")
			b.ReportMetric(float64(set.Load())/n/1e6, "set-ms")
			b.ReportMetric(float64(test.Load())/n/1e6, "test-ms")
			b.ReportMetric(float64(finish.Load())/n/1e6, "finish-ms")
			// The rotator's own CPU (this process: PBKDF2 three times, the
			// driver, JSON), apart from the server's.
			b.ReportMetric(float64(cpu)/n/1e6, "client-cpu-ms")
		})
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifier is the SCRAM-SHA-256 verifier Set computes: 4096
// rounds of PBKDF2-HMAC-SHA-256 (and, for comparison, 2× and 4× that). A
// SCRAM login costs the client the same PBKDF2 again.
func BenchmarkVerifier(b *testing.B) {
	pw := sensitive.Bytes("a-32-character-generated-passwd!")
	for _, iter := range []int{DefaultIterations, 2 * DefaultIterations, 4 * DefaultIterations} {
		b.Run(fmt.Sprintf("iterations=%d", iter), func(b *testing.B) {
			for b.Loop() {
				if _, err := ScramVerifier(pw, iter); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLogin splits a rotation's network work: a SCRAM login over TCP
// (connect, authenticate, one query, close: what Set and Test each do
// once), and ALTER ROLE … PASSWORD on an open connection (a catalog update
// and a commit).
func BenchmarkLogin(b *testing.B) {
	h := newTarget(b)
	name := testenv.Unique("rt_benchlogin_")
	pw, _ := rotators.GeneratePassword(rotators.PasswordPolicy{})
	v, _ := ScramVerifier(pw, 0)
	if _, err := h.db.Exec("CREATE ROLE " + pq.QuoteIdentifier(name) + " LOGIN IN ROLE rotary_pwcheck PASSWORD " + pq.QuoteLiteral(v)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.dropRoles(b, name) })
	value := h.value(name, pw)
	c, _ := rotators.ParseDBCredentials(value)
	cfg := rotators.DBConfig{}
	ctx := context.Background()
	b.Run("scram-login", func(b *testing.B) {
		for b.Loop() {
			db, err := open(ctx, cfg, c)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	b.Run("alter-role", func(b *testing.B) {
		db, err := open(ctx, cfg, c)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		stmt := alterPasswordSQL(name, v) // the same verifier: the password stays valid
		for b.Loop() {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("trusted-connect", func(b *testing.B) {
		// The superuser is trusted: connect and query without SCRAM, to
		// separate the connection (backend fork) from the PBKDF2.
		su := rotators.DBCredentials{Host: h.host, Port: h.port, Username: h.superuser, Password: "unused", DBName: h.dbname}
		for b.Loop() {
			db, err := open(ctx, cfg, su)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
}
