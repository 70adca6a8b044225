package schedules

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type memLock struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (m *memLock) TryLock(_ context.Context, name string, hold time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Now().Before(m.until[name]) {
		return false, nil
	}
	m.until[name] = time.Now().Add(hold)
	return true, nil
}

func TestHousekeeperRunsJobsOncePerLockAndSurvivesPanics(t *testing.T) {
	lock := &memLock{until: map[string]time.Time{}}
	var runs, after atomic.Int32
	jobs := []Job{
		{Name: "count", Spec: "@every 1h", Run: func(context.Context) error { runs.Add(1); return nil }},
		{Name: "boom", Spec: "@every 1h", Run: func(context.Context) error { panic("job exploded") }},
		{Name: "fails", Spec: "@every 1h", Run: func(context.Context) error { return errors.New("nope") }},
		{Name: "after", Spec: "@every 1h", Run: func(context.Context) error { after.Add(1); return nil }},
	}
	// Two daemons sharing one lock store.
	a, err := NewHousekeeper(jobs, lock, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewHousekeeper(jobs, lock, nil)
	// RunNow calls the wrapped jobs directly, outside cron's Recover; the
	// panicking job is tried on the scheduled path below instead.
	a.RunNow([]Job{jobs[0], jobs[2], jobs[3]})
	b.RunNow([]Job{jobs[0], jobs[2], jobs[3]})
	if runs.Load() != 1 || after.Load() != 1 {
		t.Errorf("with one lock store, jobs ran %d and %d times, want once each", runs.Load(), after.Load())
	}
	// The scheduled path: a panicking job does not take the runner down.
	fast := []Job{
		{Name: "boom", Spec: "@every 1s", Run: jobs[1].Run},
		{Name: "tick", Spec: "@every 1s", Run: func(context.Context) error { after.Add(1); return nil }},
	}
	h, err := NewHousekeeper(fast, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = h.Start(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for after.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the housekeeper stopped running jobs after a panic")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.Stop()
	h.Stop() // idempotent
	if _, err := NewHousekeeper([]Job{{Name: "bad", Spec: "every minute"}}, nil, nil); err == nil {
		t.Errorf("a bad cron spec was accepted")
	}
}
