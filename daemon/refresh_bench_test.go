package daemon_test

// Client refresh benchmarks (issue 10; make bench, never run by make
// test): how long after a rotation finishes the watching clients' Watch
// callbacks run, over GET /v1/events and over Redis, and how fast the
// relay empties the outbox into Redis. The daemon is the real one
// (daemon.New), the clients are the real Go client, Redis is a
// redis-server of the benchmark's own (no persistence, a free port).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// startDaemonWith is startDaemon with a chance to change the
// configuration (the Redis the events go to) before New.
func startDaemonWith(tb testing.TB, storeKind string, edit func(*daemon.Config)) (*daemon.Daemon, string) {
	tb.Helper()
	dir := tb.TempDir()
	token := "bench-root-token-" + testenv.Unique("")
	cfg := daemon.Config{
		Listen:    "127.0.0.1:0",
		RootKey:   daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootToken: token,
		Stdout:    io.Discard,
		Logger:    discardLogger(),
	}
	switch storeKind {
	case "sqlite":
		cfg.Store.SQLite = filepath.Join(dir, "rotary.db")
	case "postgres":
		cfg.Store.Postgres, _ = testenv.PostgresSchema(tb)
	}
	if edit != nil {
		edit(&cfg)
	}
	d, err := daemon.New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("daemon.New: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() { _ = d.Stop() })
	return d, token
}

// benchRedis is a redis-server of the benchmark's own on a free port,
// which it may start late and stop again. It keeps nothing on disk, so a
// restart starts empty.
type benchRedis struct {
	tb   testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

func newBenchRedis(tb testing.TB) *benchRedis {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	r := &benchRedis{tb: tb, port: port, dir: tb.TempDir()}
	tb.Cleanup(r.stop)
	return r
}

func (r *benchRedis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }
func (r *benchRedis) url() string  { return "redis://" + r.addr() }

func (r *benchRedis) client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: r.addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
}

// start runs redis-server and waits until it answers.
func (r *benchRedis) start() {
	r.tb.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--daemonize", "no", "--maxclients", "10000",
		"--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	rdb := r.client()
	defer rdb.Close()
	waitUntil(r.tb, 30*time.Second, "the benchmark's redis-server to answer", func() bool {
		return rdb.Ping(context.Background()).Err() == nil
	})
}

func (r *benchRedis) stop() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// waitUntil polls cond until it holds, failing after timeout.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// metric reads one unlabelled metric from the daemon's /metrics.
func metric(tb testing.TB, addr, token, name string) float64 {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("metric %s: %q", name, v)
			}
			return f
		}
	}
	tb.Fatalf("metric %s not in /metrics", name)
	return 0
}

// pct returns the p-th percentile (0 < p ≤ 100) of sorted, in ms.
func pct(sorted []time.Duration, p float64) float64 {
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

// BenchmarkRefreshLatency measures, for every watching client and every
// rotation, the time from the rotation's finish to the client's Watch
// callback for the "rotated" event. One op is one rotation; run it with
// -benchtime=Nx.
//
// "Finish" is the event's At: secrets.Service.Promote stamps it
// (time.Now, nanoseconds, carried as RFC 3339 with nanoseconds in the
// event JSON) inside the finish transaction, just before the outbox row
// is appended; the audit record and the run's step follow in the same
// transaction, then the commit. The daemon runs in this process, so At
// and the callback's clock are the same clock. The figure is therefore an
// upper bound of commit → callback, by the rest of that transaction.
//
// Every client is its own client.Client with its own HTTP transport (and,
// for Redis, its own go-redis client), as separate processes would be; it
// has read the secret (Get) before, so the callback runs after the cache
// has fetched the new value, as Watch promises: the figure includes that
// fetch. get=false leaves the cache empty, so the callback runs as soon
// as the event arrives: the event's delivery alone.
func BenchmarkRefreshLatency(b *testing.B) {
	for _, src := range []string{"sse", "redis"} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("source=%s/watchers=%d", src, n), func(b *testing.B) { benchRefresh(b, src, n, true) })
		}
		b.Run(fmt.Sprintf("source=%s/watchers=1000/get=false", src), func(b *testing.B) { benchRefresh(b, src, 1000, false) })
	}
}

