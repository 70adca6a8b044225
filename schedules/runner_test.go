package schedules

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"
)

// memQueue is an in-memory due-queue with leases, standing in for the
// store (whose own claims are tested by the store conformance suite).
type memQueue struct {
	mu     sync.Mutex
	due    map[string]time.Time
	leased map[string]bool
	now    func() time.Time
}

func (q *memQueue) EarliestDue(context.Context) (time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var best time.Time
	for k, t := range q.due {
		if q.leased[k] {
			continue
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	if best.IsZero() {
		return best, ErrNothingDue
	}
	return best, nil
}

func (q *memQueue) ClaimDue(_ context.Context, now time.Time, limit int) ([]Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var keys []string
	for k, t := range q.due {
		if !q.leased[k] && !t.After(now) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []Item
	for _, k := range keys {
		if len(out) == limit {
			break
		}
		q.leased[k] = true
		out = append(out, Item{Key: k, Due: q.due[k]})
	}
	return out, nil
}

// fastClock is an injected clock that runs 3600 times faster than real
// time: an hour of schedule passes in a second, so the tests never sleep
// through real minutes, while the runner's sleeps and the handlers'
// clock readings stay consistent with each other.
type fastClock struct {
	base  time.Time
	start time.Time
}

const speedup = 3600

func newFastClock(base time.Time) *fastClock { return &fastClock{base: base, start: time.Now()} }

func (c *fastClock) Now() time.Time { return c.base.Add(time.Since(c.start) * speedup) }
func (c *fastClock) After(d time.Duration) <-chan time.Time {
	return time.After(d / speedup)
}

// tolerance is how late (in schedule time) a run may start: 30 minutes of
// schedule time is half a second of real time, room for a loaded machine
// running the race detector, while an hourly schedule stays meaningful.
const tolerance = 30 * time.Minute

func TestRunnerRunsEachDueItemOnceInOrder(t *testing.T) {
	clk := newFastClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	q := &memQueue{due: map[string]time.Time{}, leased: map[string]bool{}, now: clk.Now}
	spec, _ := Parse("@every 1h", 0, Options{})
	for i, k := range []string{"a", "b", "c"} {
		q.due[k] = clk.Now().Add(time.Duration(i+1) * 10 * time.Minute)
	}
	var mu sync.Mutex
	runs := map[string][]time.Time{}
	dues := map[string][]time.Time{}
	done := make(chan struct{})
	r := NewRunner(RunnerConfig{
		Queue: q, Concurrency: 2, Now: clk.Now, After: clk.After, MaxSleep: 5 * time.Minute,
		Handle: func(_ context.Context, it Item) {
			mu.Lock()
			runs[it.Key] = append(runs[it.Key], clk.Now())
			dues[it.Key] = append(dues[it.Key], it.Due)
			total := 0
			for _, v := range runs {
				total += len(v)
			}
			mu.Unlock()
			// Reschedule from the scheduled time (no drift) and release.
			q.mu.Lock()
			q.due[it.Key] = spec.NextAfterRun(it.Key, it.Due, clk.Now())
			q.leased[it.Key] = false
			q.mu.Unlock()
			if total == 9 {
				close(done)
			}
		},
	})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not run 9 rotations")
	}
	r.Stop()
	for _, k := range []string{"a", "b", "c"} {
		if len(runs[k]) < 3 {
			t.Errorf("%s ran %d times, want 3", k, len(runs[k]))
		}
		for i := range runs[k] {
			if lag := runs[k][i].Sub(dues[k][i]); lag < 0 || lag > tolerance {
				t.Errorf("%s run %d started %s after its due time, want within %s and never early", k, i, lag, tolerance)
			}
			// After the first, every due time is an hour mark: computed from
			// the schedule, not from when the last run ended.
			if i > 0 && (dues[k][i].Sub(dues[k][i-1]) <= 0 || !dues[k][i].Equal(dues[k][i].Truncate(time.Hour))) {
				t.Errorf("%s: due times %s then %s, want consecutive hour marks", k, dues[k][i-1], dues[k][i])
			}
		}
	}
}

func TestRunnerCatchUpOnceAfterDowntime(t *testing.T) {
	clk := newFastClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	spec, _ := Parse("@every 1h", 0, Options{})
	// Due ten hours ago: the daemon was down.
	q := &memQueue{due: map[string]time.Time{"x": clk.Now().Add(-10 * time.Hour)}, leased: map[string]bool{}, now: clk.Now}
	var mu sync.Mutex
	var at, dues []time.Time
	first := make(chan struct{})
	r := NewRunner(RunnerConfig{
		Queue: q, Now: clk.Now, After: clk.After,
		Handle: func(_ context.Context, it Item) {
			mu.Lock()
			at = append(at, clk.Now())
			dues = append(dues, it.Due)
			n := len(at)
			mu.Unlock()
			q.mu.Lock()
			q.due[it.Key] = spec.NextAfterRun(it.Key, it.Due, clk.Now())
			q.leased[it.Key] = false
			q.mu.Unlock()
			if n == 2 {
				close(first)
			}
		},
	})
	_ = r.Start(context.Background())
	<-first
	r.Stop()
	start := clk.base
	if lag := at[0].Sub(start); lag > tolerance {
		t.Errorf("catch-up ran %s after start, want at once", lag)
	}
	// The next run is the next hour mark after the catch-up, not one of
	// the nine missed ones.
	if want := at[0].Truncate(time.Hour).Add(time.Hour); !dues[1].Equal(want) {
		t.Errorf("second run due %s, want %s (no replay of missed runs)", dues[1], want)
	}
}

func TestRunnerBoundsConcurrency(t *testing.T) {
	now := time.Now()
	q := &memQueue{due: map[string]time.Time{}, leased: map[string]bool{}}
	for i := range 20 {
		q.due[string(rune('a'+i))] = now.Add(-time.Second)
	}
	var mu sync.Mutex
	running, peak, total := 0, 0, 0
	release := make(chan struct{})
	all := make(chan struct{})
	r := NewRunner(RunnerConfig{Queue: q, Concurrency: 3, Busy: time.Millisecond, Handle: func(_ context.Context, it Item) {
		mu.Lock()
		running++
		total++
		peak = max(peak, running)
		if total == 20 {
			close(all)
		}
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		q.mu.Lock()
		delete(q.due, it.Key)
		q.mu.Unlock()
	}})
	_ = r.Start(context.Background())
	go func() {
		for {
			select {
			case release <- struct{}{}:
			case <-all:
				close(release)
				return
			}
		}
	}()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatal("not all items ran")
	}
	r.Stop()
	if peak > 3 {
		t.Errorf("peak concurrency %d, want at most 3", peak)
	}
}
