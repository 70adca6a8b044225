package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// GET /v1/events streams the outbox as server-sent events: one event per
// outbox row, "id:" its outbox id, "event:" its type and "data:" the
// contract's event JSON with the id added. A client resumes with the
// Last-Event-ID header (or ?after=ID); when events after that id have been
// trimmed it gets a "reset" event first and should re-read what it caches.
// A stream that does not resume starts with an "open" event whose id (and
// data {"after":ID}) is the position to resume from if it drops before
// its first event.
// ?secrets=GLOB[,GLOB] filters by secret name. A token sees only events of
// secrets it may describe, and the stream ends when the token stops being
// valid (checked at every heartbeat).

// Defaults of the event stream.
const (
	DefaultEventsPoll      = time.Second
	DefaultEventsHeartbeat = 15 * time.Second
	// subscriberBuffer events may wait for a slow client; beyond that its
	// stream is closed and it resumes from its last id.
	subscriberBuffer = 1024
	// gapWait is how long an id the store skipped is waited for: on
	// PostgreSQL a transaction that took an id earlier may commit later.
	gapWait = 10 * time.Second
	maxGaps = 10_000
	hubPage = 1000
)

func (s *Server) eventRoutes() {
	s.handle("GET /v1/events", s.streamEvents)
}

// EventsWritten tells the stream that this daemon just wrote an event, so
// that subscribers get it now rather than at the next poll.
func (s *Server) EventsWritten() { s.hub.wakeUp() }

// eventHub reads new outbox rows (woken by EventsWritten, or every poll
// for events other daemons wrote) and hands them to every subscriber.
type eventHub struct {
	st   store.Store
	poll time.Duration
	log  *slog.Logger
	now  func() time.Time
	wake chan struct{}

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	cursor int64               // the highest id handed out
	gaps   map[int64]time.Time // ids below cursor not seen yet, since when
	ready  chan struct{}       // closed once cursor is the store's newest id
}

type subscriber struct {
	ch     chan store.OutboxEvent
	closed bool // the hub dropped it: it fell too far behind
}

func newEventHub(st store.Store, poll time.Duration, now func() time.Time, log *slog.Logger) *eventHub {
	return &eventHub{
		st: st, poll: poll, now: now, log: log, wake: make(chan struct{}, 1),
		subs: map[*subscriber]struct{}{}, gaps: map[int64]time.Time{}, ready: make(chan struct{}),
	}
}

func (h *eventHub) wakeUp() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run polls until ctx ends.
func (h *eventHub) run(ctx context.Context) {
	// Start at the newest event: subscribers catch up from the store.
	for {
		err := h.skipToEnd(ctx)
		if err == nil {
			break
		}
		h.log.Warn("events: reading the outbox failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.poll):
		}
	}
	close(h.ready)
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			for sub := range h.subs {
				h.drop(sub)
			}
			h.mu.Unlock()
			return
		case <-t.C:
		case <-h.wake:
		}
		if err := h.step(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("events: reading the outbox failed", "err", err)
		}
	}
}

func (h *eventHub) skipToEnd(ctx context.Context) error {
	var last int64
	for {
		evs, err := h.st.ListOutboxAfter(ctx, last, 5000)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			break
		}
		last = evs[len(evs)-1].ID
	}
	h.mu.Lock()
	h.cursor = last
	h.mu.Unlock()
	return nil
}

// step reads what is new (and what filled a gap) and hands it out.
func (h *eventHub) step(ctx context.Context) error {
	h.mu.Lock()
	from := h.cursor
	now := h.now()
	for id, since := range h.gaps {
		if now.Sub(since) > gapWait {
			delete(h.gaps, id) // a rolled-back id: it never comes
		} else if id-1 < from {
			from = id - 1
		}
	}
	h.mu.Unlock()
	for {
		evs, err := h.st.ListOutboxAfter(ctx, from, hubPage)
		if err != nil {
			return err
		}
		h.mu.Lock()
		for _, e := range evs {
			if e.ID <= h.cursor {
				if _, ok := h.gaps[e.ID]; !ok {
					continue // handed out already
				}
				delete(h.gaps, e.ID)
			} else {
				for id := h.cursor + 1; id < e.ID && len(h.gaps) < maxGaps; id++ {
					h.gaps[id] = now
				}
				h.cursor = e.ID
			}
			e.Payload = withID(e) // once, not once per subscriber
			h.publish(e)
		}
		h.mu.Unlock()
		if len(evs) < hubPage {
			return nil
		}
		from = evs[len(evs)-1].ID
	}
}

