package daemon_test

// Scheduler benchmarks (make bench; never run by make test): a daemon with
// 100,000 scheduled secrets sitting idle, and 10,000 secrets due in the
// same instant, on both stores. The records are written straight into the
// store through a second handle (the API would take far longer than the
// thing measured); the daemon is the real one, built with daemon.New.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/postgres"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// schedQuiet is the schedule of every benchmark secret: once a year, so
// that no regular due time falls inside a run (an "@every 1h" fires at
// each full hour, and a run crossing one rotates everything again). The
// benchmarks set the due times themselves.
const schedQuiet = "CRON_TZ=UTC 0 0 1 1 *"

// schedEnv is running daemons on one store plus a second handle on it.
type schedEnv struct {
	cl      *benchCluster
	c       *client.Client // the first daemon's
	st      store.Store    // the benchmark's own handle on the daemons' store
	keyFile string
	keyID   string // the default region's alias/default key
	seed    string // a secret made through the API, used to wake the runners
}

// schedStart starts daemons daemons on one store of kind (startCluster).
func schedStart(b *testing.B, kind string, daemons int) *schedEnv {
	b.Helper()
	ctx := context.Background()
	cl := startCluster(b, kind, daemons)
	env := &schedEnv{cl: cl, c: cl.cs[0], keyFile: cl.cfg.RootKey.File, seed: "bench/seed"}
	// The first secret makes the region's default key.
	if _, err := env.c.CreateSecret(ctx, client.CreateSecretRequest{Name: env.seed, Type: "password", Value: client.NewValue([]byte("seed-value"))}); err != nil {
		b.Fatal(err)
	}
	var st store.Store
	var err error
	if kind == "sqlite" {
		st, err = sqlite.Open(ctx, cl.cfg.Store.SQLite)
	} else {
		st, err = postgres.Open(ctx, cl.cfg.Store.Postgres)
	}
	if err != nil {
		b.Fatalf("open a second store handle: %v", err)
	}
	env.st = st
	b.Cleanup(func() { _ = st.Close() })
	sec, err := st.GetSecret(ctx, env.seed)
	if err != nil {
		b.Fatal(err)
	}
	env.keyID = sec.KeyID
	return env
}

// wake makes every daemon's runner look at its queue now: rotation
// settings changed through a daemon's API wake its runner (rows written
// behind its back do not).
func (e *schedEnv) wake(b *testing.B) {
	b.Helper()
	for i, c := range e.cl.cs {
		if _, err := c.SetRotation(context.Background(), e.seed, client.RotationSettings{Rotator: "random", Schedule: schedQuiet}); err != nil {
			b.Fatalf("wake the runner of daemon %d: %v", i, err)
		}
	}
}

// schedRow is what insert writes for one secret (ver only when its
// Version is set).
type schedRow struct {
	sec store.Secret
	ver store.SecretVersion
	rot store.Rotation
}

