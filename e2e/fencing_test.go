package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// TestFencingStoreCutOffLongerThanTheLease is the fault-matrix row "the
// store unreachable for longer than the lease while a rotation runs on
// daemon A, with daemon B on the same PostgreSQL". A reaches PostgreSQL
// through a TCP proxy the test owns; its rotation stands inside the set
// step (a failpoint) when the proxy is cut. A stops its run once its
// lease may have lapsed, B takes the secret over once the lease expires
// and finishes A's run, and when A gets its store back it never touches
// the target: a later password set by B stays the one that logs in.
func TestFencingStoreCutOffLongerThanTheLease(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	fx := newPGFixture(t)
	u, err := url.Parse(fx.dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the PostgreSQL DSN %q has no host:port to put a proxy in front of", fx.dsn)
	}
	proxy := testenv.NewProxy(t, u.Host)
	fxA := fx
	u.Host = fmt.Sprintf("127.0.0.1:%d", proxy.Port())
	fxA.dsn = u.String()

	const lease = 3 * time.Second // renewed every 0.5s; margin 1s
	extra := fmt.Sprintf("rotation_lease: %s\n", lease)
	release := filepath.Join(t.TempDir(), "go-on")
	never := filepath.Join(t.TempDir(), "never")
	// A stops before set until released; it would announce (and hang at)
	// any later point of the step machine it reached.
	a := startPGServer(t, fxA, extra, withEnv("ROTARY_FAILPOINTS=set-before=wait:"+release+
		",set-after=wait:"+never+",test-before=wait:"+never+",finish-before=wait:"+never))
	b := startPGServer(t, fx, extra)
	ca, cb := a.root(t), b.root(t)

	user := "e2e_fence_" + randHex(4)
	pw1 := pgRole(t, db, user)
	name := "pg/" + user
	ca.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw1, 5432))
	ca.ok("rotation", "set", name, "--rotator", "postgres")
	ca.ok("rotate", name)
	a.waitLog("FAILPOINT set-before", 60*time.Second)

	// A holds the lease, version 2 is pending, nothing touched the target.
	// Its store goes away.
	proxy.SetDown(true)
	cut := time.Now()
	a.waitLog("rotation lease may have lapsed", 30*time.Second)
	if d := time.Since(cut); d >= lease {
		t.Errorf("A noticed its lease may have lapsed %v after the cut, want within the lease (%v)", d, lease)
	}

	// B claims the secret once A's lease has expired, resumes A's run from
	// its step (set) and finishes it.
	var runs client.RunList
	waitFor(t, 90*time.Second, "B to finish A's run", func() bool {
		runs = okJSON[client.RunList](cb, "rotation", "history", name)
		return len(runs.Runs) == 1 && runs.Runs[0].State == "succeeded"
	})
	if !strings.Contains(b.logs.String(), "resuming rotation") {
		t.Errorf("B's log does not say it resumed the run")
	}
	_, pw2 := pgCurrent(cb, name)
	mustLogin(t, "version 2 (set by B)", user, pw2)
	mustRefuse(t, "version 1", user, pw1)
	// One more rotation on B, so that a late Set of A's pending value
	// (version 2) on the target would show.
	cb.ok("rotate", name, "--wait")
	_, pw3 := pgCurrent(cb, name)
	mustLogin(t, "version 3", user, pw3)
	mustRefuse(t, "version 2", user, pw2)

	// A gets its store back and goes on from where it stood.
	proxy.SetDown(false)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const stopped = "rotation stopped without recording: this daemon no longer holds the lease"
	// Were A not fenced, it would go on: reach a later step, or fail on
	// the target and record that failure in a run that is no longer its.
	later := []string{"FAILPOINT set-after", "FAILPOINT test-before", "FAILPOINT finish-before", `msg="rotation failed"`}
	waitFor(t, 60*time.Second, "A to stop (or, were it not fenced, to go on)", func() bool {
		logs := a.logs.String()
		return strings.Contains(logs, stopped) || slices.ContainsFunc(later, func(p string) bool { return strings.Contains(logs, p) })
	})

	// A never touched the target: version 3 still logs in, A's pending
	// version 2 does not, and A reached no later step.
	mustLogin(t, "version 3 after A came back", user, pw3)
	mustRefuse(t, "version 2 after A came back", user, pw2)
	logsA := a.logs.String()
	for _, p := range later {
		if strings.Contains(logsA, p) {
			t.Errorf("A went on after losing its lease: its log says %s", p)
		}
	}
	if v := okJSON[client.SecretValue](cb, "secret", "get", name); v.Version != 3 {
		t.Errorf("current version = %d, want 3 (no rotation after B's)", v.Version)
	}
	if !strings.Contains(logsA, stopped) {
		t.Errorf("A's log does not say it stopped without recording")
	}
	runs = okJSON[client.RunList](ca, "rotation", "history", name)
	if len(runs.Runs) != 2 || runs.Runs[0].State != "succeeded" || runs.Runs[1].State != "succeeded" {
		t.Fatalf("runs = %+v, want two succeeded (A's, finished by B, and B's own)", runs.Runs)
	}
	for _, r := range runs.Runs {
		var steps []string
		for _, s := range r.Steps {
			steps = append(steps, s.Step+":"+s.Result)
		}
		if strings.Count(strings.Join(steps, " "), "finish:ok") != 1 {
			t.Errorf("run %s history %v, want finish:ok once", r.ID, steps)
		}
	}
	show := okJSON[client.RotationShow](ca, "rotation", "show", name)
	if show.LastError != "" {
		t.Errorf("last_error = %q; A must not record a failure after losing the lease", show.LastError)
	}
}
