package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// sseEvent is one server-sent event as the wire carries it.
type sseEvent struct {
	ID, Event, Data string
}

// decoded is the event JSON of an sseEvent.
type decoded struct {
	ID      int64    `json:"id"`
	Event   string   `json:"event"`
	Secret  string   `json:"secret"`
	Version int64    `json:"version"`
	Stages  []string `json:"stages"`
}

func (e sseEvent) json(t testing.TB) decoded {
	t.Helper()
	var d decoded
	if err := json.Unmarshal([]byte(e.Data), &d); err != nil {
		t.Fatalf("event data %q: %v", e.Data, err)
	}
	return d
}

// stream is an open GET /v1/events.
type stream struct {
	t       testing.TB
	events  chan sseEvent
	comment chan string
	// opened gets the id of the "open" event a stream that does not
	// resume starts with (where to resume from before any event).
	opened chan string
	done   chan struct{}
	cancel context.CancelFunc
}

// openStream opens GET /v1/events?query with token (and Last-Event-ID
// when lastID is not empty); it fails the test unless the answer is 200.
func openStream(t testing.TB, s *server, token, query, lastID string) *stream {
	t.Helper()
	st, status, body := tryStream(t, s, token, query, lastID)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/events?%s: %d %s", query, status, body)
	}
	return st
}

func tryStream(t testing.TB, s *server, token, query, lastID string) (*stream, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.addr+"/v1/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /v1/events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b[:n])
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	st := &stream{t: t, events: make(chan sseEvent, 1000), comment: make(chan string, 1000), opened: make(chan string, 1), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(st.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.Event == "open" {
					st.opened <- cur.ID
				} else if cur.Data != "" || cur.Event != "" {
					st.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				select {
				case st.comment <- strings.TrimSpace(line[1:]):
				default:
				}
			case strings.HasPrefix(line, "id: "):
				cur.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.Data = line[6:]
			}
		}
	}()
	t.Cleanup(cancel)
	return st, http.StatusOK, ""
}

// next returns the next event, failing after timeout.
func (st *stream) next(timeout time.Duration) sseEvent {
	st.t.Helper()
	select {
	case e := <-st.events:
		return e
	case <-st.done:
		st.t.Fatal("the event stream ended")
	case <-time.After(timeout):
		st.t.Fatalf("no event within %s", timeout)
	}
	return sseEvent{}
}

// until reads events until one of secret arrives, returning all read.
func (st *stream) until(secret string, timeout time.Duration) []sseEvent {
	st.t.Helper()
	var got []sseEvent
	deadline := time.Now().Add(timeout)
	for {
		e := st.next(time.Until(deadline))
		got = append(got, e)
		if e.json(st.t).Secret == secret {
			return got
		}
	}
}

func secretsOf(t testing.TB, evs []sseEvent) []string {
	var out []string
	for _, e := range evs {
		d := e.json(t)
		out = append(out, d.Event+":"+d.Secret)
	}
	return out
}

func TestEventStreamShowsOnlyWhatTheTokenMayDescribe(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	marker := uniq("marker/m")
	appTok := createToken(c, `{"rules":[{"secrets":"app/*","actions":["describe"]},{"secrets":"marker/*","actions":["describe"]}]}`)
	// May read values, list and rotate everything, but describe only the
	// marker: it must see the marker and nothing else.
	blind := createToken(c, `{"rules":[{"secrets":"*","actions":["list","read","rotate"]},{"secrets":"marker/*","actions":["describe"]}]}`)

	all := openStream(t, s, s.rootToken, "", "")
	app := openStream(t, s, appTok, "", "")
	nothing := openStream(t, s, blind, "", "")
	filtered := openStream(t, s, s.rootToken, "secrets=db/*,"+strings.Replace(marker, "marker/", "marker/", 1), "")

	const canary = "canary-sse-value-5d1e"
	a, d, o := uniq("app/a"), uniq("db/d"), uniq("other/o")
	c.ok("secret", "create", a, "--value", canary)
	c.ok("secret", "create", d, "--value", canary)
	c.ok("secret", "create", o, "--value", canary)
	c.ok("secret", "put", a, "--value", canary+"2")
	c.ok("secret", "create", marker, "--value", canary)

	got := all.until(marker, 30*time.Second)
	want := []string{"version_created:" + a, "version_created:" + d, "version_created:" + o, "version_created:" + a, "version_created:" + marker}
	if g := secretsOf(t, got); strings.Join(g, " ") != strings.Join(want, " ") {
		t.Fatalf("root saw %v, want %v", g, want)
	}
	var lastID int64
	for i, e := range got {
		id, err := strconv.ParseInt(e.ID, 10, 64)
		if err != nil || id <= lastID || e.json(t).ID != id || e.Event != "version_created" {
			t.Fatalf("event %d: id %q (json id %d), event %q, after %d", i, e.ID, e.json(t).ID, e.Event, lastID)
		}
		lastID = id
		if strings.Contains(e.Data, canary) {
			t.Fatalf("an event carries the value: %s", e.Data)
		}
	}
	if v := got[3].json(t); v.Version != 2 || strings.Join(v.Stages, ",") != "current" {
		t.Fatalf("the put's event = %+v, want version 2 current", v)
	}
	if g := secretsOf(t, app.until(marker, 30*time.Second)); strings.Join(g, " ") != strings.Join([]string{want[0], want[3], want[4]}, " ") {
		t.Fatalf("the app token saw %v", g)
	}
	if g := secretsOf(t, nothing.until(marker, 30*time.Second)); len(g) != 1 {
		t.Fatalf("a token that may describe only the marker saw %v", g)
	}
	if g := secretsOf(t, filtered.until(marker, 30*time.Second)); strings.Join(g, " ") != want[1]+" "+want[4] {
		t.Fatalf("?secrets=db/*,%s saw %v", marker, g)
	}
	// The log holds no value either.
	if strings.Contains(s.logs.String(), canary) {
		t.Fatal("the daemon log shows the value")
	}
}