// insert writes rows in transactions of chunk rows, on workers connections
// at once (SQLite has one writer: use 1).
func (e *schedEnv) insert(b *testing.B, n, chunk, workers int, row func(i int) schedRow) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range next {
				err := e.st.InTx(ctx, func(tx store.Ops) error {
					for i := start; i < min(start+chunk, n); i++ {
						r := row(i)
						if err := tx.CreateSecret(ctx, r.sec); err != nil {
							return err
						}
						if r.ver.Version > 0 {
							if err := tx.InsertVersion(ctx, r.ver); err != nil {
								return err
							}
							if err := tx.SetStage(ctx, r.sec.Name, store.StageCurrent, r.ver.Version); err != nil {
								return err
							}
						}
						if err := tx.PutRotation(ctx, r.rot); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	func() {
		for start := 0; start < n; start += chunk {
			select {
			case next <- start:
			case err := <-errs:
				close(next)
				wg.Wait()
				b.Fatalf("insert: %v", err)
			}
		}
		close(next)
	}()
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("insert: %v", err)
	default:
	}
}

func insertWorkers(kind string) int {
	if kind == "sqlite" {
		return 1
	}
	return 8
}

// loadavg is the machine's 1-minute load average (Linux), or "?".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssMB is the process's resident set size (Linux), or 0.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

// BenchmarkSchedIdle100k: 100,000 secrets with schedules whose next due
// time is an hour away, on a daemon that has nothing to do. It reports
// the process's CPU over 10 s of idling (percent of one core), the live
// Go heap and the RSS afterwards, and how long one full scan of the
// rotations table takes (the lease-reclaim housekeeping job does one a
// minute). The process holds the daemon and an idle benchmark harness;
// PostgreSQL's own CPU is not counted.
func BenchmarkSchedIdle100k(b *testing.B) {
	const n = 100_000
	const idle = 10 * time.Second
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run("store="+kind, func(b *testing.B) {
			ctx := context.Background()
			e := schedStart(b, kind, 1)
			now := time.Now().UTC()
			due := now.Add(time.Hour)
			// Secrets without versions: nothing runs, so no value is read.
			t0 := time.Now()
			e.insert(b, n, 5000, insertWorkers(kind), func(i int) schedRow {
				name := fmt.Sprintf("bench/idle/%06d", i)
				d := due.Add(time.Duration(i%3600) * time.Second) // spread over the hour
				return schedRow{
					sec: store.Secret{Name: name, Type: "password", Region: "default", KeyID: e.keyID, NextVersion: 1, CreatedAt: now, UpdatedAt: now},
					rot: store.Rotation{Secret: name, Rotator: "random", Config: []byte("{}"), Schedule: schedQuiet,
						Enabled: true, NextDueAt: &d, UpdatedAt: now},
				}
			})
			b.Logf("inserted %d scheduled secrets in %v", n, time.Since(t0).Round(time.Millisecond))
			e.wake(b)

			t1 := time.Now()
			rots, err := e.st.ListRotations(ctx, store.ListRotationsParams{})
			if err != nil {
				b.Fatal(err)
			}
			scan := time.Since(t1)
			if len(rots) != n+1 {
				b.Fatalf("%d rotations in the store, want %d", len(rots), n+1)
			}
			rots = nil
			_ = e.st.Close()

			// Let the insert's garbage and the wake-up settle, then idle.
			runtime.GC()
			time.Sleep(2 * time.Second)
			b.ResetTimer()
			load0 := loadavg()
			cpu0, wall0 := cpuTime(), time.Now()
			time.Sleep(idle)
			cpu, wall := cpuTime()-cpu0, time.Since(wall0)
			b.StopTimer()
			b.Logf("machine load average %s before, %s after", load0, loadavg())
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-live-MB")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
			b.ReportMetric(rssMB(), "rss-MB")
			b.ReportMetric(float64(scan.Microseconds())/1000, "scan-ms")
		})
	}
}

// BenchmarkSchedDue10k: 10,000 secrets with the random rotator, all due at
// the same instant T, on one daemon (SQLite, PostgreSQL) and on three
// daemons sharing one PostgreSQL schema, each with the default rotation
// concurrency (8). It reports rotations per second from T until the last
// one ended, and the lag between T and each run's start (first, p50, p99,
// max); the log says how many each daemon claimed.
// ROTARY_BENCH_SCHED_DUE overrides the count (for a quick look).
// ROTARY_BENCH_PG_WAITS samples PostgreSQL's wait events while they drain
// (pgWaits).
func BenchmarkSchedDue10k(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("ROTARY_BENCH_SCHED_DUE")); err == nil && v > 0 {
		n = v
	}
	for _, tc := range []struct {
		kind    string
		daemons int
	}{{"sqlite", 1}, {"postgres", 1}, {"postgres", 3}} {
		kind := tc.kind
		b.Run(fmt.Sprintf("store=%s/daemons=%d", kind, tc.daemons), func(b *testing.B) {
			ctx := context.Background()
			e := schedStart(b, kind, tc.daemons)
			root, err := kms.FileSource{Path: e.keyFile}.RootKey(ctx)
			if err != nil {
				b.Fatal(err)
			}
			keys, err := kms.New(ctx, kms.Config{Store: secrets.KeyStore(e.st), Root: root})
			root.Wipe()
			if err != nil {
				b.Fatal(err)
			}

			// Pass 1: real sealed versions (the rotator reads them), with
			// the rotations disabled.
			now := time.Now().UTC()
			rows := make([]schedRow, n)
			for i := range rows {
				name := fmt.Sprintf("bench/due/%05d", i)
				value := []byte("initial-" + testenv.Unique(""))
				sealed, err := keys.Seal(ctx, kms.SealParams{Region: "default", KeyRef: e.keyID, Secret: name, Version: 1, Plaintext: value})
				if err != nil {
					b.Fatal(err)
				}
				fp, err := keys.Fingerprint(ctx, "default", "password", value)
				if err != nil {
					b.Fatal(err)
				}
				rows[i] = schedRow{
					sec: store.Secret{Name: name, Type: "password", Region: "default", KeyID: e.keyID, NextVersion: 2, CreatedAt: now, UpdatedAt: now},
					ver: store.SecretVersion{Secret: name, Version: 1, Envelope: sealed.Envelope, KeyID: sealed.KeyID, KeyVersion: sealed.KeyVersion,
						Fingerprint: fp, CreatedAt: now, CreatedBy: "bench", Reason: "create"},
					rot: store.Rotation{Secret: name, Rotator: "random", Config: []byte("{}"), Schedule: schedQuiet, UpdatedAt: now},
				}
			}
			t0 := time.Now()
			e.insert(b, n, 2000, insertWorkers(kind), func(i int) schedRow { return rows[i] })
			pass1 := time.Since(t0)

			// Pass 2: one transaction makes them all due at T, far enough
			// ahead that it commits first.
			due := time.Now().Add(pass1 + 2*time.Second).UTC().Truncate(time.Millisecond)
			err = e.st.InTx(ctx, func(tx store.Ops) error {
				for i := range rows {
					r := rows[i].rot
					r.Enabled, r.NextDueAt = true, &due
					if err := tx.PutRotation(ctx, r); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			e.wake(b)
			if left := time.Until(due); left < 200*time.Millisecond {
				b.Fatalf("setup committed %v before the due time: too late", left)
			}
			b.Logf("inserted %d secrets in %v; due in %v", n, pass1.Round(time.Millisecond), time.Until(due).Round(time.Millisecond))
			time.Sleep(time.Until(due))

			// Wait until all have rotated. The daemons' metrics say when
			// they have claimed n and run none (a few small HTTP requests
			// every 100 ms); only then is the rotations table read (a scan
			// of all n rows, kept out of the drain so that the harness
			// takes as little CPU from the daemons as it can).
			b.ResetTimer()
			load0 := loadavg()
			cpu0 := cpuTime()
			stopWaits, stopCPU := pgWaits(b, e.cl.app), startCPUWaits(b)
			deadline := time.Now().Add(20 * time.Minute)
			for {
				claimed, running := 0.0, 0.0
				for _, d := range e.cl.ds {
					claimed += metric(b, d.Addr(), e.cl.token, "rotary_rotations_claimed_total")
					running += metric(b, d.Addr(), e.cl.token, "rotary_rotations_running")
				}
				done := 0
				if claimed >= float64(n) && running == 0 {
					rots, err := e.st.ListRotations(ctx, store.ListRotationsParams{})
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range rots {
						if r.LastRotatedAt != nil && !r.LastRotatedAt.Before(due) && strings.HasPrefix(r.Secret, "bench/due/") {
							done++
						}
					}
					if done == n {
						break
					}
				}
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d rotated after %v (%v claimed)", done, n, time.Since(due), claimed)
				}
				time.Sleep(100 * time.Millisecond)
			}
			cpu, wall := cpuTime()-cpu0, time.Since(due)
			b.StopTimer()
			stopCPU()
			stopWaits()
			claimed := make([]float64, len(e.cl.ds))
			for i, d := range e.cl.ds {
				claimed[i] = metric(b, d.Addr(), e.cl.token, "rotary_rotations_claimed_total")
			}
			b.Logf("machine load average %s before, %s after; claimed per daemon %v", load0, loadavg(), claimed)

			// Each secret: exactly one succeeded scheduled run.
			lags := make([]time.Duration, 0, n)
			var last time.Time
			for i := range rows {
				runs, err := e.st.ListRuns(ctx, rows[i].sec.Name, 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(runs) != 1 || runs[0].State != store.RunSucceeded || runs[0].Trigger != "scheduled" || runs[0].EndedAt == nil {
					b.Errorf("%s: want one succeeded scheduled run, got %+v", rows[i].sec.Name, runs)
					continue
				}
				lags = append(lags, runs[0].StartedAt.Sub(due))
				if runs[0].EndedAt.After(last) {
					last = *runs[0].EndedAt
				}
			}
			if len(lags) == 0 {
				return
			}
			slices.Sort(lags)
			took := last.Sub(due)
			b.ReportMetric(float64(len(lags))/took.Seconds(), "rotations/s")
			b.ReportMetric(took.Seconds(), "total-s")
			b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "lag-p50-ms")
			b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
			b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "lag-max-ms")
			b.ReportMetric(float64(lags[0].Microseconds())/1000, "lag-first-ms")
			// The process's CPU while rotating (daemon plus the once-a-second
			// progress scan), in percent of one core; PostgreSQL's is not in it.
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
		})
	}
}
