package schedules

import (
	"strings"
	"testing"
	"time"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		min  time.Duration
		want string
	}{
		{"TZ=UTC", 0, "needs an expression"},
		{"CRON_TZ=UTC", 0, "needs an expression"},
		{"CRON_TZ=Mars/Base 0 * * * *", 0, `unknown time zone "Mars/Base"`},
		{"0 0 30 2 *", 0, "never fires"},
		{"0 0 31 2,4 *", 0, "never fires"},
		{"@every 0s", 0, "whole seconds"},
		{"@every 500ms", 0, "whole seconds"},
		{"@every 1.5s", 0, "whole seconds"},
		{"@every banana", 0, "duration"},
		{"* * * * *", time.Hour, "minimum interval of 1h0m0s"},
		{"@every 30m", time.Hour, "minimum interval"},
		{"rate(5 minutes)", time.Hour, "minimum interval"},
		{"rate(0 hours)", 0, "between 1"},
		{"rate(5 weeks)", 0, "rate(N minutes|hours|days)"},
		{"0 0 * *", 0, "5 fields"},
		{"61 * * * *", 0, "61"},
		{"@fortnightly", 0, "fortnightly"},
		{strings.Repeat("*", 300), 0, "longer than 256"},
	} {
		_, err := Parse(tc.expr, 0, Options{MinInterval: tc.min})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) err = %v, want it to mention %q", tc.expr, err, tc.want)
		}
	}
}

func TestParseNormalizes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0 3 * * *", "CRON_TZ=UTC 0 3 * * *"},
		{"CRON_TZ=Europe/Berlin 0 3 * * *", "CRON_TZ=Europe/Berlin 0 3 * * *"},
		{"TZ=America/New_York 0 3 * * *", "CRON_TZ=America/New_York 0 3 * * *"},
		{"@daily", "CRON_TZ=UTC @daily"},
		{"@every 12h", "@every 12h0m0s"},
		{"rate(1 days)", "rate(1 day)"},
		{"rate(3 hour)", "rate(3 hours)"},
		{"none", ""},
		{"", ""},
	} {
		s, err := Parse(tc.in, 0, Options{MinInterval: time.Second})
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if s.Expr != tc.want {
			t.Errorf("Parse(%q).Expr = %q, want %q", tc.in, s.Expr, tc.want)
		}
		// Normalized forms parse to themselves.
		if s.Expr != "" {
			again, err := Parse(s.Expr, 0, Options{MinInterval: time.Second})
			if err != nil || again.Expr != s.Expr {
				t.Errorf("Parse(%q) again = %q, %v", s.Expr, again.Expr, err)
			}
		}
	}
}

// next collects n firings after from.
func next(s Spec, from time.Time, n int) []time.Time {
	var out []time.Time
	t := from
	for range n {
		t = s.Next(t)
		out = append(out, t)
	}
	return out
}

func TestDaylightSaving(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	ny := mustLoc(t, "America/New_York")
	for _, tc := range []struct {
		name string
		expr string
		from time.Time
		want []string // RFC3339 in the zone
	}{
		{
			"Berlin spring forward: 02:30 does not exist, runs once at 03:00",
			"CRON_TZ=Europe/Berlin 30 2 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, berlin),
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"},
		},
		{
			"Berlin fall back: 02:30 happens twice, runs once",
			"CRON_TZ=Europe/Berlin 30 2 * * *", time.Date(2026, 10, 24, 12, 0, 0, 0, berlin),
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"},
		},
		{
			"New York spring forward: 02:15 skipped, runs at 03:00",
			"CRON_TZ=America/New_York 15 2 * * *", time.Date(2026, 3, 7, 12, 0, 0, 0, ny),
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:15:00-04:00"},
		},
		{
			"New York fall back: 01:30 twice, runs once",
			"CRON_TZ=America/New_York 30 1 * * *", time.Date(2026, 10, 31, 12, 0, 0, 0, ny),
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"},
		},
		{
			"hourly across fall back keeps going forward",
			"CRON_TZ=Europe/Berlin 0 * * * *", time.Date(2026, 10, 25, 1, 30, 0, 0, berlin),
			[]string{"2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00"},
		},
		{
			"month ends: the 31st skips short months",
			"0 0 31 * *", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			[]string{"2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"},
		},
		{
			"leap day",
			"0 12 29 2 *", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			[]string{"2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.expr, 0, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := next(s, tc.from, len(tc.want))
			for i, g := range got {
				if gs := g.Format(time.RFC3339); gs != tc.want[i] {
					t.Errorf("firing %d = %s, want %s", i, gs, tc.want[i])
				}
			}
		})
	}
}

func TestRateAndEveryDoNotDrift(t *testing.T) {
	s, err := Parse("rate(6 hours)", 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	due := s.First("x", base)
	for range 10 {
		// The run ends late; the next time comes from the schedule.
		ended := due.Add(17 * time.Minute)
		n := s.NextAfterRun("x", due, ended)
		if n.Sub(due) != 6*time.Hour {
			t.Fatalf("NextAfterRun drifted: %s after %s", n, due)
		}
		due = n
	}
}

func TestCatchUpRunsOnce(t *testing.T) {
	s, _ := Parse("@every 1h", 0, Options{})
	due := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	// Down for ten hours: the next run after the catch-up is the next
	// firing after now, not one of the missed ones.
	now := due.Add(10*time.Hour + 5*time.Minute)
	n := s.NextAfterRun("x", due, now)
	if !n.After(now) || n.Sub(now) > time.Hour {
		t.Fatalf("NextAfterRun after downtime = %s, want within the hour after %s", n, now)
	}
}

func TestWindow(t *testing.T) {
	s, err := Parse("0 3 * * *", 2*time.Hour, Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 3, 0, 0, 0, time.UTC)
	seen := map[time.Duration]bool{}
	for i := range 200 {
		key := "secret-" + string(rune('a'+i%26)) + strings.Repeat("x", i)
		due := s.Due(key, base)
		d := due.Sub(base)
		if d < 0 || d >= 2*time.Hour {
			t.Fatalf("Due offset %s outside the window", d)
		}
		seen[d.Truncate(10*time.Minute)] = true
		if b := s.BaseOf(key, due); !b.Equal(base) {
			t.Fatalf("BaseOf(Due(base)) = %s, want %s", b, base)
		}
		if again := s.Due(key, base); !again.Equal(due) {
			t.Fatalf("Due is not deterministic")
		}
	}
	if len(seen) < 8 {
		t.Errorf("window draws cover %d of 12 ten-minute buckets; not spread", len(seen))
	}
	if _, err := Parse("@every 1h", 2*time.Hour, Options{}); err == nil {
		t.Errorf("a window longer than the interval was accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"TZ=UTC", "CRON_TZ=Europe/Berlin 30 2 * * *", "@every 1s", "rate(1 day)",
		"0 0 30 2 *", "* * * * *", "@daily", "CRON_TZ= ", "TZ=", "@every", "0 0 * * 7", "*/0 * * * *", "1-0 * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr, 0, Options{MinInterval: time.Second})
		if err != nil {
			return
		}
		if s.Manual() {
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		n := s.Next(from)
		if !n.After(from) {
			t.Fatalf("Parse(%q) accepted, but Next(%s) = %s", expr, from, n)
		}
	})
}
