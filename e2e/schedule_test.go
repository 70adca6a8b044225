package e2e

// Scheduled rotation end to end: the real binary rotates on its schedule,
// catches up once after downtime, and several daemons on one PostgreSQL
// share due rotations through leases, taking over a crashed daemon's.
//
// These tests are timing-sensitive, so they do not call t.Parallel: they
// run while no parallel test loads the machine. Every wait polls a
// condition (often a clock time) against a deadline.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// schPollEvery is the pause between two looks at the daemon. Each look
// through the CLI starts a -race binary, so polling every 50ms (waitFor's
// pace) would load the machine the timing checks run on.
const schPollEvery = 250 * time.Millisecond

// schWait polls cond every schPollEvery until it returns true or timeout
// passes.
func schWait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(schPollEvery)
	}
}

// schUntil waits until the clock reaches at (a time condition, not a
// fixed sleep).
func schUntil(t testing.TB, at time.Time, what string) {
	t.Helper()
	waitFor(t, time.Until(at)+10*time.Second, what, func() bool { return !time.Now().Before(at) })
}

// schGrid returns the first multiple of every (on the absolute timeline,
// as @every fires) strictly after t.
func schGrid(t time.Time, every time.Duration) time.Time { return t.Truncate(every).Add(every) }

// schRuns returns a secret's runs with trigger scheduled, oldest first.
func schRuns(runs []client.Run) []client.Run {
	var out []client.Run
	for _, r := range runs {
		if r.Trigger == "scheduled" {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b client.Run) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// schHistory reads a secret's history through the CLI.
func schHistory(c cli, name string) []client.Run {
	c.t.Helper()
	return okJSON[client.RunList](c, "rotation", "history", name).Runs
}

// schDescribeRuns formats runs for a failure message.
func schDescribeRuns(runs []client.Run) string {
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "\n  %s %s %s step=%s v%d started %s", r.ID, r.Trigger, r.State, r.Step, r.PendingVersion,
			r.StartedAt.UTC().Format("15:04:05.000"))
		if r.Error != "" {
			fmt.Fprintf(&b, " error=%q", r.Error)
		}
	}
	return b.String()
}

// TestScheduleEveryTwoSeconds: "@every 2s" in dev mode makes a new version
// every 2 seconds, and never two for one due time.
func TestScheduleEveryTwoSeconds(t *testing.T) {
	const every = 2 * time.Second
	s := startDev(t)
	c := s.root(t)
	name := uniq("sch-every") + "/pw"
	c.ok("secret", "create", name, "--type", "password", "--value", "initial-"+randHex(8))
	setAt := time.Now()
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 2s")

	var runs []client.Run
	schWait(t, 60*time.Second, "4 succeeded scheduled runs", func() bool {
		runs = schRuns(schHistory(c, name))
		n := 0
		for _, r := range runs {
			if r.State == "succeeded" {
				n++
			}
		}
		return n >= 4
	})
	checked := time.Now()

	// Never more runs than due times have passed since the schedule was
	// set (the first due time is the first multiple of 2s after it).
	dueTimes := int(checked.Truncate(every).Sub(setAt.Truncate(every)) / every)
	if len(runs) > dueTimes {
		t.Errorf("%d scheduled runs in %v (%d due times passed): more runs than due times%s",
			len(runs), checked.Sub(setAt).Round(time.Millisecond), dueTimes, schDescribeRuns(runs))
	}
	// Each run starts at or after its due time and the next due time is
	// computed from the schedule, so two runs in one 2s slot would be two
	// runs for one due time.
	slots := map[time.Time]string{}
	for _, r := range runs {
		if r.StartedAt.Before(setAt) {
			t.Errorf("run %s started at %s, before the schedule was set (%s)", r.ID, r.StartedAt, setAt)
		}
		slot := r.StartedAt.Truncate(every)
		if prev, dup := slots[slot]; dup {
			t.Errorf("runs %s and %s both started in the slot of due time %s%s", prev, r.ID, slot.UTC().Format("15:04:05"), schDescribeRuns(runs))
		}
		slots[slot] = r.ID
	}

	// Consecutive rotated versions are about 2 s apart.
	desc := okJSON[client.Secret](c, "secret", "describe", name)
	created := map[int64]time.Time{}
	for _, v := range desc.Versions {
		created[v.Version] = v.CreatedAt
	}
	var prev *client.Run
	for i := range runs {
		r := runs[i]
		if r.State != "succeeded" {
			continue
		}
		at, ok := created[r.PendingVersion]
		if !ok {
			t.Fatalf("run %s made version %d, which describe does not list (%+v)", r.ID, r.PendingVersion, desc.Versions)
		}
		if prev != nil {
			gap := at.Sub(created[prev.PendingVersion])
			if gap < 1000*time.Millisecond || gap > 4500*time.Millisecond {
				t.Errorf("versions %d and %d were created %v apart, want about %v%s",
					prev.PendingVersion, r.PendingVersion, gap, every, schDescribeRuns(runs))
			}
		}
		prev = &runs[i]
	}
	if cur := desc.Versions[len(desc.Versions)-1]; cur.Reason != "scheduled" {
		t.Errorf("newest version %d has reason %q, want scheduled", cur.Version, cur.Reason)
	}
}

