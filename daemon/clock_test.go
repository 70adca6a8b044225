package daemon_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
)

// fakeClock is a clock the test moves by hand: Now stands still until
// Advance, and After fires when Advance passes its time.
type fakeClock struct {
	mu      sync.Mutex
	t       time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.t
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.t.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.t
	}
	c.waiters = kept
}

// startClockDaemon starts a daemon on the SQLite store in dir whose clock
// is clk, and returns it with a client holding its root token (set at the
// first start in dir: the same at every start).
func startClockDaemon(t *testing.T, dir string, clk *fakeClock) (*daemon.Daemon, *client.Client) {
	t.Helper()
	token := "clock-root-token-" + filepath.Base(dir)
	d, err := daemon.New(context.Background(), daemon.Config{
		Listen:    "127.0.0.1:0",
		Store:     daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey:   daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootToken: token,
		Logger:    discardLogger(),
		Now:       clk.Now,
		After:     clk.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := client.New("http://"+d.Addr(), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

// The daemon takes its time from Config.Now and Config.After: a schedule
// due while the daemon was down five (clock) hours is caught up once, not
// five times, at the next start, and the next rotation comes when the
// clock reaches it, and a jump of the clock back and forth neither
// repeats nor moves a rotation; all in about a second of wall time.
func TestInjectedClockDrivesTheSchedule(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	start := func() (*daemon.Daemon, *client.Client) { return startClockDaemon(t, dir, clk) }
	ctx := context.Background()
	version := func(c *client.Client) int64 {
		t.Helper()
		s, err := c.DescribeSecret(ctx, "app/key")
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
	waitVersion := func(c *client.Client, want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for version(c) != want {
			if time.Now().After(deadline) {
				t.Fatalf("current version %d, want %d", version(c), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	d, c := start()
	if _, err := c.CreateSecret(ctx, client.CreateSecretRequest{Name: "app/key", Value: client.NewValue([]byte("v1"))}); err != nil {
		t.Fatal(err)
	}
	show, err := c.SetRotation(ctx, "app/key", client.RotationSettings{Rotator: "random", Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(time.Hour); show.NextRotationAt == nil || !show.NextRotationAt.Equal(want) {
		t.Fatalf("next rotation at %v, want %v (one hour of the injected clock)", show.NextRotationAt, want)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(5 * time.Hour)
	d, c = start()
	defer d.Stop()
	waitVersion(c, 2)
	// Caught up once: the next rotation is an hour of the clock away, and
	// only one run happened.
	show, err = c.ShowRotation(ctx, "app/key")
	if err != nil {
		t.Fatal(err)
	}
	if show.NextRotationAt == nil || !show.NextRotationAt.After(clk.Now()) {
		t.Fatalf("after the catch-up the next rotation is at %v, not after the clock's %v", show.NextRotationAt, clk.Now())
	}
	runs, err := c.RotationHistory(ctx, "app/key", 10)
	if err != nil || len(runs) != 1 {
		t.Fatalf("history after five missed hours: %d runs, %v; want one catch-up run", len(runs), err)
	}
	if v := version(c); v != 2 {
		t.Fatalf("version %d after the catch-up, want 2", v)
	}

	// The clock reaches the next due time: the scheduler, waiting on the
	// injected After, rotates again.
	clk.Advance(show.NextRotationAt.Sub(clk.Now()))
	waitVersion(c, 3)
	if runs, _ := c.RotationHistory(ctx, "app/key", 10); len(runs) != 2 {
		t.Fatalf("%d runs after the clock reached the next due time, want 2", len(runs))
	}

	// The wall clock jumps back an hour, then runs forward two: the
	// rotation comes once, when the clock reaches the due time again, not
	// twice (the jump back neither repeats the last rotation nor moves the
	// schedule).
	show, err = c.ShowRotation(ctx, "app/key")
	if err != nil || show.NextRotationAt == nil {
		t.Fatalf("rotation show: %+v, %v", show, err)
	}
	due := *show.NextRotationAt
	clk.Advance(-time.Hour)
	clk.Advance(time.Hour)
	if got, _ := c.ShowRotation(ctx, "app/key"); got.NextRotationAt == nil || !got.NextRotationAt.Equal(due) {
		t.Fatalf("after the clock went back and forth the next rotation moved from %v to %v", due, got.NextRotationAt)
	}
	clk.Advance(due.Sub(clk.Now()))
	waitVersion(c, 4)
	if runs, _ := c.RotationHistory(ctx, "app/key", 10); len(runs) != 3 {
		t.Fatalf("%d runs after the clock jumped back and forward, want 3", len(runs))
	}
}

// A daily schedule in Berlin across the spring-forward night, through the
// daemon with its clock moved by hand: 02:30 does not exist on 29 March
// 2026, so that day's rotation runs once at 03:00, and the next is at
// 02:30 the day after.
func TestInjectedClockAcrossDaylightSaving(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 3, 28, 12, 0, 0, 0, berlin)}
	d, c := startClockDaemon(t, dir, clk)
	defer d.Stop()
	ctx := context.Background()
	if _, err := c.CreateSecret(ctx, client.CreateSecretRequest{Name: "app/dst", Value: client.NewValue([]byte("v1"))}); err != nil {
		t.Fatal(err)
	}
	show, err := c.SetRotation(ctx, "app/dst", client.RotationSettings{Rotator: "random", Schedule: "CRON_TZ=Europe/Berlin 30 2 * * *"})
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 3, 29, 3, 0, 0, 0, berlin)
	if show.NextRotationAt == nil || !show.NextRotationAt.Equal(want) {
		t.Fatalf("next rotation at %v, want %v (02:30 is skipped by the jump)", show.NextRotationAt, want)
	}
	clk.Advance(want.Sub(clk.Now()))
	deadline := time.Now().Add(30 * time.Second)
	for {
		runs, err := c.RotationHistory(ctx, "app/dst", 10)
		if err == nil && len(runs) == 1 && runs[0].State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rotation when the clock reached %v: %+v, %v", want, runs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	show, err = c.ShowRotation(ctx, "app/dst")
	if err != nil {
		t.Fatal(err)
	}
	if next := time.Date(2026, 3, 30, 2, 30, 0, 0, berlin); show.NextRotationAt == nil || !show.NextRotationAt.Equal(next) {
		t.Fatalf("after the rotation on the jump day the next is at %v, want %v", show.NextRotationAt, next)
	}
}
