package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/rotary-secrets/rotary/events"
)

// Event is one change, as GET /v1/events, the Redis stream and hooks carry
// it (shared/CONTRACT.md). ID is its outbox id: ascending, the position to
// resume from.
type Event = events.Event

// EventReset is the Type of a StreamItem that says events after the
// resume position were trimmed: whatever the caller caches must be read
// again.
const EventReset = "reset"

// EventsOptions selects and positions an event stream.
type EventsOptions struct {
	// Secrets are globs of secret names; none means every secret the
	// token may describe.
	Secrets []string
	// After resumes after this event id (0: from now on, unless Resume).
	After int64
	// Resume resumes after After even when it is 0 (every event kept).
	Resume bool
}

// StreamItem is what EventStream.Next returns: an Event, or a control
// message (Type EventReset) with no Event.
type StreamItem struct {
	Type  string
	Event Event
}

// EventStream is an open GET /v1/events. It is not safe for concurrent
// use; Close it from any goroutine to end Next.
type EventStream struct {
	body io.ReadCloser
	next func() (sse.Event, error, bool) // from iter.Pull2; used by Next only
	stop func()
	last int64
	// positioned: last is a position to resume from.
	positioned bool
	// pending is an event read ahead by Events, for Next.
	pending *sse.Event
}

// Events opens the daemon's event stream. The stream ends when ctx ends,
// on Close, or when the daemon goes away (Next returns an error; resume
// with After set to LastID).
func (c *Client) Events(ctx context.Context, o EventsOptions) (*EventStream, error) {
	q := url.Values{}
	if len(o.Secrets) > 0 {
		q.Set("secrets", strings.Join(o.Secrets, ","))
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resume := o.After > 0 || o.Resume
	if resume {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(max(o.After, 0), 10))
	}
	// The stream lives as long as the caller wants: no overall timeout.
	hc := *c.hc
	hc.Timeout = 0
	resp, err := (&Client{addr: c.addr, token: c.token, hc: &hc}).send(req)
	if err != nil {
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /v1/events: the server answered %q, not an event stream", ct)
	}
	next, stop := iter.Pull2(iter.Seq2[sse.Event, error](sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20})))
	st := &EventStream{body: resp.Body, next: next, stop: stop, last: max(o.After, 0), positioned: resume}
	if !resume {
		// The daemon opens a fresh stream with its position (an "open"
		// event), at once: take it now, so that LastID is a place to
		// resume from even if the stream drops before its first event.
		ev, err, ok := next()
		switch {
		case !ok || err != nil:
			st.Close()
			stop()
			return nil, fmt.Errorf("GET /v1/events: the stream ended before it began: %w", cmp.Or(err, io.ErrUnexpectedEOF))
		case ev.Type == "open":
			st.open(ev.Data)
		default:
			st.pending = &ev
		}
	}
	return st, nil
}

// open takes the position of an "open" event.
func (s *EventStream) open(data string) {
	var body struct {
		After *int64 `json:"after"`
	}
	if json.Unmarshal([]byte(data), &body) == nil && body.After != nil && !s.positioned {
		s.last, s.positioned = *body.After, true
	}
}

// Next blocks until the next item. An error ends the stream (io.EOF when
// the daemon closed it, for example at shutdown).
func (s *EventStream) Next() (StreamItem, error) {
	for {
		var ev sse.Event
		var err error
		ok := true
		if s.pending != nil {
			ev, s.pending = *s.pending, nil
		} else {
			ev, err, ok = s.next()
		}
		if !ok {
			s.stop()
			return StreamItem{}, io.EOF
		}
		if err != nil {
			s.stop()
			return StreamItem{}, err
		}
		switch ev.Type {
		case "open":
			s.open(ev.Data)
			continue
		case EventReset:
			return StreamItem{Type: EventReset}, nil
		case "error":
			var body struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &body)
			return StreamItem{}, errors.New("event stream: " + body.Error)
		}
		var e Event
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			return StreamItem{}, fmt.Errorf("event stream: event %s: %w", ev.LastEventID, err)
		}
		if e.ID > s.last || !s.positioned {
			s.last, s.positioned = e.ID, true
		}
		return StreamItem{Type: e.Event, Event: e}, nil
	}
}

// LastID is the highest event id seen, or where the stream started: resume
// after it (with Resume set, as it may be 0) when Positioned.
func (s *EventStream) LastID() int64 { return s.last }

// Positioned reports whether LastID is a position to resume from: the
// stream resumed, or the daemon said where it started, or an event came.
func (s *EventStream) Positioned() bool { return s.positioned }

// Close ends the stream; a Next blocked meanwhile returns an error.
func (s *EventStream) Close() error { return s.body.Close() }

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	n := time.Now().UnixNano()
	return d - d/5 + time.Duration(n%int64(d/5*2+1))
}
