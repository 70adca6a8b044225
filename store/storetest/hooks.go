package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// testOutboxSecretOrder: an event is never claimed while an earlier
// undelivered event of the same secret is leased by another owner.
func testOutboxSecretOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	var ids []int64
	for i, sec := range []string{"a", "b", "a", "a", "c"} {
		id, err := s.AppendOutbox(ctx, store.OutboxEvent{Type: "rotated", Secret: sec, Version: int64(i + 1), CreatedAt: base})
		noErr(t, "AppendOutbox", err)
		ids = append(ids, id)
	}
	claim := func(owner string, now time.Time, limit int) []int64 {
		t.Helper()
		es, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: owner, Now: now, LeaseFor: time.Minute, Limit: limit})
		noErr(t, "ClaimOutbox("+owner+")", err)
		var got []int64
		for _, e := range es {
			got = append(got, e.ID)
		}
		return got
	}
	check(t, "ClaimOutbox(A, 1)", claim("A", base, 1), ids[:1])
	// B may not take a's later events while A holds a's first one.
	check(t, "ClaimOutbox(B, 10) while A holds a#1", claim("B", base, 10), []int64{ids[1], ids[4]})
	// A claims again: its own lease is renewed with it (a retry), and
	// a's later events come in the same batch, after it.
	check(t, "ClaimOutbox(A, 10) again", claim("A", base, 10), []int64{ids[0], ids[2], ids[3]})
	noErr(t, "MarkDelivered(a#1)", s.MarkDelivered(ctx, ids[:1], at(time.Second)))
	// Negative control: once A's lease on a#2.. expires, another owner
	// takes them, in order.
	check(t, "ClaimOutbox(C, +2m)", claim("C", at(2*time.Minute), 10), []int64{ids[1], ids[2], ids[3], ids[4]})

	n, oldest, err := s.OutboxBacklog(ctx)
	noErr(t, "OutboxBacklog", err)
	if n != 4 || !oldest.Equal(base.Truncate(Precision)) {
		t.Errorf("OutboxBacklog = %d, %v, want 4, %v", n, oldest, base)
	}
	noErr(t, "MarkDelivered(rest)", s.MarkDelivered(ctx, ids[1:], at(3*time.Minute)))
	n, oldest, err = s.OutboxBacklog(ctx)
	if err != nil || n != 0 || !oldest.IsZero() {
		t.Errorf("OutboxBacklog when all delivered = %d, %v, %v, want 0, zero, nil", n, oldest, err)
	}
}

// testOutboxClaimPastALeasedHead: when another owner leases more of the
// oldest events than a claim looks at first, the claim still finds the
// free ones after them (a store may look at the backlog in windows), and
// a small claim of a large backlog returns the oldest free events.
func testOutboxClaimPastALeasedHead(t *testing.T, s store.Store) {
	ctx := t.Context()
	var ids []int64
	for i := range 300 {
		id, err := s.AppendOutbox(ctx, store.OutboxEvent{Type: "rotated", Secret: fmt.Sprintf("head-%d", i), Version: 1, CreatedAt: base})
		noErr(t, "AppendOutbox", err)
		ids = append(ids, id)
	}
	claim := func(owner string, limit int) []int64 {
		t.Helper()
		es, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: owner, Now: base, LeaseFor: time.Minute, Limit: limit})
		noErr(t, "ClaimOutbox("+owner+")", err)
		var got []int64
		for _, e := range es {
			got = append(got, e.ID)
		}
		return got
	}
	check(t, "ClaimOutbox(A, 250)", claim("A", 250), ids[:250])
	check(t, "ClaimOutbox(B, 3) past A's 250", claim("B", 3), ids[250:253])
	check(t, "ClaimOutbox(B, 100) takes the rest", claim("B", 100), ids[250:])
	check(t, "ClaimOutbox(C, 10) with all leased", claim("C", 10), []int64(nil))
	noErr(t, "MarkDelivered", s.MarkDelivered(ctx, ids, at(time.Second)))
}