type arrival struct {
	client  int
	version int64
	lat     time.Duration
}

func benchRefresh(b *testing.B, source string, n int, get bool) {
	ctx := context.Background()
	var rds *benchRedis
	prefix := "bench-" + testenv.Unique("") + ":"
	d, token := startDaemonWith(b, "sqlite", func(cfg *daemon.Config) {
		if source == "redis" {
			rds = newBenchRedis(b)
			rds.start()
			cfg.Redis = daemon.RedisConfig{URL: rds.url(), Prefix: prefix}
		}
	})
	addr := "http://" + d.Addr()
	admin, err := client.New(addr, client.WithToken(token))
	if err != nil {
		b.Fatal(err)
	}
	name := "bench/refresh-" + testenv.Unique("")
	if _, err := admin.CreateSecret(ctx, client.CreateSecretRequest{Name: name, Type: "password", Value: client.NewValue([]byte(testenv.Unique("v")))}); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.SetRotation(ctx, name, client.RotationSettings{Rotator: "random", Schedule: "@every 24h"}); err != nil {
		b.Fatal(err)
	}

	arrivals := make(chan arrival, 2*n)
	clients := make([]*client.Client, n)
	transports := make([]*http.Transport, n)
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for i, c := range clients {
			if c != nil {
				wg.Go(func() { _ = c.Close(); transports[i].CloseIdleConnections() })
			}
		}
		wg.Wait()
	})
	var version atomic.Int64 // the version the clients' Gets saw
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 { // connect 32 at a time
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tr := http.DefaultTransport.(*http.Transport).Clone()
				transports[i] = tr
				opts := []client.Option{
					client.WithHTTPClient(&http.Client{Transport: tr, Timeout: time.Minute}),
					client.WithToken(token), client.WithPollInterval(0),
				}
				if source == "redis" {
					o, err := client.WithRedisURL(rds.url(), prefix)
					if err != nil {
						b.Error(err)
						return
					}
					opts = append(opts, o)
				}
				c, err := client.New(addr, opts...)
				if err != nil {
					b.Error(err)
					return
				}
				clients[i] = c
				if _, err := c.Watch(name, func(e client.Event) {
					if e.Event == "rotated" && e.Secret == name {
						arrivals <- arrival{client: i, version: e.Version, lat: time.Since(e.At)}
					}
				}); err != nil {
					b.Error(err)
					return
				}
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				err = c.WaitConnected(wctx)
				cancel()
				if err != nil {
					b.Errorf("client %d: WaitConnected: %v", i, err)
					return
				}
				if get {
					cur, err := c.Get(ctx, name)
					if err != nil {
						b.Errorf("client %d: Get: %v", i, err)
						return
					}
					version.Store(cur.Version)
					clear(cur.Value)
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	// The watchers are real: n streams open on the daemon, or n pub/sub
	// connections (and a stream reader each) on Redis.
	switch source {
	case "sse":
		waitUntil(b, time.Minute, fmt.Sprintf("%d event streams", n), func() bool {
			return metric(b, d.Addr(), token, "rotary_event_stream_subscribers") == float64(n)
		})
	case "redis":
		rdb := rds.client()
		defer rdb.Close()
		waitUntil(b, time.Minute, fmt.Sprintf("%d pub/sub subscribers", n), func() bool {
			l, err := rdb.ClientList(ctx).Result()
			return err == nil && strings.Count(l, " psub=1 ") == n
		})
	}
	sv, err := admin.GetSecret(ctx, name, 0, "") // not Get: the admin client opens no stream
	if err != nil {
		b.Fatal(err)
	}
	base := sv.Version
	if get && version.Load() != base {
		b.Fatalf("the clients read version %d, the secret is at %d", version.Load(), base)
	}

	// With Redis, one more subscriber of the secret's channel (raw
	// go-redis, no client cache) times when the relay has published:
	// finish → PUBLISH received, the relay's share of the latency.
	var published chan time.Duration
	if source == "redis" {
		rdb := rds.client()
		defer rdb.Close()
		sub := rdb.Subscribe(ctx, prefix+"secret:"+name)
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmed
			b.Fatal(err)
		}
		published = make(chan time.Duration, 16)
		go func() {
			for m := range sub.Channel() {
				var e client.Event
				if json.Unmarshal([]byte(m.Payload), &e) == nil && e.Event == "rotated" {
					select {
					case published <- time.Since(e.At):
					default: // nobody waits for it any more
					}
				}
			}
		}()
	}
	var lat, pub []time.Duration
	var rotateDur []time.Duration
	rotations := 0
	for b.Loop() {
		rotations++
		want := base + int64(rotations)
		t0 := time.Now()
		res, err := admin.Rotate(ctx, name, client.RotateOptions{Wait: true})
		if err != nil {
			b.Fatalf("rotation %d: %v", rotations, err)
		}
		rotateDur = append(rotateDur, time.Since(t0))
		if res.State != "succeeded" {
			b.Fatalf("rotation %d: state %q", rotations, res.State)
		}
		seen := make([]bool, n)
		timeout := time.NewTimer(2 * time.Minute)
		for got := 0; got < n; {
			select {
			case a := <-arrivals:
				if a.version != want || seen[a.client] {
					b.Fatalf("rotation %d: client %d got version %d (again: %v), want %d", rotations, a.client, a.version, seen[a.client], want)
				}
				seen[a.client] = true
				lat = append(lat, a.lat)
				got++
			case <-timeout.C:
				b.Fatalf("rotation %d: %d of %d callbacks after 2m", rotations, got, n)
			}
		}
		if published != nil {
			select {
			case d := <-published:
				pub = append(pub, d)
			case <-timeout.C:
				b.Fatalf("rotation %d: not published after 2m", rotations)
			}
		}
		timeout.Stop()
	}
	slices.Sort(lat)
	if len(pub) > 0 {
		slices.Sort(pub)
		b.ReportMetric(pct(pub, 50), "published-p50-ms")
		b.ReportMetric(pct(pub, 99), "published-p99-ms")
	}
	slices.Sort(rotateDur)
	b.ReportMetric(pct(lat, 50), "p50-ms")
	b.ReportMetric(pct(lat, 99), "p99-ms")
	b.ReportMetric(pct(lat, 100), "max-ms")
	b.ReportMetric(float64(len(lat)), "callbacks")
	b.ReportMetric(pct(rotateDur, 50), "rotate-p50-ms")
}

