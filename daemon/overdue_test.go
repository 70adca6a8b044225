package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/schedules"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// TestRotationOverdue: rotary_rotation_overdue_seconds is 0 while every
// scheduled rotation succeeded within its schedule, and the lateness of
// the latest one otherwise: past the first scheduled time after its last
// success, or past its next due time when it never succeeded. Disabled,
// manual and unschedulable rotations are never overdue (the last one has
// rotary_rotations_unschedulable).
func TestRotationOverdue(t *testing.T) {
	ctx := context.Background()
	d := newSQLiteDaemon(t)
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	daily := "@every 24h"
	spec, err := schedules.Parse(daily, 0, schedules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 30 hours without a success on a daily schedule: late since the first
	// scheduled time after that success (somewhere 6 to 30 hours ago).
	late := now.Sub(spec.Next(now.Add(-30 * time.Hour)))
	if late < 6*time.Hour || late > 30*time.Hour {
		t.Fatalf("the daily schedule's first time after 30h ago is %v ago, want 6h to 30h", late)
	}
	tests := []struct {
		name string
		rot  store.Rotation
		want time.Duration
	}{
		{"rotated within its schedule", store.Rotation{Schedule: daily, Enabled: true, LastRotatedAt: at(-time.Hour), NextDueAt: at(23 * time.Hour)}, 0},
		{"no success for 30h on a daily schedule", store.Rotation{Schedule: daily, Enabled: true, LastRotatedAt: at(-30 * time.Hour), NextDueAt: at(time.Minute)}, late},
		{"never succeeded, due 2h ago", store.Rotation{Schedule: daily, Enabled: true, NextDueAt: at(-2 * time.Hour)}, 2 * time.Hour},
		{"disabled", store.Rotation{Schedule: daily, Enabled: false, LastRotatedAt: at(-30 * time.Hour)}, 0},
		{"manual", store.Rotation{Enabled: true, LastRotatedAt: at(-300 * time.Hour)}, 0},
		{"unschedulable (under min_rotation_interval)", store.Rotation{Schedule: "@every 1m", Enabled: true, LastRotatedAt: at(-30 * time.Hour), NextDueAt: at(-29 * time.Hour)}, 0},
	}
	for i, tt := range tests {
		tt.rot.Secret = "app/s" + string(rune('a'+i))
		tt.rot.Rotator = "random"
		if got := rotationOverdue(d.engine, tt.rot, now); got != tt.want {
			t.Errorf("%s: rotationOverdue = %v, want %v", tt.name, got, tt.want)
		}
	}

	// The gauge is the largest lateness among the stored rotations.
	gauge := func() float64 {
		c := &cachedCounts{st: d.st, now: func() time.Time { return now }, failing: d.engine.Failing, unschedulable: d.engine.Unschedulable,
			overdue: func(r store.Rotation, now time.Time) time.Duration { return rotationOverdue(d.engine, r, now) }}
		return c.get().overdue
	}
	put := func(i int) {
		t.Helper()
		r := tests[i].rot
		r.Secret, r.Rotator = "app/s"+string(rune('a'+i)), "random"
		if _, err := d.secrets.Create(ctx, secrets.CreateParams{Name: r.Secret, Type: "password", Value: []byte("password-1")}); err != nil {
			t.Fatal(err)
		}
		if err := d.st.PutRotation(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	put(0)
	put(3)
	if got := gauge(); got != 0 {
		t.Fatalf("rotary_rotation_overdue_seconds with healthy rotations = %v, want 0", got)
	}
	put(1)
	put(2)
	if got, want := gauge(), late.Seconds(); got != want {
		t.Fatalf("rotary_rotation_overdue_seconds with one %v late (and one 2h) = %v, want %v", late, got, want)
	}
}