// publish hands e to every subscriber; h.mu is held.
func (h *eventHub) publish(e store.OutboxEvent) {
	for sub := range h.subs {
		select {
		case sub.ch <- e:
		default:
			h.drop(sub)
		}
	}
}

// drop ends sub's live feed; h.mu is held.
func (h *eventHub) drop(sub *subscriber) {
	delete(h.subs, sub)
	if !sub.closed {
		sub.closed = true
		close(sub.ch)
	}
}

// subscribe adds a subscriber. It also returns the position it starts
// at: every event up to that id was handed out before it subscribed (an
// id still awaited in a gap lowers it), so a client that resumes from it
// misses nothing.
func (h *eventHub) subscribe(ctx context.Context) (*subscriber, int64, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	sub := &subscriber{ch: make(chan store.OutboxEvent, subscriberBuffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[sub] = struct{}{}
	pos := h.cursor
	for id := range h.gaps {
		pos = min(pos, id-1)
	}
	return sub, pos, nil
}

func (h *eventHub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	h.drop(sub)
	h.mu.Unlock()
}

func (h *eventHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// eventFilter selects the events a stream shows.
type eventFilter struct {
	globs []string
}

func parseEventFilter(r *http.Request) (eventFilter, error) {
	var f eventFilter
	for _, v := range r.URL.Query()["secrets"] {
		for _, g := range strings.Split(v, ",") {
			g = strings.TrimSpace(g)
			if g == "" {
				continue
			}
			if len(g) > 512 || strings.ContainsAny(g, "\x00\r\n") {
				return f, badRequest("secrets: %q is not a valid glob", truncate(g, 80))
			}
			f.globs = append(f.globs, g)
		}
	}
	return f, nil
}

func (f eventFilter) match(secret string) bool {
	if len(f.globs) == 0 {
		return true
	}
	for _, g := range f.globs {
		if auth.Match(g, secret) {
			return true
		}
	}
	return false
}

// lastEventID reads where a client resumes: Last-Event-ID or ?after=.
func lastEventID(r *http.Request) (int64, bool, error) {
	v := r.Header.Get("Last-Event-ID")
	field := "Last-Event-ID"
	if v == "" {
		v, field = r.URL.Query().Get("after"), "after"
	}
	if v == "" {
		return 0, false, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 0 {
		return 0, false, badRequest("%s: %q is not an event id", field, truncate(v, 40))
	}
	return id, true, nil
}

func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	ri := info(r)
	ri.action, ri.target = "events.stream", "*"
	f, err := parseEventFilter(r)
	if err != nil {
		return err
	}
	after, resume, err := lastEventID(r)
	if err != nil {
		return err
	}
	if len(f.globs) > 0 {
		ri.target = strings.Join(f.globs, ",")
	}
	ctx := r.Context()
	sub, pos, err := s.hub.subscribe(ctx)
	if err != nil {
		return err
	}
	defer s.hub.unsubscribe(sub)
	// Record the request before streaming: the stream is the answer.
	if err := s.audit.Append(ctx, store.AuditRecord{
		Time: s.now().UTC(), TokenID: ri.tokenID, Action: ri.action, Target: ri.target,
		Result: "started", RequestID: ri.id,
	}); err != nil {
		return err
	}
	ri.audited = true
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	out := w.(*bufferedWriter).beginStream(http.StatusOK)
	// The server's write timeout bounds ordinary answers; a stream lives
	// as long as the client and its token do. Each write gets its own.
	rc := http.NewResponseController(out)
	flusher, _ := out.(http.Flusher)
	flush := func() {
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.EventsHeartbeat + time.Minute))
		if flusher != nil {
			flusher.Flush()
		}
	}
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.EventsHeartbeat + time.Minute))
	if _, err := fmt.Fprintf(out, "retry: 2000\n: rotary events\n\n"); err != nil {
		return nil
	}
	if !resume {
		// Where this stream starts, so that a client whose connection
		// drops before its first event resumes from here, not from "now"
		// again (which would skip what happened in between).
		if _, err := fmt.Fprintf(out, "id: %d\nevent: open\ndata: {\"after\":%d}\n\n", pos, pos); err != nil {
			return nil
		}
	}
	flush()

	sent := map[int64]bool{} // ids sent while catching up, which the live feed may repeat
	// emit sends e, whose Payload is already the wire JSON (withID).
	emit := func(e store.OutboxEvent) error {
		if sent[e.ID] || !f.match(e.Secret) || !p.allowed(auth.KindSecret, e.Secret, auth.ActionDescribe) {
			return nil
		}
		if _, err := fmt.Fprintf(out, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, e.Payload); err != nil {
			return err
		}
		return nil
	}
	if resume {
		if err := s.catchUp(ctx, after, out, emit, sent); err != nil {
			return nil // the client went away, or the store failed: it resumes
		}
		flush()
	}
	heartbeat := time.NewTicker(s.cfg.EventsHeartbeat)
	defer heartbeat.Stop()
	bearer := r.Header.Get("Authorization")
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.ch:
			if !ok {
				return nil // too slow, or shutting down: the client resumes
			}
			if err := emit(e); err != nil {
				return nil
			}
			delete(sent, e.ID)
			// Send what else is queued, then flush once.
			for n := len(sub.ch); n > 0; n-- {
				if err := emit(<-sub.ch); err != nil {
					return nil
				}
			}
			flush()
		case <-heartbeat.C:
			np, err := s.authn.authenticate(ctx, bearer)
			if err != nil {
				fmt.Fprintf(out, "event: error\ndata: %s\n\n", mustJSON(map[string]string{"error": "token no longer valid: " + err.Error()}))
				flush()
				return nil
			}
			p = np // policies changed meanwhile apply from now on
			if _, err := fmt.Fprintf(out, ": keepalive\n\n"); err != nil {
				return nil
			}
			flush()
		}
	}
}