// testOutboxSecretOrderConcurrent: owners on two stores claim events of
// a few secrets at once; each secret's events are delivered in order.
func testOutboxSecretOrderConcurrent(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const total, secretsN, workers, batch = 120, 4, 6, 5
	noErr(t, "seed", a.InTx(ctx, func(tx store.Ops) error {
		for i := range total {
			if _, err := tx.AppendOutbox(ctx, store.OutboxEvent{Type: "e", Secret: fmt.Sprint("s", i%secretsN), CreatedAt: base}); err != nil {
				return err
			}
		}
		return nil
	}))
	var (
		mu    sync.Mutex
		order = map[string][]int64{}
		wg    sync.WaitGroup
	)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for idle := 0; idle < 50; {
				es, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: fmt.Sprint("w", w), Now: base, LeaseFor: time.Hour, Limit: batch})
				if err != nil {
					t.Errorf("worker %d: ClaimOutbox err = %v", w, err)
					return
				}
				if len(es) == 0 {
					n, _, err := s.OutboxBacklog(ctx)
					if err != nil || n == 0 {
						return
					}
					idle++ // the rest is another worker's; wait for it
					time.Sleep(2 * time.Millisecond)
					continue
				}
				ids := make([]int64, 0, len(es))
				mu.Lock()
				for _, e := range es {
					order[e.Secret] = append(order[e.Secret], e.ID)
					ids = append(ids, e.ID)
				}
				mu.Unlock()
				if err := s.MarkDelivered(ctx, ids, base); err != nil {
					t.Errorf("worker %d: MarkDelivered err = %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for sec, ids := range order {
		n += len(ids)
		if !slices.IsSorted(ids) {
			t.Errorf("secret %s delivered in order %v, want ascending", sec, ids)
		}
		if len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("secret %s: an event was claimed twice: %v", sec, ids)
		}
	}
	if n != total {
		t.Errorf("delivered %d events, want %d", n, total)
	}
}

