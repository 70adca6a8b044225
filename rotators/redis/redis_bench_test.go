package redis_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/redis"
)

// BenchmarkRotate measures whole rotations (Create → Set → Test → Finish)
// against the machine's Redis, one user per goroutine, at concurrency 1
// and 8, for both strategies. Besides ns/op it reports rotations/s and the
// mean time of each step per rotation (µs), so the cost can be split into
// the rotator's connections (each of Set, Test and Finish dials and
// authenticates once) and the commands themselves.
func BenchmarkRotate(b *testing.B) {
	rdb := root(b)
	admin := createUser(b, rdb, testenv.Unique("rt_bench_admin_"), adminRules)
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategySingleUser} {
		rules := appRules
		if strategy == rotators.StrategySingleUser {
			rules = append(append([]string{}, appRules...), selfRules...)
		}
		for _, conc := range []int{1, 8} {
			// The users live across the benchmark's rounds; each keeps
			// its current value between rotations.
			users := make([]rotators.Value, conc)
			for i := range users {
				users[i] = createUser(b, rdb, testenv.Unique(fmt.Sprintf("rt_bench_%d_", i)), rules)
			}
			cfg := config(strategy, "admin")
			b.Run(fmt.Sprintf("%s/concurrency=%d", strategy, conc), func(b *testing.B) {
				var (
					r           redis.Rotator
					next        atomic.Int64
					steps       [4]atomic.Int64 // create, set, test, finish (ns)
					wg          sync.WaitGroup
					errMu       sync.Mutex
					firstErr    error
					ctx, cancel = context.WithTimeout(context.Background(), 10*time.Minute)
					timed       = func(i int, start time.Time) { steps[i].Add(int64(time.Since(start))) }
					fail        = func(err error) {
						errMu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						errMu.Unlock()
					}
				)
				defer cancel()
				b.ResetTimer()
				start := time.Now()
				for w := range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							cur := users[w]
							t0 := time.Now()
							resp, err := r.Create(ctx, rotators.CreateRequest{Config: cfg, Current: cur})
							timed(0, t0)
							if err != nil {
								fail(err)
								return
							}
							t0 = time.Now()
							err = r.Set(ctx, rotators.SetRequest{Config: cfg, Current: cur, Pending: resp.Value, Admin: admin})
							timed(1, t0)
							if err != nil {
								fail(err)
								return
							}
							t0 = time.Now()
							err = r.Test(ctx, rotators.TestRequest{Config: cfg, Value: resp.Value})
							timed(2, t0)
							if err != nil {
								fail(err)
								return
							}
							t0 = time.Now()
							err = r.Finish(ctx, rotators.FinishRequest{Config: cfg, Current: resp.Value, Previous: cur, Admin: admin})
							timed(3, t0)
							if err != nil {
								fail(err)
								return
							}
							users[w] = resp.Value
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				if firstErr != nil {
					b.Fatalf("rotation failed: %v", firstErr)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rotations/s")
				for i, name := range []string{"create", "set", "test", "finish"} {
					b.ReportMetric(float64(steps[i].Load())/float64(b.N)/1e3, name+"-µs/rot")
				}
			})
		}
	}
}
