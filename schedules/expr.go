// Package schedules turns schedule expressions into times: 5-field cron
// (robfig/cron/v3's parser, with CRON_TZ= and descriptors), @every
// durations and rate(N unit), plus a window that spreads each start over
// a stretch of time. It also holds the durable due-queue runner and the
// daemon's housekeeping jobs.
package schedules

import (
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// A Schedule says when the next run after t is due.
type Schedule interface {
	Next(t time.Time) time.Time
}

// Spec is a parsed, validated schedule with its window.
type Spec struct {
	// Expr is the normalized expression: cron with an explicit CRON_TZ=,
	// "@every D" or "rate(N unit)". Empty for manual-only rotation.
	Expr   string
	Window time.Duration
	sched  Schedule
}

// Manual reports whether the spec never fires on its own.
func (s Spec) Manual() bool { return s.sched == nil }

// Options bound what Parse accepts.
type Options struct {
	// MinInterval is the smallest allowed gap between two runs.
	MinInterval time.Duration
	// Location is the time zone of cron expressions without CRON_TZ=
	// (default UTC).
	Location *time.Location
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var rateRE = regexp.MustCompile(`^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$`)

// everyInterval fires at every multiple of the interval on the absolute
// timeline (time.Truncate's), so its firing times do not depend on when a
// run happened to start or end: no drift, and every daemon agrees.
type everyInterval time.Duration

func (e everyInterval) Next(t time.Time) time.Time {
	d := time.Duration(e)
	return t.Truncate(d).Add(d)
}

// Parse checks an expression and a window and returns the spec. Errors say
// what is wrong in words a user can act on; they never panic, whatever the
// input.
func Parse(expr string, window time.Duration, o Options) (spec Spec, err error) {
	expr = strings.TrimSpace(expr)
	if expr == "" || expr == "none" {
		if window != 0 {
			return Spec{}, errors.New("a window needs a schedule")
		}
		return Spec{}, nil
	}
	if len(expr) > 256 {
		return Spec{}, errors.New("schedule: longer than 256 characters")
	}
	if window < 0 {
		return Spec{}, errors.New("window: must not be negative")
	}
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	var sched Schedule
	var norm string
	switch {
	case strings.HasPrefix(expr, "rate("):
		m := rateRE.FindStringSubmatch(expr)
		if m == nil {
			return Spec{}, fmt.Errorf("schedule %q: write rate(N minutes|hours|days)", expr)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 || n > 100000 {
			return Spec{}, fmt.Errorf("schedule %q: N must be between 1 and 100000", expr)
		}
		unit := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[strings.TrimSuffix(m[2], "s")]
		if n == 1 {
			m[2] = strings.TrimSuffix(m[2], "s")
		} else if !strings.HasSuffix(m[2], "s") {
			m[2] += "s"
		}
		sched, norm = everyInterval(time.Duration(n)*unit), fmt.Sprintf("rate(%d %s)", n, m[2])
	case strings.HasPrefix(expr, "@every"):
		ds := strings.TrimSpace(strings.TrimPrefix(expr, "@every"))
		d, err := time.ParseDuration(ds)
		if err != nil {
			return Spec{}, fmt.Errorf("schedule %q: @every needs a duration such as 12h or 90s", expr)
		}
		if d < time.Second || d%time.Second != 0 {
			return Spec{}, fmt.Errorf("schedule %q: @every takes whole seconds, at least 1s", expr)
		}
		sched, norm = everyInterval(d), "@every "+d.String()
	default:
		tzName := loc.String()
		body := expr
		if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
			i := strings.IndexByte(expr, ' ')
			if i < 0 {
				return Spec{}, fmt.Errorf("schedule %q: a time zone needs an expression after it", expr)
			}
			tzName = expr[strings.IndexByte(expr, '=')+1 : i]
			body = strings.TrimSpace(expr[i+1:])
			l, err := time.LoadLocation(tzName)
			if err != nil || tzName == "" || strings.EqualFold(tzName, "local") {
				return Spec{}, fmt.Errorf("schedule %q: unknown time zone %q", expr, tzName)
			}
			loc = l
		}
		if strings.HasPrefix(body, "@every") {
			return Parse(body, window, o)
		}
		cs, err := safeParse("CRON_TZ=UTC " + body)
		if err != nil {
			return Spec{}, fmt.Errorf("schedule %q: %v", expr, err)
		}
		sched, norm = wallClock{inner: cs, loc: loc}, "CRON_TZ="+tzName+" "+body
	}
	spec = Spec{Expr: norm, Window: window, sched: sched}
	if err := spec.check(o.MinInterval); err != nil {
		return Spec{}, fmt.Errorf("schedule %q: %v", expr, err)
	}
	return spec, nil
}

// safeParse calls the cron parser, which panics on some inputs (a bare
// "TZ=UTC", for one), and turns any panic into an error.
func safeParse(s string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, errors.New("not a valid cron expression")
		}
	}()
	sched, err = parser.Parse(s)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "expected exactly 5 fields") {
			msg = "a cron expression has 5 fields: minute hour day-of-month month day-of-week"
		}
		return nil, errors.New(msg)
	}
	return sched, nil
}