// BenchmarkRelayThroughput measures the relay end to end, store → Redis:
// events per second from the outbox into the Redis stream (XLEN).
//
// redis=late: the daemon's Redis is down while 10,000 puts fill the
// outbox; then redis-server starts on that port, and the drain is timed
// from the first entry in the stream to the last (the wait before the
// first, the relay's failure backoff, is reported apart as recover-s).
// redis=up: Redis runs throughout; 10,000 puts (2,000 on PostgreSQL,
// whose writes are slow) as fast as 16 writers go,
// and the time from the first put to the last event in Redis (the rate
// is then the write rate; lag-ms is how far Redis was behind the last
// put).
//
// One op is one fill and drain; run it with -benchtime=1x.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, st := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"late", "up"} {
			n := relayPuts
			if st == "postgres" && mode == "up" {
				n = relayPuts / 5 // bounded by the write rate anyway
			}
			b.Run(fmt.Sprintf("store=%s/redis=%s", st, mode), func(b *testing.B) { benchRelay(b, st, mode == "late", n) })
		}
	}
}

const (
	relayPuts    = 10_000
	relaySecrets = 100
	relayWriters = 16
)

func benchRelay(b *testing.B, storeKind string, late bool, nputs int) {
	ctx := context.Background()
	rds := newBenchRedis(b)
	prefix := "bench-" + testenv.Unique("") + ":"
	stream := prefix + "events"
	d, token := startDaemonWith(b, storeKind, func(cfg *daemon.Config) {
		cfg.Redis = daemon.RedisConfig{URL: rds.url(), Prefix: prefix}
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: relayWriters, MaxConnsPerHost: relayWriters}, Timeout: time.Minute}
	c, err := client.New("http://"+d.Addr(), client.WithHTTPClient(hc), client.WithToken(token))
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, relaySecrets)
	for i := range names {
		names[i] = fmt.Sprintf("bench/relay-%03d", i)
	}
	value := []byte(testenv.Unique("value-"))
	// puts writes relayPuts versions with relayWriters concurrent writers.
	puts := func() {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range relayWriters {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(nputs); i = next.Add(1) - 1 {
					if _, err := c.PutSecret(ctx, names[i%relaySecrets], value); err != nil {
						b.Errorf("put: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
	}

	var drained, events, dups int64
	var drain, recovery, lag time.Duration
	var putRate float64
	cycle := 0
	for b.Loop() {
		b.StopTimer()
		cycle++
		if !late && cycle == 1 {
			rds.start()
		}
		rdb := rds.client()
		if cycle == 1 {
			for _, n := range names {
				if _, err := c.CreateSecret(ctx, client.CreateSecretRequest{Name: n, Value: client.NewValue(value)}); err != nil {
					b.Fatal(err)
				}
			}
		}
		if late {
			// Everything written so far waits in the outbox.
			start := time.Now()
			puts()
			putRate = float64(nputs) / time.Since(start).Seconds()
			backlog := int64(metric(b, d.Addr(), token, "rotary_outbox_backlog"))
			if backlog < int64(nputs) {
				b.Fatalf("backlog %d after %d puts with Redis down", backlog, nputs)
			}
			b.StartTimer()
			up := time.Now()
			rds.start()
			var first time.Time
			var firstLen int64
			waitUntil(b, 5*time.Minute, fmt.Sprintf("%d events in the stream", backlog), func() bool {
				n, err := rdb.XLen(ctx, stream).Result()
				if err != nil || n == 0 {
					return false
				}
				if first.IsZero() {
					first, firstLen = time.Now(), n
				}
				return n >= backlog
			})
			// Delivered means marked too: the last batch is in Redis before
			// the relay marks it (a batch may also come twice).
			waitUntil(b, time.Minute, "an empty outbox", func() bool {
				return metric(b, d.Addr(), token, "rotary_outbox_backlog") == 0
			})
			done := time.Now()
			b.StopTimer()
			recovery += first.Sub(up)
			drain += done.Sub(first)
			drained += backlog - firstLen
			events += backlog
			if n, err := rdb.XLen(ctx, stream).Result(); err == nil {
				dups += n - backlog
			}
			rds.stop() // the next cycle fills with Redis down again
		} else {
			waitUntil(b, time.Minute, "an empty outbox", func() bool {
				return metric(b, d.Addr(), token, "rotary_outbox_backlog") == 0
			})
			before, err := rdb.XLen(ctx, stream).Result()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			puts()
			putsDone := time.Now()
			want := before + int64(nputs)
			waitUntil(b, 5*time.Minute, fmt.Sprintf("%d events in the stream", want), func() bool {
				n, err := rdb.XLen(ctx, stream).Result()
				return err == nil && n >= want
			})
			done := time.Now()
			b.StopTimer()
			putRate = float64(nputs) / putsDone.Sub(start).Seconds()
			lag += done.Sub(putsDone)
			drain += done.Sub(start)
			drained += int64(nputs)
			events += int64(nputs)
		}
		rdb.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(drained)/drain.Seconds(), "events/s")
	b.ReportMetric(putRate, "puts/s")
	if late {
		b.ReportMetric(recovery.Seconds()/float64(cycle), "recover-s")
		b.ReportMetric(float64(dups)/float64(cycle), "dups/op")
	} else {
		b.ReportMetric(float64(lag.Milliseconds())/float64(cycle), "lag-ms")
	}
	b.ReportMetric(float64(events)/float64(cycle), "events/op")
}