func TestEventStreamResumesFromLastEventID(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		first := openStream(t, s, s.rootToken, "", "")
		names := []string{uniq("r/a"), uniq("r/b"), uniq("r/c")}
		for _, n := range names {
			c.ok("secret", "create", n, "--value", "v1")
		}
		seen := first.until(names[2], 30*time.Second)
		last := seen[len(seen)-1].ID
		first.cancel()
		<-first.done

		// While nobody listens: five more events.
		var later []string
		for i, n := range names {
			c.ok("secret", "put", n, "--value", "v2")
			later = append(later, "version_created:"+n)
			if i == 0 {
				c.ok("secret", "put", n, "--value", "v3")
				later = append(later, "version_created:"+n)
			}
		}
		d := uniq("r/d")
		c.ok("secret", "create", d, "--value", "v1")
		later = append(later, "version_created:"+d)

		resumed := openStream(t, s, s.rootToken, "", last)
		if g := secretsOf(t, resumed.until(d, 30*time.Second)); strings.Join(g, " ") != strings.Join(later, " ") {
			t.Fatalf("resumed after %s: %v, want %v", last, g, later)
		}
		// ?after= works as Last-Event-ID does.
		after := openStream(t, s, s.rootToken, "after="+last, "")
		if g := secretsOf(t, after.until(d, 30*time.Second)); len(g) != len(later) {
			t.Fatalf("?after=%s: %v", last, g)
		}
		// Live events keep coming after the catch-up, once each.
		e := uniq("r/e")
		c.ok("secret", "create", e, "--value", "v1")
		if g := secretsOf(t, resumed.until(e, 30*time.Second)); len(g) != 1 {
			t.Fatalf("after the catch-up: %v", g)
		}
		for _, bad := range []string{"abc", "-4"} {
			if _, status, body := tryStream(t, s, s.rootToken, "", bad); status != http.StatusBadRequest || !strings.Contains(body, "Last-Event-ID") {
				t.Fatalf("Last-Event-ID %q: %d %s", bad, status, body)
			}
		}
		if _, status, _ := tryStream(t, s, "not-a-token", "", ""); status != http.StatusUnauthorized {
			t.Fatalf("a bad token: %d", status)
		}
		if len(resumed.opened) != 0 {
			t.Fatal("a resumed stream got an open event")
		}

		// A stream that drops before its first event resumes from the
		// position its open event gave, and misses nothing made meanwhile.
		quiet := openStream(t, s, s.rootToken, "", "")
		var pos string
		select {
		case pos = <-quiet.opened:
		case <-time.After(30 * time.Second):
			t.Fatal("a new stream did not start with an open event")
		}
		quiet.cancel()
		<-quiet.done
		f := uniq("r/f")
		c.ok("secret", "create", f, "--value", "v1")
		if g := secretsOf(t, openStream(t, s, s.rootToken, "", pos).until(f, 30*time.Second)); strings.Join(g, " ") != "version_created:"+f {
			t.Fatalf("resumed from the open position %s: %v, want only the create of %s", pos, g, f)
		}
	})
}

// Two daemons on one PostgreSQL: an event written through one reaches a
// stream on the other; a revoked token's stream ends at the next
// heartbeat while the root stream goes on; shutdown with open streams is
// clean.
func TestEventStreamAcrossDaemonsAndRevocation(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	extra := "events:\n  poll: 100ms\n  heartbeat: 1s\n"
	a := startPGServer(t, fx, extra)
	b := startPGServer(t, fx, extra)
	tok := createToken(a.root(t), `{"rules":[{"secrets":"*","actions":["describe"]}]}`)
	onB := openStream(t, b, b.rootToken, "", "")
	limited := openStream(t, b, tok, "", "")
	n := uniq("x/a")
	a.root(t).ok("secret", "create", n, "--value", "v")
	if g := secretsOf(t, onB.until(n, 30*time.Second)); len(g) != 1 {
		t.Fatalf("daemon B's stream: %v", g)
	}
	limited.until(n, 30*time.Second)

	var id string
	for _, tk := range okJSON[client.TokenList](a.root(t), "token", "list", "-o", "json").Tokens {
		if !slices.Contains(tk.Policies, "root") {
			id = tk.ID
		}
	}
	if id == "" {
		t.Fatal("no id for the limited token")
	}
	a.root(t).ok("token", "revoke", id)
	waitFor(t, 30*time.Second, "the revoked token's stream to end", func() bool {
		select {
		case <-limited.done:
			return true
		default:
			return false
		}
	})
	var sawError bool
	for len(limited.events) > 0 {
		if e := <-limited.events; e.Event == "error" && strings.Contains(e.Data, "revoked") {
			sawError = true
		}
	}
	if !sawError {
		t.Fatal("the revoked token's stream ended without saying why")
	}
	// The root stream is alive: heartbeats go on.
	select {
	case <-onB.done:
		t.Fatal("the root stream ended too")
	default:
	}
	waitFor(t, 10*time.Second, "a heartbeat on the root stream", func() bool {
		select {
		case c := <-onB.comment:
			return c == "keepalive"
		default:
			return false
		}
	})
	start := time.Now()
	b.stop()
	if code := b.exitStatus(); code != 0 {
		t.Fatalf("daemon B exited %d with a stream open; logs:\n%s", code, b.logs.String())
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("shutdown with an open stream took %s", d)
	}
	<-onB.done
}
