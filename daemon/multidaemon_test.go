package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// TestInjectedClockThreeDaemonsOnePostgres runs three daemons in one
// process on one PostgreSQL schema, all on one hand-moved clock:
//   - hour after hour, every scheduled secret is rotated exactly once per
//     due time, whichever daemon claims it;
//   - a daemon frozen inside a step (between Set and its commit) for
//     longer than its lease loses the secret: another daemon resumes the
//     run from its step when the clock passes the lease, finishes it, and
//     the frozen daemon, once it goes on, commits nothing.
//
// In seconds of wall time; the e2e suite shows the same with real
// processes (SIGSTOP, kill -9).
func TestInjectedClockThreeDaemonsOnePostgres(t *testing.T) {
	dsn, _ := testenv.PostgresSchema(t)
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	const token = "multi-daemon-root-token"
	ctx := context.Background()

	// Daemon C freezes at its next "set-after" once armed, until released.
	var armed atomic.Bool
	frozen, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	stops := map[string]func(){}
	logs := map[string]*lockedBuffer{}
	start := func(name string) (*daemon.Daemon, *client.Client) {
		cfg := daemon.Config{
			Listen:        "127.0.0.1:0",
			Store:         daemon.StoreConfig{Postgres: dsn},
			RootKey:       daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
			RootToken:     token,
			Logger:        discardLogger(),
			Now:           clk.Now,
			After:         clk.After,
			RotationLease: time.Minute,
		}
		logs[name] = &lockedBuffer{}
		cfg.Logger = slog.New(slog.NewTextHandler(logs[name], nil))
		if name == "c" {
			// Frozen means all of C: the run's step, and the renewals of
			// its lease (which run on C's clock, the test's).
			var isFrozen atomic.Bool
			cfg.Failpoint = func(point string) {
				switch {
				case point == "set-after" && armed.CompareAndSwap(true, false):
					isFrozen.Store(true)
					close(frozen)
					<-release
				case point == "lease-renew" && isFrozen.Load():
					<-release
				}
			}
		}
		d, err := daemon.New(ctx, cfg)
		if err != nil {
			t.Fatalf("daemon %s: %v", name, err)
		}
		if err := d.Start(ctx); err != nil {
			t.Fatalf("daemon %s: %v", name, err)
		}
		var once sync.Once
		stop := func() { once.Do(func() { _ = d.Stop() }) }
		t.Cleanup(stop)
		stops[name] = stop
		c, err := client.New("http://"+d.Addr(), client.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		return d, c
	}
	_, a := start("a")
	_, b := start("b")
	_, c := start("c")

	version := func(cl *client.Client, name string) int64 {
		t.Helper()
		s, err := cl.DescribeSecret(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range s.Versions {
			if slices.Contains(v.Stages, "current") {
				return v.Version
			}
		}
		return 0
	}
	// waitFor waits for cond while the clock goes on by a second every
	// half second of wall time, as a real one would: a scheduler that read
	// the clock just before the test moved it waits for a time computed
	// from the old reading, and wakes when the clock moves on.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		nudge := time.Now().Add(500 * time.Millisecond)
		for !cond() {
			if time.Now().After(deadline) {
				for _, n := range []string{"a", "b", "c"} {
					t.Logf("daemon %s's log:\n%s", n, logs[n].String())
				}
				show, err := a.ShowRotation(ctx, "multi/stuck")
				t.Fatalf("timed out waiting for %s (clock at %v; multi/stuck: %+v, %v)", what, clk.Now(), show, err)
			}
			if time.Now().After(nudge) {
				clk.Advance(time.Second)
				nudge = time.Now().Add(500 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const n = 24
	var names []string
	for i := range n {
		name := fmt.Sprintf("multi/s%02d", i)
		names = append(names, name)
		if _, err := a.CreateSecret(ctx, client.CreateSecretRequest{Name: name, Value: client.NewValue([]byte("v1"))}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.SetRotation(ctx, name, client.RotationSettings{Rotator: "random", Schedule: "@every 1h"}); err != nil {
			t.Fatal(err)
		}
	}
	for hour := int64(1); hour <= 3; hour++ {
		clk.Advance(time.Hour)
		waitFor(fmt.Sprintf("hour %d's rotations", hour), func() bool {
			for _, name := range names {
				if version(c, name) != hour+1 {
					return false
				}
			}
			return true
		})
		for _, name := range names {
			runs, err := a.RotationHistory(ctx, name, 10)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(runs)) != hour {
				t.Fatalf("%s after hour %d: %d runs, want %d (one per due time)", name, hour, len(runs), hour)
			}
			for _, r := range runs {
				if r.State != "succeeded" {
					t.Fatalf("%s: run %s is %s", name, r.ID, r.State)
				}
			}
		}
	}

	// A rotation started on C freezes after Set, before its commit.
	if _, err := a.CreateSecret(ctx, client.CreateSecretRequest{Name: "multi/stuck", Value: client.NewValue([]byte("v1"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetRotation(ctx, "multi/stuck", client.RotationSettings{Rotator: "random", Schedule: "none"}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if _, err := c.Rotate(ctx, "multi/stuck", client.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-frozen:
	case <-time.After(30 * time.Second):
		t.Fatal("C never reached set-after")
	}
	runs, err := a.RotationHistory(ctx, "multi/stuck", 10)
	if err != nil || len(runs) != 1 || runs[0].State != "running" {
		t.Fatalf("history while C is frozen: %+v, %v", runs, err)
	}
	runID := runs[0].ID
	// Within the lease nobody else touches it.
	clk.Advance(30 * time.Second)
	if _, err := b.Rotate(ctx, "multi/stuck", client.RotateOptions{Wait: true}); err == nil {
		t.Fatal("B rotated a secret whose rotation C holds within its lease")
	}
	// Past the lease (1m; its resume time), the scheduler of A or B
	// resumes C's run from its step. C's own scheduler claims it too at
	// times: C still drives it (frozen), so it lets that claim go.
	clk.Advance(2 * time.Minute)
	waitFor("another daemon to finish C's run", func() bool {
		runs, err := a.RotationHistory(ctx, "multi/stuck", 10)
		return err == nil && len(runs) == 1 && runs[0].State == "succeeded"
	})
	if v := version(a, "multi/stuck"); v != 2 {
		t.Fatalf("stuck secret at version %d, want 2", v)
	}
	stepsBefore := history(t, a, "multi/stuck", runID)
	// C goes on: its commit is fenced; it writes nothing more.
	releaseOnce.Do(func() { close(release) })
	waitFor("C to stop its run", func() bool {
		l := logs["c"].String()
		return strings.Contains(l, "rotation stopped without recording") || strings.Contains(l, "rotation lease may have lapsed")
	})
	stops["c"]() // returns once C's rotation has ended
	if got := history(t, a, "multi/stuck", runID); !slices.Equal(got, stepsBefore) {
		t.Fatalf("C wrote after losing the lease: history %v, was %v", got, stepsBefore)
	}
	if v := version(a, "multi/stuck"); v != 2 {
		t.Fatalf("stuck secret at version %d after C went on, want 2", v)
	}
	if runs, _ := a.RotationHistory(ctx, "multi/stuck", 10); len(runs) != 1 || runs[0].State != "succeeded" {
		t.Fatalf("runs after C went on: %+v", runs)
	}
	// What stopped C is its lease: its own fence (no renewal within the
	// lease minus the margin) or the fencing check of its commit.
	if l := logs["c"].String(); !strings.Contains(l, "rotation lease may have lapsed") && !strings.Contains(l, "no longer holds the lease") {
		t.Fatalf("C's log does not show its run stopped by the lease:\n%s", l)
	}
	if !slices.Contains(stepsBefore, "set:ok") {
		t.Fatalf("the resumed run has no set step: %v", stepsBefore)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func history(t *testing.T, c *client.Client, name, runID string) []string {
	t.Helper()
	runs, err := c.RotationHistory(context.Background(), name, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.ID == runID {
			var out []string
			for _, s := range r.Steps {
				out = append(out, s.Step+":"+s.Result)
			}
			return out
		}
	}
	t.Fatalf("run %s not in the history", runID)
	return nil
}
