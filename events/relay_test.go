package events_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// recordSink records what it was given; fail makes Deliver fail.
type recordSink struct {
	mu   sync.Mutex
	got  []int64
	fail bool
	seen chan struct{}
}

func (s *recordSink) Name() string { return "record" }
func (s *recordSink) Deliver(_ context.Context, evs []store.OutboxEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		select {
		case s.seen <- struct{}{}:
		default:
		}
	}()
	if s.fail {
		return errors.New("sink down")
	}
	for _, e := range evs {
		s.got = append(s.got, e.ID)
	}
	return nil
}

func (s *recordSink) ids() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.got...)
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rotary.db"))
	if err != nil {
		t.Fatalf("sqlite.Open err = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRelayDeliversInOrderAndWakes(t *testing.T) {
	st := openStore(t)
	sink := &recordSink{seen: make(chan struct{}, 1)}
	reg := prometheus.NewRegistry()
	// A poll of an hour: only Wake can explain a prompt delivery.
	r, err := events.NewRelay(events.RelayConfig{Store: st, Owner: "a", Sinks: []events.Sink{sink}, Poll: time.Hour, Batch: 2, Registerer: reg})
	if err != nil {
		t.Fatalf("NewRelay err = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()

	var want []int64
	for i := range 5 {
		id, err := st.AppendOutbox(t.Context(), store.OutboxEvent{Type: events.Rotated, Secret: "s", Version: int64(i), CreatedAt: time.Now()})
		if err != nil {
			t.Fatalf("AppendOutbox err = %v", err)
		}
		want = append(want, id)
	}
	r.Wake()
	waitFor(t, "5 events delivered after Wake", func() bool { return len(sink.ids()) == 5 })
	if got := sink.ids(); !equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	waitFor(t, "backlog 0", func() bool { return gauge(t, reg, "rotary_outbox_backlog")() == 0 })
	if got := counter(t, reg)(); got != 5 {
		t.Errorf("rotary_outbox_delivered_total{sink=record} = %v, want 5", got)
	}
	cancel()
	<-done
}

func TestRelayFailingSinkKeepsEvents(t *testing.T) {
	st := openStore(t)
	sink := &recordSink{fail: true, seen: make(chan struct{}, 1)}
	r, err := events.NewRelay(events.RelayConfig{Store: st, Owner: "a", Sinks: []events.Sink{sink}, Poll: 10 * time.Millisecond,
		BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewRelay err = %v", err)
	}
	id, _ := st.AppendOutbox(t.Context(), store.OutboxEvent{Type: events.Rotated, Secret: "s", CreatedAt: time.Now()})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	<-sink.seen
	<-sink.seen // retried after a failure
	if n, _, _ := st.OutboxBacklog(t.Context()); n != 1 {
		t.Fatalf("backlog while the sink fails = %d, want 1 (the event waits)", n)
	}
	sink.mu.Lock()
	sink.fail = false
	sink.mu.Unlock()
	waitFor(t, "delivery after the sink came back", func() bool { return len(sink.ids()) == 1 })
	if got := sink.ids(); got[0] != id {
		t.Errorf("delivered %v, want [%d]", got, id)
	}
	waitFor(t, "marked delivered", func() bool { n, _, _ := st.OutboxBacklog(t.Context()); return n == 0 })
	cancel()
	<-done
}

// Two relays on one store: every event is delivered, each by one of them
// (none delivered twice without a crash), in order per secret.
func TestRelayTwoOwners(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotary.db")
	a, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sa, sb := &recordSink{seen: make(chan struct{}, 1)}, &recordSink{seen: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for _, x := range []struct {
		st   store.Store
		sink *recordSink
		name string
	}{{a, sa, "a"}, {b, sb, "b"}} {
		r, err := events.NewRelay(events.RelayConfig{Store: x.st, Owner: x.name, Sinks: []events.Sink{x.sink}, Poll: 5 * time.Millisecond, Batch: 3})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { r.Run(ctx) })
	}
	for i := range 60 {
		if _, err := a.AppendOutbox(t.Context(), store.OutboxEvent{Type: events.Rotated, Secret: string(rune('a' + i%3)), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "60 deliveries", func() bool { return len(sa.ids())+len(sb.ids()) >= 60 })
	cancel()
	wg.Wait()
	seen := map[int64]int{}
	for _, id := range append(sa.ids(), sb.ids()...) {
		seen[id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d delivered %d times, want once", id, n)
		}
	}
	if len(seen) != 60 {
		t.Errorf("delivered %d distinct events, want 60", len(seen))
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) func() float64 {
	t.Helper()
	return func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("metric %s not registered", name)
		return 0
	}
}

func counter(t *testing.T, reg *prometheus.Registry) func() float64 {
	t.Helper()
	return func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "rotary_outbox_delivered_total" {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == "record" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		t.Fatal("rotary_outbox_delivered_total{sink=record} not registered")
		return 0
	}
}
