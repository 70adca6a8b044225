package daemon_test

// Scale-out benchmarks (issue 12; make bench, never run by make test):
// audited reads from 32 clients spread over several daemons sharing one
// PostgreSQL schema, against one daemon on SQLite. The daemons are the
// real ones (daemon.New/Start, in this process, each with its own HTTP
// listener and store handle); the clients are the real Go client, each
// with its own HTTP transport, as separate processes would have.

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// benchCluster is n daemons on one store: one SQLite file (n = 1) or one
// PostgreSQL schema, one root key, one root token.
type benchCluster struct {
	ds    []*daemon.Daemon
	cs    []*client.Client // a root client per daemon
	token string
	cfg   daemon.Config // the configuration every daemon was started with, but for Listen
	// app is the application_name of the daemons' PostgreSQL sessions
	// (the schema's name), so that pgWaits can tell them from the
	// sessions of other tests sharing the server.
	app string
}

func startCluster(tb testing.TB, kind string, n int) *benchCluster {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	cl := &benchCluster{token: "bench-root-token-" + testenv.Unique("")}
	cfg := daemon.Config{
		Listen:    "127.0.0.1:0",
		RootKey:   daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootToken: cl.token,
		Stdout:    io.Discard,
		Logger:    discardLogger(),
	}
	switch kind {
	case "sqlite":
		if n != 1 {
			tb.Fatalf("a SQLite store has one daemon, not %d", n)
		}
		cfg.Store.SQLite = filepath.Join(dir, "rotary.db")
	case "postgres":
		dsn, schema := testenv.PostgresSchema(tb)
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatal(err)
		}
		q := u.Query()
		q.Set("application_name", schema)
		u.RawQuery = q.Encode()
		cfg.Store.Postgres, cl.app = u.String(), schema
	default:
		tb.Fatalf("unknown store %q", kind)
	}
	cl.cfg = cfg
	// One after the other: the first migrates the schema, makes the root
	// token and writes the root key file that the others read.
	for i := range n {
		d, err := daemon.New(ctx, cfg)
		if err != nil {
			tb.Fatalf("daemon %d: New: %v", i, err)
		}
		if err := d.Start(ctx); err != nil {
			tb.Fatalf("daemon %d: Start: %v", i, err)
		}
		tb.Cleanup(func() { _ = d.Stop() })
		c, err := client.New("http://"+d.Addr(), client.WithToken(cl.token))
		if err != nil {
			tb.Fatal(err)
		}
		cl.ds, cl.cs = append(cl.ds, d), append(cl.cs, c)
	}
	return cl
}

// pgWaits samples, every 10 ms until the returned stop is called, what
// the PostgreSQL sessions named app are doing (pg_stat_activity: state,
// wait event, statement), when ROTARY_BENCH_PG_WAITS is set; stop prints
// the most frequent, as average sessions (samples / rounds), on stdout
// (a benchmark's log keeps only 10 lines). A session
// "active" without a wait event is on CPU (or ready to run); "idle in
// transaction" is a transaction open while its client works; "Lock" +
// "object" on COMMIT is the database-wide lock that orders the commits of
// transactions that called pg_notify.
func pgWaits(tb testing.TB, app string) (stop func()) {
	tb.Helper()
	if app == "" || os.Getenv("ROTARY_BENCH_PG_WAITS") == "" {
		return func() {}
	}
	db, err := sql.Open("postgres", testenv.PostgresBaseDSN())
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	counts := map[string]int{}
	rounds := 0
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			rows, err := db.Query(`SELECT state, coalesce(wait_event_type, '-'), coalesce(wait_event, '-'),
				left(regexp_replace(query, '\s+', ' ', 'g'), 60)
				FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'`, app)
			if err != nil {
				continue
			}
			rounds++
			for rows.Next() {
				var state, wt, we, q string
				if rows.Scan(&state, &wt, &we, &q) == nil {
					counts[fmt.Sprintf("%-19s %-8s %-18s %s", state, wt, we, q)]++
				}
			}
			rows.Close()
		}
	}()
	return func() {
		close(done)
		<-finished
		_ = db.Close()
		type kv struct {
			k string
			n int
		}
		var all []kv
		total := 0
		for k, n := range counts {
			all = append(all, kv{k, n})
			total += n
		}
		slices.SortFunc(all, func(a, b kv) int { return cmp.Compare(b.n, a.n) })
		var sb strings.Builder
		fmt.Fprintf(&sb, "%s: pg_stat_activity of %s: %d rounds of 10 ms, %.2f non-idle sessions on average\n", tb.Name(), app, rounds, float64(total)/float64(max(rounds, 1)))
		for _, e := range all[:min(len(all), 25)] {
			fmt.Fprintf(&sb, "  %6.3f  %5.1f%%  %s\n", float64(e.n)/float64(max(rounds, 1)), 100*float64(e.n)/float64(max(total, 1)), e.k)
		}
		fmt.Print(sb.String())
	}
}

