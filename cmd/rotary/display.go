package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// The words status, rotation show, secret describe and secret list use
// for the same things.
const (
	labelLastRotated = "Last rotated"
	labelNext        = "Next rotation"
	labelLastError   = "Last error"
	failingNote      = "failing: retried at a slower rate"
)

// scheduleText is a stored schedule as the user wrote it: the daemon
// stores "CRON_TZ=UTC @daily" for "@daily" and "@every 2h0m0s" for
// "@every 2h". It also returns the zone the schedule's times are in:
// its CRON_TZ, or the local zone for intervals.
func scheduleText(expr string) (string, *time.Location) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return "", time.Local
	}
	if strings.HasPrefix(expr, "CRON_TZ=") {
		zone, body, _ := strings.Cut(strings.TrimPrefix(expr, "CRON_TZ="), " ")
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return expr, time.Local
		}
		if zone == "UTC" {
			return scheduleText(body) // the daemon's default zone
		}
		return expr, loc
	}
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		if dur, err := time.ParseDuration(d); err == nil {
			return "@every " + compactDuration(dur), time.Local
		}
	}
	if strings.HasPrefix(expr, "@") || strings.Count(expr, " ") == 4 {
		return expr, time.UTC // a UTC cron expression or descriptor
	}
	return expr, time.Local
}

// compactDuration writes d the way a user would: "2h", "1h30m", "90s"
// becomes "1m30s", whole days "7d"; never "2h0m0s".
func compactDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// windowText is a stored window ("2h0m0s") as "2h".
func windowText(w string) string {
	if d, err := time.ParseDuration(w); err == nil {
		return compactDuration(d)
	}
	return w
}

// windowExplained says what a window does, for rotation show.
func windowExplained(w string) string {
	w = windowText(w)
	return fmt.Sprintf("%s: each run starts at a random point within %s after its scheduled time (the next rotations below include it)", w, w)
}

// zoneTime writes t in loc with the zone's abbreviation, and how far
// away it is: "2026-12-04 03:21:19 CET (in 15h)".
func zoneTime(now, t time.Time, loc *time.Location) string {
	return fmt.Sprintf("%s (%s)", t.In(loc).Format("2006-01-02 15:04:05 MST"), relTime(now, t))
}

// nextRotationText is the next rotation in the words every command
// uses: a time, "none (disabled)", "none (manual only)" or
// "none (unschedulable, see State)".
func nextRotationText(now time.Time, r client.RotationInfo, short bool) string {
	_, loc := scheduleText(r.Schedule)
	next := "-"
	if r.NextRotationAt != nil {
		next = zoneTime(now, *r.NextRotationAt, loc)
		if short {
			next = relTime(now, *r.NextRotationAt)
		}
	}
	switch {
	case !r.Enabled:
		return "none (disabled)"
	case r.State == client.RotationUnschedulable && r.NextRotationAt == nil:
		return "none (unschedulable, see State)"
	case r.State == client.RotationUnschedulable:
		return next + " (then none: unschedulable, see State)"
	case r.Schedule == "" && r.NextRotationAt == nil:
		return "none (manual only)"
	}
	return next
}

// stateText is the state with its reason.
func stateText(state, reason string) string {
	if reason != "" {
		return state + ": " + reason
	}
	return state
}

// changeText is one changed setting, its schedule and window as written.
func changeText(ch client.RotationChange) string {
	switch ch.Field {
	case "schedule":
		for _, v := range []*string{&ch.From, &ch.To} {
			if t, _ := scheduleText(*v); t != "" {
				*v = t
			}
		}
	case "window":
		ch.From, ch.To = windowText(ch.From), windowText(ch.To)
	}
	return ch.String()
}
