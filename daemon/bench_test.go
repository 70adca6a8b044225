package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
)

// startDaemon runs a daemon on a free loopback port with the given store
// and returns it with a root token (startDaemonWith, refresh_bench_test.go).
func startDaemon(tb testing.TB, storeKind string) (*daemon.Daemon, string) {
	return startDaemonWith(tb, storeKind, nil)
}

// BenchmarkSecretReadHTTP measures GET /v1/secrets/{name}/value of a 1 KiB
// secret with a bearer token, at 1, 8 and 32 concurrent clients, on both
// stores. It reports reads per second and p50/p99 latency.
func BenchmarkSecretReadHTTP(b *testing.B) {
	for _, st := range []string{"sqlite", "postgres"} {
		for _, conc := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", st, conc), func(b *testing.B) {
				d, token := startDaemon(b, st)
				addr := "http://" + d.Addr()
				c, _ := client.New(addr, client.WithToken(token))
				value := bytes.Repeat([]byte("k"), 1024)
				if _, err := c.CreateSecret(context.Background(), client.CreateSecretRequest{Name: "bench/secret", Value: client.NewValue(value)}); err != nil {
					b.Fatal(err)
				}
				readLoad(b, []string{addr + "/v1/secrets/bench%2Fsecret/value"}, token, conc)
			})
		}
	}
}

// readLoad sends GETs of urls (client w uses urls[w%len(urls)]) with the
// bearer token from conc concurrent clients until b.N are done, and
// reports reads per second and the p50 and p99 latency.
func readLoad(b *testing.B, urls []string, token string, conc int) {
	b.Helper()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	lat := make([][]time.Duration, conc)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, urls[w%len(urls)], nil)
			req.Header.Set("Authorization", "Bearer "+token)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "reads/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