func testHookDeliveries(t *testing.T, s store.Store) {
	ctx := t.Context()
	h1 := store.Hook{Name: "h1", On: "all", Kind: "webhook", Target: "http://127.0.0.1:1/x", Timeout: 5 * time.Second,
		SealedSecret: []byte{1, 2, 3}, CreatedAt: base}
	h2 := store.Hook{Name: "h2", On: "finished", Kind: "exec", Target: "/bin/true", Shell: true, CreatedAt: base}
	noErr(t, "PutHook(h1)", s.PutHook(ctx, h1))
	noErr(t, "PutHook(h2)", s.PutHook(ctx, h2))
	got, err := s.GetHook(ctx, "h1")
	noErr(t, "GetHook(h1)", err)
	check(t, "GetHook(h1)", got, h1)
	_, err = s.GetHook(ctx, "nope")
	wantErr(t, "GetHook(nope)", err, store.ErrNotFound)

	d := func(hook string, ev int64, secret string) store.HookDelivery {
		return store.HookDelivery{Hook: hook, EventID: ev, Secret: secret, Payload: fmt.Appendf(nil, `{"id":%d}`, ev),
			EventAt: base, NextAttemptAt: base, CreatedAt: base, UpdatedAt: base}
	}
	noErr(t, "AddHookDeliveries", s.AddHookDeliveries(ctx, []store.HookDelivery{
		d("h1", 1, "a"), d("h1", 2, "a"), d("h1", 3, "b"), d("h2", 1, "a"),
	}))
	// Offered again (the relay redelivers after a crash): no change, no error.
	noErr(t, "AddHookDeliveries again", s.AddHookDeliveries(ctx, []store.HookDelivery{d("h1", 1, "a")}))

	type key struct {
		hook string
		ev   int64
	}
	claim := func(owner string, now time.Time) []key {
		t.Helper()
		ds, err := s.ClaimHookDeliveries(ctx, store.ClaimParams{Owner: owner, Now: now, LeaseFor: time.Minute, Limit: 10})
		noErr(t, "ClaimHookDeliveries("+owner+")", err)
		var out []key
		for _, x := range ds {
			out = append(out, key{x.Hook, x.EventID})
			if x.LeaseOwner != owner || x.State != store.DeliveryPending || len(x.Payload) == 0 {
				t.Errorf("claimed %s/%d: owner %q state %q payload %q", x.Hook, x.EventID, x.LeaseOwner, x.State, x.Payload)
			}
		}
		return out
	}
	// h1/2 waits for h1/1 (same hook and secret); h2/1 and h1/3 do not.
	check(t, "Claim(A)", claim("A", base), []key{{"h1", 1}, {"h2", 1}, {"h1", 3}})
	check(t, "Claim(B) while A holds them", claim("B", base), nil)

	finish := func(owner string, k key, state string, next time.Time, msg string) error {
		return s.FinishHookDelivery(ctx, store.HookDeliveryResult{Hook: k.hook, EventID: k.ev, Owner: owner,
			State: state, NextAttemptAt: next, Error: msg, At: at(time.Second)})
	}
	noErr(t, "Finish(h1/1, done)", finish("A", key{"h1", 1}, store.DeliveryDone, base, ""))
	wantErr(t, "Finish(h1/3) by B", finish("B", key{"h1", 3}, store.DeliveryDone, base, ""), store.ErrLeaseLost)
	wantErr(t, "Finish(h1/1) twice", finish("A", key{"h1", 1}, store.DeliveryDone, base, ""), store.ErrLeaseLost)
	check(t, "Claim(B) after h1/1 done", claim("B", base), []key{{"h1", 2}})

	// A retry waits until its next attempt, and blocks nothing else.
	noErr(t, "Finish(h2/1, retry)", finish("A", key{"h2", 1}, store.DeliveryPending, at(time.Minute), "exit status 1"))
	check(t, "Claim(C) before the retry is due", claim("C", at(30*time.Second)), nil)
	// At +1m the retry is due, and A's and B's leases have expired: C
	// takes all three over.
	ds, err := s.ClaimHookDeliveries(ctx, store.ClaimParams{Owner: "C", Now: at(time.Minute), LeaseFor: time.Minute, Limit: 10})
	noErr(t, "Claim(C) when due", err)
	if len(ds) != 3 || ds[0].Hook != "h2" || ds[0].Attempts != 2 || ds[0].LastError != "exit status 1" {
		t.Fatalf("Claim(C) when due = %+v, want h2/1 with attempts 2 and its last error, h1/2, h1/3", ds)
	}
	wantErr(t, "Finish(h1/3) by A after takeover", finish("A", key{"h1", 3}, store.DeliveryDone, base, ""), store.ErrLeaseLost)

	// A restarted owner releases what its predecessor held: C's three
	// are claimable again at once; nothing of another owner's is touched.
	n, err := s.ReleaseHookDeliveries(ctx, "C")
	if err != nil || n != 3 {
		t.Fatalf("ReleaseHookDeliveries(C) = %d, %v, want 3, nil", n, err)
	}
	if n, err := s.ReleaseHookDeliveries(ctx, "nobody"); err != nil || n != 0 {
		t.Errorf("ReleaseHookDeliveries(nobody) = %d, %v, want 0, nil", n, err)
	}
	ds, err = s.ClaimHookDeliveries(ctx, store.ClaimParams{Owner: "C", Now: at(time.Minute), LeaseFor: time.Minute, Limit: 10})
	if err != nil || len(ds) != 3 {
		t.Fatalf("Claim(C) after release = %d deliveries, %v, want 3", len(ds), err)
	}

	// Given up: the hook is failing until the next success.
	noErr(t, "Finish(h2/1, failed)", finish("C", key{"h2", 1}, store.DeliveryFailed, base, "gave up"))
	h, err := s.GetHook(ctx, "h2")
	noErr(t, "GetHook(h2)", err)
	if !h.Failing || h.Failures != 2 || h.LastError != "gave up" || h.Delivered != 0 {
		t.Errorf("h2 after give-up: failing %v failures %d last error %q delivered %d, want true 2 \"gave up\" 0",
			h.Failing, h.Failures, h.LastError, h.Delivered)
	}
	noErr(t, "AddHookDeliveries(h2/4)", s.AddHookDeliveries(ctx, []store.HookDelivery{d("h2", 4, "a")}))
	check(t, "Claim(E) h2/4", claim("E", at(70*time.Second)), []key{{"h2", 4}})
	noErr(t, "Finish(h2/4, done)", finish("E", key{"h2", 4}, store.DeliveryDone, base, ""))
	h, _ = s.GetHook(ctx, "h2")
	if h.Failing || h.Delivered != 1 || h.LastDeliveryAt == nil {
		t.Errorf("h2 after a success: failing %v delivered %d last %v, want false 1 set", h.Failing, h.Delivered, h.LastDeliveryAt)
	}

	// Backlog cap: the oldest pending ones go, never a leased one.
	var many []store.HookDelivery
	for ev := int64(10); ev < 20; ev++ {
		many = append(many, d("h1", ev, "c"))
	}
	noErr(t, "AddHookDeliveries(10)", s.AddHookDeliveries(ctx, many))
	hooks, err := s.ListHooks(ctx)
	noErr(t, "ListHooks", err)
	if len(hooks) != 2 || hooks[0].Name != "h1" || hooks[0].Backlog != 12 { // h1/2, h1/3 leased + 10
		t.Fatalf("ListHooks backlog = %+v, want h1 with 12 pending", hooks)
	}
	n, err = s.CapHookBacklog(ctx, "h1", 5, at(90*time.Second))
	noErr(t, "CapHookBacklog(h1, 5)", err)
	if n != 7 {
		t.Errorf("CapHookBacklog(h1, 5) dropped %d, want 7", n)
	}
	h, _ = s.GetHook(ctx, "h1")
	if h.Backlog != 5 || h.Dropped != 7 {
		t.Errorf("h1 after cap: backlog %d dropped %d, want 5, 7", h.Backlog, h.Dropped)
	}
	n, err = s.CapHookBacklog(ctx, "h1", 5, at(90*time.Second))
	if err != nil || n != 0 {
		t.Errorf("CapHookBacklog again = %d, %v, want 0, nil", n, err)
	}

	n, err = s.TrimHookDeliveries(ctx, at(time.Hour))
	noErr(t, "TrimHookDeliveries", err)
	if n != 10 { // h1/1, h2/1, h2/4 ended + 7 dropped
		t.Errorf("TrimHookDeliveries = %d, want 10", n)
	}
	noErr(t, "DeleteHook(h1)", s.DeleteHook(ctx, "h1"))
	noErr(t, "PutHook(h1) again", s.PutHook(ctx, h1))
	h, _ = s.GetHook(ctx, "h1")
	if h.Backlog != 0 || h.Delivered != 0 {
		t.Errorf("h1 re-added: backlog %d delivered %d, want 0 0 (its deliveries went with it)", h.Backlog, h.Delivered)
	}
}