// BenchmarkSecretReadScaleOut: 32 clients read one 1 KiB secret as fast
// as they can (GetSecret: GET /v1/secrets/{name}/value, authorized and
// audited, the audit record durable before the answer), spread round
// robin over the daemons of one store (SQLite: one; PostgreSQL: one, two
// or three, as issue 12 asks). It reports reads per second and
// p50/p99 over the run. One op is the whole run (a second of warm-up,
// then ROTARY_BENCH_READ_SECONDS, default 10, of measurement), so run it
// with -benchtime 1x.
func BenchmarkSecretReadScaleOut(b *testing.B) {
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("ROTARY_BENCH_READ_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, tc := range []struct {
		store   string
		daemons int
	}{{"sqlite", 1}, {"postgres", 1}, {"postgres", 2}, {"postgres", 3}} {
		b.Run(fmt.Sprintf("store=%s/daemons=%d/clients=32", tc.store, tc.daemons), func(b *testing.B) {
			benchReadScaleOut(b, tc.store, tc.daemons, 32, time.Duration(secs)*time.Second)
		})
	}
}

func benchReadScaleOut(b *testing.B, kind string, daemons, clients int, measure time.Duration) {
	ctx := context.Background()
	cl := startCluster(b, kind, daemons)
	const name = "bench/read"
	value := bytes.Repeat([]byte("k"), 1024)
	if _, err := cl.cs[0].CreateSecret(ctx, client.CreateSecretRequest{Name: name, Value: client.NewValue(value)}); err != nil {
		b.Fatal(err)
	}
	// Every daemon answers with the value before the clock starts.
	for i, c := range cl.cs {
		got, err := c.GetSecret(ctx, name, 0, "")
		if err != nil {
			b.Fatalf("daemon %d: GetSecret: %v", i, err)
		}
		if g, err := got.Bytes(); err != nil || !bytes.Equal(g, value) {
			b.Fatalf("daemon %d: GetSecret returned another value (%v)", i, err)
		}
	}

	const warmup = time.Second
	start := time.Now()
	measureFrom, measureTo := start.Add(warmup), start.Add(warmup+measure)
	lat := make([][]time.Duration, clients)
	perDaemon := make([]int, daemons)
	var mu sync.Mutex
	var wg sync.WaitGroup
	b.ResetTimer()
	var stopWaits, stopCPU func()
	var load0 string
	var cpu0 time.Duration
	started := make(chan struct{})
	go func() {
		defer close(started)
		time.Sleep(time.Until(measureFrom))
		load0, cpu0 = loadavg(), cpuTime()
		stopWaits, stopCPU = pgWaits(b, cl.app), startCPUWaits(b)
	}()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			di := w % daemons
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
			c, err := client.New("http://"+cl.ds[di].Addr(), client.WithToken(cl.token), client.WithHTTPClient(hc))
			if err != nil {
				b.Error(err)
				return
			}
			defer hc.CloseIdleConnections()
			n := 0
			for {
				t0 := time.Now()
				if t0.After(measureTo) {
					break
				}
				got, err := c.GetSecret(ctx, name, 0, "")
				if err != nil {
					b.Errorf("client %d (daemon %d): GetSecret: %v", w, di, err)
					return
				}
				if got.Version != 1 {
					b.Errorf("client %d: version %d, want 1", w, got.Version)
					return
				}
				if t0.After(measureFrom) {
					lat[w] = append(lat[w], time.Since(t0))
					n++
				}
			}
			mu.Lock()
			perDaemon[di] += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	<-started
	b.StopTimer()
	cpu := cpuTime() - cpu0
	stopCPU()
	stopWaits()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no reads measured")
	}
	b.Logf("machine load average %s before, %s after; reads per daemon %v", load0, loadavg(), perDaemon)
	b.ReportMetric(float64(len(all))/measure.Seconds(), "reads/s")
	b.ReportMetric(pct(all, 50), "p50-ms")
	b.ReportMetric(pct(all, 99), "p99-ms")
	b.ReportMetric(pct(all, 100), "max-ms")
	// The process's CPU (daemons and clients), in percent of one core;
	// PostgreSQL's is not in it.
	b.ReportMetric(100*cpu.Seconds()/measure.Seconds(), "cpu-%")
}

// cpuPressure is the machine's CPU pressure stall counter (Linux PSI,
// /proc/pressure/cpu "some" total: microseconds in which at least one
// runnable task waited for a CPU), or -1.
func cpuPressure() time.Duration {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	for _, f := range strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) {
		if v, ok := strings.CutPrefix(f, "total="); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return time.Duration(us) * time.Microsecond
		}
	}
	return -1
}

// runqWait is the time this process's threads have spent runnable but
// waiting for a CPU (the second field of /proc/self/task/*/schedstat,
// summed over the threads alive now), or -1.
func runqWait() time.Duration {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return -1
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		sum += time.Duration(ns)
	}
	return sum
}

// startCPUWaits reports, from its call to the call of the
// function it returns, the machine's CPU pressure (percent of the wall
// time in which some task waited for a CPU) and this process's threads'
// run-queue wait (in cores: 1 = one thread waiting all the time).
func startCPUWaits(b *testing.B) (stop func()) {
	p0, q0, t0 := cpuPressure(), runqWait(), time.Now()
	return func() {
		p1, q1, wall := cpuPressure(), runqWait(), time.Since(t0)
		if p0 >= 0 && p1 >= 0 {
			b.ReportMetric(100*(p1-p0).Seconds()/wall.Seconds(), "cpu-pressure-%")
		}
		if q0 >= 0 && q1 >= 0 {
			b.ReportMetric((q1-q0).Seconds()/wall.Seconds(), "runq-wait-cores")
		}
	}
}
