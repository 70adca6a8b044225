package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

func event(secret string, v int64) []byte {
	return events.Event{
		ID: v, Event: events.Rotated, Secret: secret, Version: v, Stages: []string{"current"},
		Fingerprint: "fp", Region: "eu", Reason: "scheduled", At: time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC),
	}.Marshal()
}

func TestFilehookAppendsEachEventThroughGRPC(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events.jsonl")
	l := mustLaunch(t, binary(t, "filehook"), env("FILEHOOK_PATH="+out))
	info := l.p.Info()
	if info.Name != "filehook" || !slices.Equal(info.Kinds, []string{plugins.KindHook}) || len(info.SecretTypes) > 0 {
		t.Fatalf("Info = %+v; want a hook-only plugin named filehook", info)
	}
	ctx := context.Background()
	e1 := event("db/main", 3)
	if err := l.p.OnEvent(ctx, e1); err != nil {
		t.Fatalf("OnEvent: %v", err)
	}
	// Fields the hook does not know are ignored.
	e2 := []byte(`{"event":"rotation_failed","secret":"db/other","at":"2026-12-02T20:01:00Z","reason":"manual","from_the_future":{"x":1}}`)
	if err := l.p.OnEvent(ctx, e2); err != nil {
		t.Fatalf("OnEvent with an unknown field: %v", err)
	}
	want2 := `{"event":"rotation_failed","secret":"db/other","reason":"manual","at":"2026-12-02T20:01:00Z"}`
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), string(e1)+"\n"+want2+"\n"; got != want {
		t.Fatalf("the file holds\n%s\nwant\n%s", got, want)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the file's mode = %v (%v); want 0600", fi.Mode().Perm(), err)
	}
	// Bad input: refused by the host, nothing appended.
	if err := l.p.OnEvent(ctx, []byte("not json")); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("OnEvent(not json) = %v; want an error saying it is not JSON", err)
	}
	// A hook plugin serves no rotator.
	if _, err := l.p.Create(ctx, rotators.CreateRequest{}); !errors.Is(err, plugins.ErrNotServed) || err.Error() != "plugin filehook serves no rotator" {
		t.Errorf("Create on a hook plugin = %v; want `plugin filehook serves no rotator`", err)
	}
	if b2, _ := os.ReadFile(out); !slices.Equal(b2, b) {
		t.Errorf("the file changed after refused calls:\n%s", b2)
	}
}

func TestFilehookWithoutItsPathSaysSo(t *testing.T) {
	l := mustLaunch(t, binary(t, "filehook"), env("FILEHOOK_PATH=relative.jsonl"))
	if err := l.p.OnEvent(context.Background(), event("x", 1)); err == nil || !strings.Contains(err.Error(), "FILEHOOK_PATH") {
		t.Fatalf("OnEvent with a relative FILEHOOK_PATH = %v; want an error naming FILEHOOK_PATH", err)
	}
}

