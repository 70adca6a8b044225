package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

func newCacheClient(t *testing.T, s *server, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.addr, append([]client.Option{client.WithToken(s.rootToken)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readsOf counts the audited value reads of a secret.
func readsOf(t *testing.T, c cli, name string) int {
	t.Helper()
	n := 0
	for _, r := range okJSON[client.AuditList](c, "audit", "list", "--secret", name, "-o", "json").Records {
		if r.Action == "secret.read" {
			n++
		}
	}
	return n
}

// The cache answers from memory, fetches once for many callers, and a
// rotation reaches it (and its watchers) through GET /v1/events at once.
func TestClientCacheFollowsRotations(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("cli/db")
	c.ok("secret", "create", name, "--value", `{"username":"app","password":"first"}`)
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")

	cc := newCacheClient(t, s)
	// Once the event stream is live, a read cannot miss an event, so the
	// cache need not read again what the Gets below fetch.
	if err := cc.WaitConnected(bg(t)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			cur, err := cc.Get(bg(t), name)
			if err != nil || cur.Version != 1 || !strings.Contains(string(cur.Value), "first") {
				t.Errorf("Get = %d %v", cur.Version, err)
			}
		})
	}
	wg.Wait()
	if n := readsOf(t, c, name); n != 1 {
		t.Fatalf("40 concurrent Gets read the value %d times, want once", n)
	}
	if u, err := cc.Field(bg(t), name, "username"); err != nil || u != "app" {
		t.Fatalf("Field(username) = %q, %v", u, err)
	}
	if _, err := cc.Field(bg(t), name, "nope"); err == nil || strings.Contains(err.Error(), "first") {
		t.Fatalf("Field(nope) = %v", err)
	}
	if err := cc.WaitConnected(bg(t)); err != nil {
		t.Fatal(err)
	}
	got := make(chan client.Event, 10)
	stop, err := cc.Watch("cli/*", func(e client.Event) { got <- e })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c.ok("rotate", name, "--wait")
	// The rotation's events: its pending version, then the rotation.
	var evs []string
	for ev := (client.Event{}); ev.Event != "rotated"; {
		select {
		case ev = <-got:
			evs = append(evs, ev.Event+":"+strings.Join(ev.Stages, ","))
			if ev.Secret != name || ev.Version != 2 {
				t.Fatalf("event %+v", ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no rotated event reached the watcher; got %v", evs)
		}
	}
	if strings.Join(evs, " ") != "version_created:pending rotated:current" {
		t.Fatalf("the watcher saw %v", evs)
	}
	// By the time the watcher runs, the cache holds the new version: no
	// further read is needed.
	before := readsOf(t, c, name)
	cur, err := cc.Get(bg(t), name)
	if err != nil || cur.Version != 2 || strings.Contains(string(cur.Value), "first") {
		t.Fatalf("after the rotation Get = %d, %v", cur.Version, err)
	}
	if after := readsOf(t, c, name); after != before {
		t.Fatalf("Get after the event read the value again (%d → %d reads)", before, after)
	}
	// The daemon goes away: the cache answers what it has.
	s.stop()
	if cur, err := cc.Get(bg(t), name); err != nil || cur.Version != 2 {
		t.Fatalf("with the daemon down Get = %d, %v; want the cached version 2", cur.Version, err)
	}
	cc.Close()
	if _, err := cc.Get(bg(t), name); err == nil {
		t.Fatal("Get after Close worked")
	}
}

// A client whose daemon was down while a rotation happened on another
// daemon catches up from its last event id when its daemon returns.
func TestClientCatchesUpAfterReconnect(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	extra := "events:\n  poll: 100ms\n"
	a := startPGServer(t, fx, extra)
	b := startPGServer(t, fx, extra)
	name := uniq("cu/pw")
	a.root(t).ok("secret", "create", name, "--value", "v1")
	a.root(t).ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
	other := uniq("cu/other")
	a.root(t).ok("secret", "create", other, "--value", "o1")

	cc := newCacheClient(t, a, client.WithPollInterval(0)) // no poll: events only
	if _, err := cc.Get(bg(t), name); err != nil {
		t.Fatal(err)
	}
	if err := cc.WaitConnected(bg(t)); err != nil {
		t.Fatal(err)
	}
	seen := make(chan client.Event, 10)
	stop, _ := cc.Watch(other, func(e client.Event) { seen <- e })
	defer stop()
	a.root(t).ok("secret", "put", other, "--value", "o2") // the client has seen an event id
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("no first event")
	}

	a.stop()
	b.root(t).ok("rotate", name, "--wait")
	a.start()
	waitFor(t, 60*time.Second, "the client to catch up with the rotation made while its daemon was down", func() bool {
		cur, err := cc.Get(bg(t), name)
		return err == nil && cur.Version == 2
	})
}

// Refresh reads one secret now, even with no event source: the cache then
// answers the new version, and no other cached secret is read again.
func TestClientRefreshOne(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	a, b := uniq("ref/a"), uniq("ref/b")
	c.ok("secret", "create", a, "--value", "a1")
	c.ok("secret", "create", b, "--value", "b1")
	cc := newCacheClient(t, s, client.WithoutEvents(), client.WithPollInterval(0))
	for _, n := range []string{a, b} {
		if _, err := cc.Get(bg(t), n); err != nil {
			t.Fatal(err)
		}
	}
	c.ok("secret", "put", a, "--value", "a2")
	if cur, _ := cc.Get(bg(t), a); cur.Version != 1 {
		t.Fatalf("without events the cache answered version %d (control: want the cached 1)", cur.Version)
	}
	readsB := readsOf(t, c, b)
	cur, err := cc.Refresh(bg(t), a)
	if err != nil || cur.Version != 2 || string(cur.Value) != "a2" {
		t.Fatalf("Refresh = version %d, %v; want 2", cur.Version, err)
	}
	if cur, _ := cc.Get(bg(t), a); cur.Version != 2 {
		t.Fatalf("Get after Refresh = version %d, want 2", cur.Version)
	}
	if n := readsOf(t, c, b); n != readsB {
		t.Fatalf("Refresh of %s read %s too (%d reads, was %d)", a, b, n, readsB)
	}
	if _, err := cc.Refresh(bg(t), uniq("ref/missing")); client.StatusOf(err) != 404 {
		t.Fatalf("Refresh of a missing secret: %v, want a 404", err)
	}
}