// catchUp sends the stored events after id, and a reset event first when
// some of them have been trimmed away.
func (s *Server) catchUp(ctx context.Context, after int64, out http.ResponseWriter, emit func(store.OutboxEvent) error, sent map[int64]bool) error {
	first, err := s.st.ListOutboxAfter(ctx, 0, 1)
	if err != nil {
		return err
	}
	if len(first) == 1 && first[0].ID > after+1 && after > 0 {
		if _, err := fmt.Fprintf(out, "event: reset\ndata: %s\n\n", mustJSON(map[string]any{
			"reason": "events after the given id were trimmed; re-read what you cache", "oldest": first[0].ID,
		})); err != nil {
			return err
		}
	}
	for {
		evs, err := s.st.ListOutboxAfter(ctx, after, hubPage)
		if err != nil {
			return err
		}
		for _, e := range evs {
			e.Payload = withID(e)
			if err := emit(e); err != nil {
				return err
			}
			sent[e.ID] = true
		}
		if len(evs) < hubPage {
			return nil
		}
		after = evs[len(evs)-1].ID
	}
}

// withID returns the event JSON with its outbox id.
func withID(e store.OutboxEvent) []byte {
	var ev events.Event
	if err := json.Unmarshal(e.Payload, &ev); err != nil {
		ev = events.Event{Event: e.Type, Secret: e.Secret, Version: e.Version, At: e.CreatedAt}
	}
	ev.ID = e.ID
	return ev.Marshal()
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