// TestScheduleCatchUpAfterRestart: due times missed while the daemon was
// down give exactly one run at start, and the schedule goes on from there.
func TestScheduleCatchUpAfterRestart(t *testing.T) {
	const every = 10 * time.Second
	s := startDev(t)
	c := s.root(t)
	name := uniq("sch-catchup") + "/pw"
	c.ok("secret", "create", name, "--type", "password", "--value", "initial-"+randHex(8))
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 10s")

	// Read the next due time while it is a few seconds ahead (no run in
	// flight), then stop the daemon.
	var next time.Time
	schWait(t, 2*every, "a next rotation at least 3s ahead", func() bool {
		show := okJSON[client.RotationShow](c, "rotation", "show", name)
		if show.NextRotationAt == nil {
			t.Fatalf("rotation show: no next_rotation_at: %+v", show)
		}
		next = *show.NextRotationAt
		return time.Until(next) >= 3*time.Second
	})
	if !next.Equal(next.Truncate(every)) {
		t.Fatalf("next_rotation_at %s is not a multiple of %v", next, every)
	}
	s.stop()
	stopped := time.Now()

	// While it is down, let two due times pass: the first one at or after
	// the stop, and the one after it. Then start it again just after a due
	// time, so the next regular one is almost a whole interval away.
	missed := next
	for missed.Before(stopped) {
		missed = missed.Add(every)
	}
	restartAt := missed.Add(every + 300*time.Millisecond)
	schUntil(t, restartAt, fmt.Sprintf("two due times (%s, %s) to pass while the daemon is down",
		missed.UTC().Format("15:04:05"), missed.Add(every).UTC().Format("15:04:05")))
	restarted := time.Now()
	s.start()
	ready := time.Now()
	nextRegular := schGrid(restarted, every)
	if ready.After(nextRegular.Add(-2 * time.Second)) {
		t.Fatalf("the daemon took %v to start: too close to the next regular due time %s to tell a catch-up run from it",
			ready.Sub(restarted), nextRegular.UTC().Format("15:04:05"))
	}

	// The catch-up run: one, soon after the start.
	var runs []client.Run
	schWait(t, 30*time.Second, "the catch-up run to succeed", func() bool {
		runs = schRuns(schHistory(c, name))
		return len(runs) > 0 && !runs[len(runs)-1].StartedAt.Before(restarted) && runs[len(runs)-1].State == "succeeded"
	})
	catchUp := runs[len(runs)-1]
	if catchUp.StartedAt.Before(restarted) || !catchUp.StartedAt.Before(nextRegular) {
		t.Fatalf("catch-up run %s started at %s, want between the restart (%s) and the next regular due time (%s)%s",
			catchUp.ID, catchUp.StartedAt, restarted, nextRegular, schDescribeRuns(runs))
	}
	if show := okJSON[client.RotationShow](c, "rotation", "show", name); show.NextRotationAt == nil || !show.NextRotationAt.Equal(nextRegular) {
		t.Errorf("after the catch-up run, next_rotation_at = %v, want the next regular due time %s (missed due times are not replayed)",
			show.NextRotationAt, nextRegular)
	}

	// Wait out the window between the restart and the next regular due
	// time: it holds exactly one run.
	schUntil(t, nextRegular, "the next regular due time")
	runs = schRuns(schHistory(c, name))
	var inWindow []client.Run
	for _, r := range runs {
		if !r.StartedAt.Before(stopped) && r.StartedAt.Before(nextRegular) {
			inWindow = append(inWindow, r)
		}
	}
	if len(inWindow) != 1 {
		t.Fatalf("%d scheduled runs between the stop (%s) and the next regular due time (%s), want exactly 1 catch-up run for the missed due times%s",
			len(inWindow), stopped.UTC().Format("15:04:05.000"), nextRegular.UTC().Format("15:04:05"), schDescribeRuns(runs))
	}

	// The schedule continues: a run for the next regular due time.
	schWait(t, every+20*time.Second, "the regular run after the catch-up", func() bool {
		runs = schRuns(schHistory(c, name))
		last := runs[len(runs)-1]
		return !last.StartedAt.Before(nextRegular) && last.State == "succeeded"
	})
	regular := runs[len(runs)-1]
	if !regular.StartedAt.Before(nextRegular.Add(every)) {
		t.Errorf("the run after the catch-up started at %s, want in the slot of its due time %s%s",
			regular.StartedAt, nextRegular, schDescribeRuns(runs))
	}
	since := 0
	for _, r := range runs {
		if !r.StartedAt.Before(stopped) {
			since++
		}
	}
	if since != 2 {
		t.Errorf("%d scheduled runs since the stop, want 2 (catch-up and regular)%s", since, schDescribeRuns(runs))
	}
	show := okJSON[client.RotationShow](c, "rotation", "show", name)
	if show.NextRotationAt == nil || !show.NextRotationAt.Equal(nextRegular.Add(every)) {
		t.Errorf("after the regular run, next_rotation_at = %v, want %s", show.NextRotationAt, nextRegular.Add(every))
	}
}

