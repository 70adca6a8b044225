package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rotary-secrets/rotary/client"
)

// Three `rotary rotate NAME --wait` at once, two on daemon A and one on
// daemon B of one PostgreSQL, three rounds, against a real PostgreSQL role
// that must give its password: every request either drove a whole run or
// was told a run is already running (naming it, or the daemon that
// claimed it, or "this daemon", while its run starts); no step of any run ever
// ran twice or after cleanup; after each round the stored current
// password logs in and the one before it is refused.
func TestConcurrentRotateRequestsOneRunEach(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	fx := newPGFixture(t)
	a := startPGServer(t, fx, "")
	b := startPGServer(t, fx, "")
	c := a.root(t)
	user := "e2e_conc_" + randHex(4)
	pw := pgRole(t, db, user)
	name := "conc/" + user
	c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw, 5432))
	c.ok("rotation", "set", name, "--rotator", "postgres", "--schedule", "@every 24h")

	prev := pw
	for round := range 3 {
		type answer struct {
			out, errOut string
			code        int
		}
		answers := make([]answer, 3)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var last *server // the daemon whose run ended last
		for i, s := range []*server{a, a, b} {
			wg.Go(func() {
				out, errOut, code := s.root(t).run("rotate", name, "--wait")
				answers[i] = answer{out, errOut, code}
				if code == 0 {
					mu.Lock()
					last = s
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		ran := 0
		for i, ans := range answers {
			switch {
			case ans.code == 0:
				ran++
			case strings.Contains(ans.errOut, "already running (run run_"),
				strings.Contains(ans.errOut, "already running (claimed by"),
				strings.Contains(ans.errOut, "already running (starting on this daemon)"):
			default:
				t.Fatalf("round %d request %d: exit %d, %q %q; want a finished run or \"already running\" naming the run", round, i, ans.code, ans.out, ans.errOut)
			}
		}
		if ran == 0 {
			t.Fatalf("round %d: no request drove a run: %+v", round, answers)
		}
		// Read from the daemon that ran the last rotation: another daemon's
		// read cache may answer the version before for up to a second
		// (cross-daemon invalidation is issue 12).
		u, cur := pgCurrent(last.root(t), name)
		mustLogin(t, fmt.Sprintf("current after round %d", round), u, cur)
		mustRefuse(t, fmt.Sprintf("the password before round %d", round), user, prev)
		prev = cur
	}
	runs := okJSON[client.RunList](c, "rotation", "history", name, "-o", "json")
	for _, r := range runs.Runs {
		var steps []string
		for _, s := range r.Steps {
			steps = append(steps, s.Step+":"+s.Result)
		}
		if r.State != "succeeded" || strings.Join(steps, " ") != "create:ok set:ok test:ok finish:ok cleanup:ok" {
			t.Errorf("run %s ended %s with history %v: want each step once", r.ID, r.State, steps)
		}
	}
	d := okJSON[client.Secret](c, "secret", "describe", name)
	if len(d.Versions) != 1+len(runs.Runs) {
		t.Errorf("%d versions for %d runs: a run made more than one version", len(d.Versions), len(runs.Runs))
	}
}