func TestOnEventErrorsAndDeadline(t *testing.T) {
	ctx := context.Background()
	path := binary(t, "testplugin")

	// A rotator plugin serves no hook.
	rot := mustLaunch(t, path, nil)
	if err := rot.p.OnEvent(ctx, event("ok", 1)); !errors.Is(err, plugins.ErrNotServed) || err.Error() != "plugin testplugin serves no hook" {
		t.Errorf("OnEvent on a rotator plugin = %v; want `plugin testplugin serves no hook`", err)
	}

	canary := "canary-hook-token-2718"
	l := mustLaunch(t, path, func(c *plugins.Config) {
		c.Env = []string{"TESTPLUGIN_MODE=hook", "TESTPLUGIN_CANARY=" + canary}
		c.CallTimeout = 400 * time.Millisecond
		c.Secrets = func() []sensitive.Bytes { return []sensitive.Bytes{sensitive.Bytes(canary)} }
	})
	if k := l.p.Info().Kinds; !slices.Equal(k, []string{plugins.KindRotator, plugins.KindHook}) {
		t.Fatalf("Info().Kinds = %v; want rotator and hook", k)
	}
	if err := l.p.OnEvent(ctx, event("ok", 1)); err != nil {
		t.Fatalf("OnEvent: %v", err)
	}
	err := l.p.OnEvent(ctx, event("fail", 1))
	if err == nil || !strings.Contains(err.Error(), "cannot deliver rotated") || !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("OnEvent of a failing hook = %v; want its message and errors.Is(rotators.ErrUnsupported)", err)
	}
	if err != nil && strings.Contains(err.Error(), canary) {
		t.Errorf("the hook's error shows a daemon secret: %q", err)
	}
	// Negative control: without the daemon's secrets the canary shows, so
	// the plugin really quoted it.
	bare := mustLaunch(t, path, env("TESTPLUGIN_MODE=hook", "TESTPLUGIN_CANARY="+canary))
	if err := bare.p.OnEvent(ctx, event("fail", 1)); err == nil || !strings.Contains(err.Error(), canary) {
		t.Errorf("OnEvent without Secrets = %v; want the canary (the control proves nothing)", err)
	}
	if err := l.p.OnEvent(ctx, event("panic", 1)); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("OnEvent of a hook that panics = %v; want an error saying so", err)
	}
	start := time.Now()
	if err := l.p.OnEvent(ctx, event("hang", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("OnEvent of a hook that hangs = %v; want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("OnEvent of a hook that hangs returned after %s; want about the call timeout", took)
	}
	if err := l.p.OnEvent(ctx, event("ok", 2)); err != nil {
		t.Errorf("OnEvent after a panic and a hang: %v", err)
	}
	if err := l.p.OnEvent(ctx, event("crash", 1)); !errors.Is(err, plugins.ErrExited) {
		t.Errorf("OnEvent of a hook that exits = %v; want plugins.ErrExited", err)
	}
	if strings.Contains(l.logs.String(), canary) {
		t.Errorf("the log shows a daemon secret")
	}
}

func TestSupervisorDeliversEventsToOneHookProcess(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cat := &catalog{}
	cat.set(t, "filehook", binary(t, "filehook"), "FILEHOOK_PATH="+out)
	cat.set(t, "hooky", binary(t, "testplugin"), "TESTPLUGIN_MODE=hook-only")
	sv := newSupervised(t, cat, func(c *plugins.SupervisorConfig) { c.CallTimeout = 400 * time.Millisecond })
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sv.s.OnEvent(ctx, "filehook", event(fmt.Sprintf("s%d", i), int64(i+1)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(lines) != 20 {
		t.Errorf("%d lines in the file; want 20", len(lines))
	}
	if n := sv.metric(t, "rotary_plugin_starts_total", "plugin", "filehook", "result", "ok"); n != 1 {
		t.Errorf("rotary_plugin_starts_total{filehook,ok} = %v; want one process for 20 events", n)
	}
	if n := sv.metric(t, "rotary_plugin_call_duration_seconds", "plugin", "filehook", "method", "on_event"); n != 20 {
		t.Errorf("rotary_plugin_call_duration_seconds{on_event} count = %v; want 20", n)
	}
	// A hook plugin is no rotator.
	if _, err := sv.s.Rotator(ctx, "filehook"); !errors.Is(err, plugins.ErrNotServed) {
		t.Errorf("Rotator(filehook) = %v; want plugins.ErrNotServed", err)
	}
	// A hook that hangs is killed and replaced, like a rotator.
	if err := sv.s.OnEvent(ctx, "hooky", event("ok", 1)); err != nil {
		t.Fatal(err)
	}
	pid1 := sv.status(t, "hooky").Pid
	if err := sv.s.OnEvent(ctx, "hooky", event("hang", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OnEvent of a hook that hangs = %v; want context.DeadlineExceeded", err)
	}
	if left := rotatortest.WaitNoProcessGroup(pid1, 5*time.Second); len(left) > 0 {
		t.Fatalf("the hung hook's group still has %v", left)
	}
	until(t, 10*time.Second, "OnEvent after the hang", func() error {
		err := sv.s.OnEvent(ctx, "hooky", event("ok", 2))
		if err != nil && !strings.Contains(err.Error(), "is restarting") {
			t.Fatalf("OnEvent after the hang = %v", err)
		}
		return err
	})
	if st := sv.status(t, "hooky"); st.Restarts != 1 || st.Pid == pid1 {
		t.Errorf("Status = %+v; want one restart and a new process", st)
	}
	if n := sv.metric(t, "rotary_plugin_call_failures_total", "plugin", "hooky", "method", "on_event", "kind", "deadline"); n != 1 {
		t.Errorf("rotary_plugin_call_failures_total{on_event,deadline} = %v; want 1", n)
	}
}