// check refuses schedules that never fire or fire more often than min, and
// windows as long as the interval.
func (s Spec) check(min time.Duration) error {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t := s.sched.Next(start)
	if t.IsZero() {
		return errors.New("it never fires")
	}
	smallest := time.Duration(1<<63 - 1)
	// Look at two years of firings, or 2000 of them, whichever is first:
	// enough to see every month length, leap day and DST change.
	for i := 0; i < 2000 && t.Before(start.AddDate(2, 0, 0)); i++ {
		n := s.sched.Next(t)
		if n.IsZero() {
			break
		}
		if gap := n.Sub(t); gap < smallest {
			smallest = gap
		}
		t = n
	}
	if min > 0 && smallest < min {
		return fmt.Errorf("it fires every %s at times, more often than the server's minimum interval of %s (min_rotation_interval)", smallest, min)
	}
	if s.Window > 0 && s.Window >= smallest {
		return fmt.Errorf("window %s must be shorter than the shortest interval, %s", s.Window, smallest)
	}
	return nil
}

// Next returns the next scheduled (base) time strictly after t.
func (s Spec) Next(t time.Time) time.Time {
	if s.sched == nil {
		return time.Time{}
	}
	return s.sched.Next(t)
}

// Due returns when a run scheduled at base starts: base plus a delay drawn
// uniformly inside the window. The draw is a hash of the key (the secret
// name) and base, so it is the same on every daemon and every restart and
// BaseOf can undo it.
func (s Spec) Due(key string, base time.Time) time.Time {
	if s.Window <= 0 {
		return base
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte(strconv.FormatInt(base.Unix(), 10)))
	return base.Add(time.Duration(h.Sum64() % uint64(s.Window)))
}

// BaseOf returns the scheduled time whose Due is due (or, if due was not
// produced by Due, the latest scheduled time not after due).
func (s Spec) BaseOf(key string, due time.Time) time.Time {
	if s.sched == nil {
		return due
	}
	b := s.sched.Next(due.Add(-s.Window - time.Second))
	if !b.After(due) && s.Due(key, b).Equal(due) {
		return b
	}
	return due
}

// NextAfterRun returns the due time of the run that follows one that was
// due at prevDue and ended at now: the next scheduled time after its base
// (no drift), or, when that has already passed (the daemon was down or
// busy), the next scheduled time after now, so missed runs are not replayed.
func (s Spec) NextAfterRun(key string, prevDue, now time.Time) time.Time {
	if s.sched == nil {
		return time.Time{}
	}
	next := s.sched.Next(s.BaseOf(key, prevDue))
	if !next.After(now) {
		next = s.sched.Next(now)
	}
	return s.Due(key, next)
}

// First returns the first due time after now.
func (s Spec) First(key string, now time.Time) time.Time {
	if s.sched == nil {
		return time.Time{}
	}
	return s.Due(key, s.sched.Next(now))
}

// wallClock runs a cron schedule on the wall clock of a time zone, with
// the daylight-saving rules people expect: a wall-clock time skipped by a
// spring-forward jump runs once, right after the jump; a wall-clock time
// repeated by a fall-back runs once, at its first occurrence. (cron's own
// CRON_TZ handling skips the first and runs the second twice.) The inner
// schedule is evaluated on "naive" wall-clock times written as UTC, where
// every day has 24 hours; each result is then placed on the real timeline.
type wallClock struct {
	inner cron.Schedule
	loc   *time.Location
}

func (w wallClock) Next(t time.Time) time.Time {
	lt := t.In(w.loc)
	naive := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC)
	for range 1000 {
		n := w.inner.Next(naive)
		if n.IsZero() {
			return n
		}
		if inst := place(n, w.loc); inst.After(t) {
			return inst
		}
		naive = n
	}
	return time.Time{}
}

// place turns a naive wall-clock time (written as UTC) into an instant in
// loc: the earliest instant showing that wall clock, or, when no instant
// does (a spring-forward gap), the instant the clocks jumped.
func place(n time.Time, loc *time.Location) time.Time {
	c := time.Date(n.Year(), n.Month(), n.Day(), n.Hour(), n.Minute(), n.Second(), n.Nanosecond(), loc)
	var best time.Time
	for _, probe := range []time.Time{c.Add(-3 * time.Hour), c, c.Add(3 * time.Hour)} {
		_, off := probe.Zone()
		inst := n.Add(-time.Duration(off) * time.Second)
		lw := inst.In(loc)
		if lw.Hour() == n.Hour() && lw.Minute() == n.Minute() && lw.Day() == n.Day() {
			if best.IsZero() || inst.Before(best) {
				best = inst
			}
		}
	}
	if !best.IsZero() {
		return best.In(loc)
	}
	// In a gap. time.Date put c on one side of the jump; the jump is the
	// end of c's zone if c's wall clock is before n's, else its start.
	start, end := c.ZoneBounds()
	cn := time.Date(c.Year(), c.Month(), c.Day(), c.Hour(), c.Minute(), c.Second(), c.Nanosecond(), time.UTC)
	if cn.Before(n) {
		return end.In(loc)
	}
	return start.In(loc)
}
