package api

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// outboxOnly is a store whose outbox rows become visible in the order the
// test chooses, as on PostgreSQL where a transaction that took an id
// earlier may commit later.
type outboxOnly struct {
	store.Store
	mu      sync.Mutex
	visible map[int64]store.OutboxEvent
}

func (o *outboxOnly) show(ids ...int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		o.visible[id] = store.OutboxEvent{ID: id, Type: "rotated", Secret: "s"}
	}
}

func (o *outboxOnly) ListOutboxAfter(_ context.Context, after int64, limit int) ([]store.OutboxEvent, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []store.OutboxEvent
	for id, e := range o.visible {
		if id > after {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func TestHubHandsOutAnIDThatBecomesVisibleLate(t *testing.T) {
	st := &outboxOnly{visible: map[int64]store.OutboxEvent{}}
	st.show(1, 2) // written before the hub started: not handed out
	now := time.Unix(1000, 0)
	h := newEventHub(st, time.Hour, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	if err := h.skipToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	close(h.ready)
	sub, pos, err := h.subscribe(ctx)
	if err != nil || pos != 2 {
		t.Fatalf("subscribe at %d, %v; want position 2 (the newest id)", pos, err)
	}
	got := func() []int64 {
		var ids []int64
		for len(sub.ch) > 0 {
			ids = append(ids, (<-sub.ch).ID)
		}
		return ids
	}
	step := func() {
		t.Helper()
		if err := h.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st.show(3, 5, 7) // 4 and 6 are still in flight
	step()
	if ids := got(); len(ids) != 3 || ids[0] != 3 || ids[1] != 5 || ids[2] != 7 {
		t.Fatalf("first step handed out %v, want [3 5 7]", ids)
	}
	// A subscriber that comes while 4 and 6 are awaited starts below
	// them: resuming from its position cannot skip them.
	late, pos, err := h.subscribe(ctx)
	if err != nil || pos != 3 {
		t.Fatalf("subscribe with ids 4 and 6 awaited at %d, %v; want position 3", pos, err)
	}
	h.unsubscribe(late)
	st.show(6)
	step()
	if ids := got(); len(ids) != 1 || ids[0] != 6 {
		t.Fatalf("a late id: %v, want [6]", ids)
	}
	step() // nothing new: nothing handed out twice
	if ids := got(); len(ids) != 0 {
		t.Fatalf("handed out again: %v", ids)
	}
	// 4 never comes (its transaction rolled back): after gapWait the hub
	// forgets it.
	now = now.Add(gapWait + time.Second)
	st.show(8)
	step()
	if ids := got(); len(ids) != 1 || ids[0] != 8 {
		t.Fatalf("after the gap expired: %v, want [8]", ids)
	}
	h.mu.Lock()
	gaps := len(h.gaps)
	h.mu.Unlock()
	if gaps != 0 {
		t.Fatalf("%d gaps still watched", gaps)
	}
}

func TestHubDropsASubscriberThatFallsBehind(t *testing.T) {
	st := &outboxOnly{visible: map[int64]store.OutboxEvent{}}
	h := newEventHub(st, time.Hour, time.Now, slog.New(slog.DiscardHandler))
	close(h.ready)
	sub, _, _ := h.subscribe(context.Background())
	for i := int64(1); i <= subscriberBuffer+1; i++ {
		st.show(i)
	}
	if err := h.step(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range sub.ch { // closed once full: the client resumes from its last id
		n++
	}
	if n != subscriberBuffer || h.count() != 0 {
		t.Fatalf("got %d events, %d subscribers left; want %d and 0", n, h.count(), subscriberBuffer)
	}
}