// schConfigSet rewrites "key: value" in the config file of a
// startPGServer daemon before it starts. (extraYAML cannot override a key
// the harness already writes, such as rotation_concurrency: the config
// decoder refuses a key given twice.)
func schConfigSet(key, value string) serverOption {
	return func(s *server) {
		i := slices.Index(s.args, "--config")
		if i < 0 || i+1 >= len(s.args) {
			s.t.Fatalf("schConfigSet: no --config in %v", s.args)
		}
		file := s.args[i+1]
		b, err := os.ReadFile(file)
		if err != nil {
			s.t.Fatal(err)
		}
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:.*$`)
		line := key + ": " + value
		if re.Match(b) {
			b = re.ReplaceAll(b, []byte(line))
		} else {
			b = append(b, []byte("\n"+line+"\n")...)
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
}

// schParallel runs f(i) for i in [0, n) on workers goroutines and returns
// the first error.
func schParallel(n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// schPickInterval returns an @every interval (whole seconds, 30s to 90s)
// whose next due time after now is between lead and lead+slack away, so
// that every secret configured in the next lead seconds gets that same
// due time and the round after it is far enough to keep rounds apart.
func schPickInterval(now time.Time, lead, slack time.Duration) (time.Duration, time.Time) {
	bestI, bestT := time.Duration(0), time.Time{}
	for i := 90 * time.Second; i >= 30*time.Second; i -= time.Second {
		due := schGrid(now, i)
		d := due.Sub(now)
		if d < lead {
			continue
		}
		if d <= lead+slack {
			return i, due
		}
		if bestT.IsZero() || due.Before(bestT) {
			bestI, bestT = i, due
		}
	}
	return bestI, bestT
}

var schResumeRE = regexp.MustCompile(`msg="resuming rotation" secret=(\S+) run=(\S+)`)

// TestScheduleThreeDaemonsSharePostgres: three daemons on one PostgreSQL
// schema rotate 300 secrets due in the same second exactly once each; a
// daemon killed inside its claimed rotations has them rotated by the
// others once its leases expire. (The random rotator touches no target:
// a scheduled rotation of it commits in one transaction, so the killed
// daemon leaves no run behind, only its leases and the due times.)
func TestScheduleThreeDaemonsSharePostgres(t *testing.T) {
	const (
		nSecrets    = 300
		concurrency = 8
		lease       = 5 * time.Second
	)
	testStart := time.Now()
	budget := testStart.Add(110 * time.Second)
	remaining := func() time.Duration { return max(time.Until(budget), time.Second) }

	fx := newPGFixture(t)
	extra := fmt.Sprintf("rotation_lease: %s\n", lease)
	conc := schConfigSet("rotation_concurrency", fmt.Sprint(concurrency))
	a := startPGServer(t, fx, extra, conc, withEnv("ROTARY_FAILPOINTS=set-before"))
	b := startPGServer(t, fx, extra, conc)
	c := startPGServer(t, fx, extra, conc)
	daemons := []*server{a, b, c}
	t.Logf("three daemons ready after %v", time.Since(testStart).Round(time.Millisecond))

	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	clients := make([]*client.Client, len(daemons))
	for i, d := range daemons {
		cl, err := client.New(d.addr, client.WithToken(d.rootToken), client.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
	}
	ctx, cancel := context.WithDeadline(context.Background(), budget)
	defer cancel()
	prefix := uniq("sch-fleet") + "/"
	names := make([]string, nSecrets)
	for i := range names {
		names[i] = fmt.Sprintf("%s%03d", prefix, i)
	}

	// Setup through the HTTP API, spread over the daemons: create the
	// secrets, then configure their rotations in one burst timed so that
	// they all get the same due time T.
	t0 := time.Now()
	err := schParallel(nSecrets, 12, func(i int) error {
		_, err := clients[i%3].CreateSecret(ctx, client.CreateSecretRequest{
			Name: names[i], Type: "password", Value: client.NewValue([]byte("initial-" + randHex(8))),
		})
		return err
	})
	if err != nil {
		t.Fatalf("create secrets: %v", err)
	}
	createTook := time.Since(t0)
	// Configuring is cheaper than creating; give it half as long again
	// plus a margin.
	lead := max(6*time.Second, createTook*3/2+3*time.Second)
	every, due := schPickInterval(time.Now(), lead, 3*time.Second)
	sched := fmt.Sprintf("@every %s", every)
	t.Logf("created %d secrets in %v; schedule %q, due %s (in %v)", nSecrets, createTook.Round(time.Millisecond),
		sched, due.UTC().Format("15:04:05"), time.Until(due).Round(time.Millisecond))
	var mu sync.Mutex
	dueOf := map[string]time.Time{}
	err = schParallel(nSecrets, 12, func(i int) error {
		show, err := clients[i%3].SetRotation(ctx, names[i], client.RotationSettings{Rotator: "random", Schedule: sched})
		if err != nil {
			return fmt.Errorf("%s: %w", names[i], err)
		}
		mu.Lock()
		defer mu.Unlock()
		if show.NextRotationAt != nil {
			dueOf[names[i]] = *show.NextRotationAt
		}
		return nil
	})
	if err != nil {
		t.Fatalf("set rotations: %v", err)
	}
	if left := time.Until(due); left < time.Second {
		t.Fatalf("setting %d rotations ended %v before their due time %s: too slow to test one due time", nSecrets, left, due)
	}
	for _, n := range names {
		if got := dueOf[n]; !got.Equal(due) {
			t.Fatalf("%s: next_rotation_at %s, want %s", n, got, due)
		}
	}
	t.Logf("configured in %v; %v before the due time", time.Since(t0).Round(time.Millisecond)-createTook, time.Until(due).Round(time.Millisecond))

	// A claims its share and hangs inside each claimed rotation (before
	// the set step), renewing its leases. Kill it there.
	a.waitLog("FAILPOINT set-before", time.Until(due)+30*time.Second)
	waitFor(t, 20*time.Second, fmt.Sprintf("daemon A to hang in %d rotations", concurrency), func() bool {
		return strings.Count(a.logs.String(), "FAILPOINT set-before") >= concurrency
	})
	hung := strings.Count(a.logs.String(), "FAILPOINT set-before")
	a.kill9()
	killed := time.Now()
	// The secrets A held: their leases name A (host/listen address).
	held := map[string]bool{}
	{
		db, err := sql.Open("postgres", fx.dsn)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.QueryContext(ctx, `SELECT secret FROM rotations WHERE lease_owner LIKE $1`, "%/"+strings.TrimPrefix(a.addr, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			held[n] = true
		}
		rows.Close()
		db.Close()
	}
	if len(held) < hung {
		t.Fatalf("A hung in %d rotations but holds %d leases", hung, len(held))
	}
	t.Logf("killed A at due+%v, holding %d rotations", killed.Sub(due).Round(time.Millisecond), hung)

	// B and C finish everything, A's rotations included once its leases
	// expire.
	pending := func() []string {
		rows, err := clients[1].Status(ctx) // follows the pages
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		done := map[string]bool{}
		for _, r := range rows {
			if r.LastResult == "succeeded" && r.LastRotatedAt != nil && !r.LastRotatedAt.Before(due) {
				done[r.Name] = true
			}
		}
		var left []string
		for _, n := range names {
			if !done[n] {
				left = append(left, n)
			}
		}
		return left
	}
	var left []string
	schWait(t, remaining(), "every secret to rotate once", func() bool {
		left = pending()
		return len(left) == 0
	})
	finished := time.Now()
	t.Logf("all %d rotated %v after the due time", nSecrets, finished.Sub(due).Round(time.Millisecond))
	if !finished.Before(due.Add(every)) {
		t.Fatalf("the round of %s ended after the next due time %s; the check below needs it to end first", due, due.Add(every))
	}

	// Who resumed what: B's and C's logs name the runs they resumed.
	resumed := map[string]string{} // run id -> secret
	for _, d := range daemons[1:] {
		for _, m := range schResumeRE.FindAllStringSubmatch(d.logs.String(), -1) {
			if prev, dup := resumed[m[2]]; dup {
				t.Errorf("run %s (%s) was resumed twice", m[2], prev)
			}
			resumed[m[2]] = m[1]
		}
	}
	if len(resumed) != 0 {
		t.Errorf("B and C resumed %d runs: A, killed before its one commit, should have left none: %v", len(resumed), resumed)
	}

	// Every secret: exactly one scheduled run for T, succeeded; for A's
	// secrets it is the run A created, resumed after its lease expired.
	type hist struct {
		name string
		runs []client.Run
	}
	hists := make([]hist, nSecrets)
	err = schParallel(nSecrets, 12, func(i int) error {
		runs, err := clients[1+i%2].RotationHistory(ctx, names[i], 0)
		hists[i] = hist{names[i], runs}
		return err
	})
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	bad := 0
	for _, h := range hists {
		var forDue []client.Run
		for _, r := range h.runs {
			if r.Trigger != "scheduled" {
				t.Errorf("%s: run %s has trigger %s, want only scheduled runs", h.name, r.ID, r.Trigger)
				continue
			}
			if !r.StartedAt.Before(due) && r.StartedAt.Before(due.Add(every)) {
				forDue = append(forDue, r)
			} else {
				t.Errorf("%s: run %s started at %s, outside the round of %s", h.name, r.ID, r.StartedAt, due)
			}
		}
		if len(forDue) != 1 || forDue[0].State != "succeeded" {
			bad++
			if bad <= 10 {
				t.Errorf("%s: want exactly one succeeded scheduled run for due time %s, got:%s", h.name, due, schDescribeRuns(h.runs))
			}
			continue
		}
		r := forDue[0]
		if held[h.name] {
			// Nobody took a secret A held before A's lease could expire.
			if r.StartedAt.Before(killed.Add(lease / 2)) {
				t.Errorf("%s: A held it when killed (%s), yet run %s started at %s, before A's lease (%v) could expire",
					h.name, killed, r.ID, r.StartedAt, lease)
			}
		}
		if secret, ok := resumed[r.ID]; ok {
			if secret != h.name {
				t.Errorf("log says run %s of %s was resumed, but it belongs to %s", r.ID, secret, h.name)
			}
			var create, set *client.RunStep
			for i := range r.Steps {
				switch r.Steps[i].Step {
				case "create":
					create = &r.Steps[i]
				case "set":
					set = &r.Steps[i]
				}
			}
			switch {
			case create == nil || set == nil:
				t.Errorf("%s: resumed run %s lacks a create or set step: %+v", h.name, r.ID, r.Steps)
			case !create.StartedAt.Before(killed):
				t.Errorf("%s: resumed run %s was created at %s, after A was killed (%s)", h.name, r.ID, create.StartedAt, killed)
			case set.StartedAt.Before(killed.Add(lease / 2)):
				t.Errorf("%s: resumed run %s went on (set step at %s) before A's lease could expire (killed at %s, lease %v)",
					h.name, r.ID, set.StartedAt, killed, lease)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... and %d more secrets without exactly one succeeded run for %s", bad-10, due)
	}
	for id, secret := range resumed {
		found := false
		for _, h := range hists {
			if h.name == secret {
				found = slices.ContainsFunc(h.runs, func(r client.Run) bool { return r.ID == id })
			}
		}
		if !found {
			t.Errorf("resumed run %s is not in the history of %s", id, secret)
		}
	}
	// Every wait above has its own deadline; the total is only reported.
	t.Logf("three daemons, %d secrets: the test took %v", nSecrets, time.Since(testStart))
}