// testHookDeliveriesConcurrent: workers on two stores claim deliveries of
// a few (hook, secret) queues at once; each is delivered once, in order.
func testHookDeliveriesConcurrent(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const total, workers = 90, 6
	var ds []store.HookDelivery
	for ev := int64(1); ev <= total; ev++ {
		ds = append(ds, store.HookDelivery{Hook: fmt.Sprint("h", ev%2), EventID: ev, Secret: fmt.Sprint("s", ev%3),
			EventAt: base, NextAttemptAt: base, CreatedAt: base, UpdatedAt: base})
	}
	noErr(t, "AddHookDeliveries", a.AddHookDeliveries(ctx, ds))
	var (
		mu    sync.Mutex
		order = map[string][]int64{}
		wg    sync.WaitGroup
	)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for idle := 0; idle < 200; {
				got, err := s.ClaimHookDeliveries(ctx, store.ClaimParams{Owner: fmt.Sprint("w", w), Now: base, LeaseFor: time.Hour, Limit: 3})
				if err != nil {
					t.Errorf("worker %d: ClaimHookDeliveries err = %v", w, err)
					return
				}
				if len(got) == 0 {
					idle++
					mu.Lock()
					n := 0
					for _, ids := range order {
						n += len(ids)
					}
					mu.Unlock()
					if n == total {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				for _, x := range got {
					mu.Lock()
					q := x.Hook + "/" + x.Secret
					order[q] = append(order[q], x.EventID)
					mu.Unlock()
					if err := s.FinishHookDelivery(ctx, store.HookDeliveryResult{Hook: x.Hook, EventID: x.EventID,
						Owner: x.LeaseOwner, State: store.DeliveryDone, At: base}); err != nil {
						t.Errorf("worker %d: FinishHookDelivery err = %v", w, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for q, ids := range order {
		n += len(ids)
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("queue %s delivered %v, want ascending, each once", q, ids)
		}
	}
	if n != total {
		t.Errorf("delivered %d, want %d", n, total)
	}
}
