package hooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/hooks"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// BenchmarkHookLatency measures the time from the commit of a rotation's
// outbox event (what the finish transaction writes; the daemon then wakes
// the relay, as here) to its arrival at a webhook, through the relay, the
// fan-out into hook deliveries, the claim and the signed POST. The polls
// are the daemon's defaults (1s), so only the wake-ups keep it short.
// Reports p50 and p99 in milliseconds.
func BenchmarkHookLatency(b *testing.B) {
	arrived := make(chan int64, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev events.Event
		_ = json.Unmarshal(body, &ev)
		arrived <- ev.Version
	}))
	defer srv.Close()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "rotary.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	m, err := hooks.New(hooks.Config{Store: st, Key: testKey})
	if err != nil {
		b.Fatal(err)
	}
	r, err := events.NewRelay(events.RelayConfig{Store: st, Sinks: []events.Sink{m.Sink()}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Add(context.Background(), hooks.AddParams{Name: "bench", On: hooks.OnFinished, Kind: hooks.KindWebhook, Target: srv.URL}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	wg.Go(func() { m.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		v := int64(i + 2)
		ev := events.Event{Event: events.Rotated, Secret: "bench/app", Version: v, At: time.Now().UTC()}
		start := time.Now()
		if _, err := st.AppendOutbox(ctx, store.OutboxEvent{Type: ev.Event, Secret: ev.Secret, Version: v, Payload: ev.Marshal(), CreatedAt: ev.At}); err != nil {
			b.Fatal(err)
		}
		r.Wake()
		select {
		case got := <-arrived:
			if got != v {
				b.Fatalf("webhook got version %d, want %d", got, v)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("event %d not delivered within 10s", v)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
