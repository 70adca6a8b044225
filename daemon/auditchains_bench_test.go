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

// BenchmarkSecretReadHTTPDaemons is BenchmarkSecretReadHTTP with the
// clients spread over two daemons sharing one PostgreSQL store (and root
// key): every read is audited before it is answered, so it measures how
// the two daemons' audit commits get along (issue 12).
func BenchmarkSecretReadHTTPDaemons(b *testing.B) {
	for _, conc := range []int{8, 32} {
		b.Run(fmt.Sprintf("store=postgres/daemons=2/clients=%d", conc), func(b *testing.B) {
			var dsn, keyFile string
			d1, token := startDaemonWith(b, "postgres", func(c *daemon.Config) { dsn, keyFile = c.Store.Postgres, c.RootKey.File })
			d2, _ := startDaemonWith(b, "postgres", func(c *daemon.Config) {
				c.Store.Postgres = dsn
				c.RootKey = daemon.RootKeyConfig{File: keyFile}
				c.RootToken = ""
			})
			addrs := []string{"http://" + d1.Addr(), "http://" + d2.Addr()}
			c, _ := client.New(addrs[0], client.WithToken(token))
			value := bytes.Repeat([]byte("k"), 1024)
			if _, err := c.CreateSecret(context.Background(), client.CreateSecretRequest{Name: "bench/secret", Value: client.NewValue(value)}); err != nil {
				b.Fatal(err)
			}
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
			lat := make([][]time.Duration, conc)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodGet, addrs[w%2]+"/v1/secrets/bench%2Fsecret/value", nil)
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
				}()
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
		})
	}
}
