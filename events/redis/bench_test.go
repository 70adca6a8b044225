package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rotary-secrets/rotary/events"
	rsink "github.com/rotary-secrets/rotary/events/redis"
	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/store"
)

// BenchmarkDeliver measures the sink alone against the machine's Redis:
// events per second in batches the relay claims (the relay's own store
// round trips are measured with the relay).
func BenchmarkDeliver(b *testing.B) {
	for _, batch := range []int{1, 100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			rdb := sharedB(b)
			prefix := testenv.Unique("bench") + ":"
			s := rsink.NewWithClient(rdb, prefix, 0)
			evs := make([]store.OutboxEvent, batch)
			for i := range evs {
				evs[i] = event(int64(i+1), events.Rotated, fmt.Sprintf("bench/s%d", i%50), int64(i+1), "current")
			}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if err := s.Deliver(ctx, evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			b.StopTimer()
			keys, _ := rdb.Keys(ctx, prefix+"*").Result()
			if len(keys) > 0 {
				rdb.Del(ctx, keys...)
			}
		})
	}
}
