package rotation_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/secrets"
)

// TestConfigureMerges: fields a change leaves unset keep their stored
// values, and the changes are reported.
func TestConfigureMerges(t *testing.T) {
	b := setup(t) // db: rotator fake, no schedule
	c, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Schedule: ptr("rate(1 day)"), Window: ptr(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Rotation.Rotator != "fake" || c.Rotation.Schedule != "rate(1 day)" || c.Rotation.NextDueAt == nil {
		t.Fatalf("after a schedule change: %+v", c.Rotation)
	}
	want := []string{"schedule: none (manual only) -> rate(1 day)", "window: (none) -> 1h0m0s"}
	if got := changeTexts(c.Changes); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("changes %q, want %q", got, want)
	}
	stored, _ := b.st.GetRotation(ctx, "db")
	due := *stored.NextDueAt

	b.clock.Add(time.Minute)
	c, err = b.eng.Configure(ctx, rotation.Settings{Secret: "db", Config: json.RawMessage(`{"mode":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ = b.st.GetRotation(ctx, "db")
	if c.Rotation.Schedule != "rate(1 day)" || c.Rotation.Window != time.Hour || !stored.NextDueAt.Equal(due) {
		t.Fatalf("a config change touched the schedule: %+v", c.Rotation)
	}
	if got := changeTexts(c.Changes); len(got) != 1 || got[0] != "config.mode: (none) -> x" {
		t.Fatalf("changes %q", got)
	}

	// Clearing the schedule clears its window; the config stays.
	c, err = b.eng.Configure(ctx, rotation.Settings{Secret: "db", Schedule: ptr("none")})
	if err != nil {
		t.Fatal(err)
	}
	if c.Rotation.Schedule != "" || c.Rotation.Window != 0 || c.Rotation.NextDueAt != nil || len(c.Next) != 0 || string(c.Rotation.Config) != `{"mode":"x"}` {
		t.Fatalf("after clearing the schedule: %+v", c.Rotation)
	}
	c, err = b.eng.Configure(ctx, rotation.Settings{Secret: "db", Config: json.RawMessage(`{}`)})
	if err != nil || string(c.Rotation.Config) != "{}" {
		t.Fatalf("clear config: %v %s", err, c.Rotation.Config)
	}
	if _, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Config: json.RawMessage(`[1]`)}); err == nil {
		t.Fatal("a config that is not an object was accepted")
	}

	// A secret without settings needs a rotator.
	if _, err := b.svc.Create(ctx, secrets.CreateParams{Name: "other", Type: "password", Value: []byte("other-password-1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Configure(ctx, rotation.Settings{Secret: "other", Schedule: ptr("@daily")}); err == nil || !strings.Contains(err.Error(), "rotator") {
		t.Fatalf("a first Configure without a rotator: %v", err)
	}
}

// TestConfigureConcurrent: concurrent changes of different fields all
// take effect.
func TestConfigureConcurrent(t *testing.T) {
	b := setup(t)
	for round := range 10 {
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		sched := []string{"@every 2h", "@every 3h"}[round%2]
		cfg := json.RawMessage(`{"round":` + string(rune('0'+round)) + `}`)
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Schedule: ptr(sched)})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := b.eng.Configure(ctx, rotation.Settings{Secret: "db", Config: cfg})
			errs <- err
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		r, err := b.st.GetRotation(ctx, "db")
		if err != nil {
			t.Fatal(err)
		}
		if r.Schedule != strings.Replace(sched, "h", "h0m0s", 1) || string(r.Config) != string(cfg) {
			t.Fatalf("round %d: schedule %q config %s", round, r.Schedule, r.Config)
		}
	}
}

// TestUnschedulableIsShownAndLoggedOnce: a schedule saved under a smaller
// minimum interval is unschedulable for an engine with a larger one; the
// next due time is dropped with one log line, not silently.
func TestUnschedulableIsShownAndLoggedOnce(t *testing.T) {
	b := setup(t)
	dev, err := rotation.New(rotation.Config{Store: b.st, Secrets: b.svc, Rotators: rotation.Registry{"fake": b.rot},
		Owner: "dev", Now: b.clock.Now, MinInterval: time.Second, TestAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Configure(ctx, rotation.Settings{Secret: "db", Schedule: ptr("@every 5s")}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	prod, err := rotation.New(rotation.Config{Store: b.st, Secrets: b.svc, Rotators: rotation.Registry{"fake": b.rot},
		Owner: "prod", Now: b.clock.Now, MinInterval: time.Hour, TestAttempts: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.st.GetRotation(ctx, "db")
	if s, _ := dev.ScheduleState(r); s != rotation.StateScheduled {
		t.Fatalf("dev engine: state %q", s)
	}
	state, reason := prod.ScheduleState(r)
	if state != rotation.StateUnschedulable || !strings.Contains(reason, "min_rotation_interval") || !strings.Contains(reason, "1h0m0s") {
		t.Fatalf("prod engine: %q %q", state, reason)
	}
	if n, err := prod.CheckSchedules(ctx); err != nil || n != 1 {
		t.Fatalf("CheckSchedules: %d %v", n, err)
	}
	for range 3 {
		if _, err := prod.CheckSchedules(ctx); err != nil {
			t.Fatal(err)
		}
		b.clock.Add(10 * time.Second)
		if _, err := prod.Rotate(ctx, rotation.RotateParams{Secret: "db", Trigger: rotation.TriggerManual}); err != nil {
			t.Fatal(err)
		}
	}
	r, _ = b.st.GetRotation(ctx, "db")
	if r.NextDueAt != nil || !prod.Unschedulable(r) {
		t.Fatalf("after runs: next %v", r.NextDueAt)
	}
	if n := strings.Count(logs.String(), "rotation is not scheduled"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
	// A disabled rotation is not unschedulable; saving a schedule the
	// engine accepts makes it scheduled again, and that is logged.
	if _, err := prod.Configure(ctx, rotation.Settings{Secret: "db", Schedule: ptr("@every 5s")}); err == nil ||
		!strings.Contains(err.Error(), "min_rotation_interval") {
		t.Fatalf("saving a schedule under the minimum: %v", err)
	}
	if _, err := prod.Configure(ctx, rotation.Settings{Secret: "db", Schedule: ptr("@every 2h")}); err != nil {
		t.Fatal(err)
	}
	r, _ = b.st.GetRotation(ctx, "db")
	if s, _ := prod.ScheduleState(r); s != rotation.StateScheduled {
		t.Fatalf("after a valid schedule: %q", s)
	}
	if !strings.Contains(logs.String(), "rotation schedulable again") {
		t.Fatalf("no log of the rotation being scheduled again:\n%s", logs.String())
	}
	r.Enabled = false
	if s, _ := prod.ScheduleState(r); s != rotation.StateDisabled {
		t.Fatalf("disabled: %q", s)
	}
}

func changeTexts(cs []rotation.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
