package plugins_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

var errNotRegistered = errors.New("not registered")

// catalog is the supervisor's Lookup over a map, changed by tests as a
// re-registration would.
type catalog struct {
	mu      sync.Mutex
	entries map[string]plugins.Config
	lookups atomic.Int32
}

func (c *catalog) set(t *testing.T, name, path string, env ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]plugins.Config{}
	}
	c.entries[name] = plugins.Config{Path: path, SHA256: rotatortest.FileSHA256(t, path), Env: env}
}

func (c *catalog) lookup(_ context.Context, name string) (plugins.Config, error) {
	c.lookups.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, ok := c.entries[name]
	if !ok {
		return plugins.Config{}, fmt.Errorf("plugin %q: %w", name, errNotRegistered)
	}
	return cfg, nil
}

type supervised struct {
	s    *plugins.Supervisor
	reg  *prometheus.Registry
	logs *rotatortest.SyncBuffer
	cat  *catalog

	mu     sync.Mutex
	starts []error // OnStart's
}

func newSupervised(t *testing.T, cat *catalog, mutate func(*plugins.SupervisorConfig)) *supervised {
	t.Helper()
	sv := &supervised{reg: prometheus.NewRegistry(), logs: &rotatortest.SyncBuffer{}, cat: cat}
	cfg := plugins.SupervisorConfig{
		Lookup:       cat.lookup,
		Logger:       slog.New(slog.NewTextHandler(sv.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:   sv.reg,
		StartTimeout: 20 * time.Second,
		CallTimeout:  10 * time.Second,
		BackoffBase:  100 * time.Millisecond,
		BackoffMax:   time.Second,
		OnStart: func(_ string, _ plugins.Info, err error) {
			sv.mu.Lock()
			sv.starts = append(sv.starts, err)
			sv.mu.Unlock()
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := plugins.NewSupervisor(cfg)
	if err != nil {
		t.Fatalf("NewSupervisor: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	sv.s = s
	return sv
}

func (sv *supervised) status(t *testing.T, name string) plugins.Status {
	t.Helper()
	for _, st := range sv.s.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("Status() has no %s: %+v", name, sv.s.Status())
	return plugins.Status{}
}

// metric returns the value of a counter, or the sample count of a
// histogram, with exactly these labels (0 when absent).
func (sv *supervised) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := sv.series(t, name, labels...)
	if m == nil {
		return 0
	}
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

// hasSeries reports whether the registry holds a series of name with
// labels.
func (sv *supervised) hasSeries(t *testing.T, name string, labels ...string) bool {
	t.Helper()
	return sv.series(t, name, labels...) != nil
}

// series returns the first series of name whose labels include labels
// (name, value pairs), or nil.
func (sv *supervised) series(t *testing.T, name string, labels ...string) *dto.Metric {
	t.Helper()
	fams, err := sv.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// until calls f until it returns nil, failing the test after d.
func until(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSupervisorSharesOneProcessAmongConcurrentRotations(t *testing.T) {
	h, _ := templateHarness(t)
	cat := &catalog{}
	cat.set(t, "tpl", binary(t, "template"))
	sv := newSupervised(t, cat, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		a := newAccount(t, h, fmt.Sprintf("sup%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			r, err := sv.s.Rotator(ctx, "tpl")
			if err != nil {
				errs <- err
				return
			}
			if _, ok := r.(rotators.Targeter); !ok {
				errs <- errors.New("the template's rotator is no rotators.Targeter through the supervisor")
				return
			}
			resp, err := r.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
			if err == nil {
				err = r.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value})
			}
			if err == nil {
				err = r.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: resp.Value})
			}
			if err == nil {
				err = r.Finish(ctx, rotators.FinishRequest{Secret: a.sec, Config: a.cfg, Current: resp.Value, Previous: a.current})
			}
			if err == nil {
				if _, lerr := h.Login(ctx, a.current); lerr == nil {
					err = errors.New("the old password still logs in")
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := cat.lookups.Load(); n != 1 {
		t.Errorf("Lookup called %d times; want one launch shared by 50 rotations", n)
	}
	if n := sv.metric(t, "rotary_plugin_starts_total", "plugin", "tpl", "result", "ok"); n != 1 {
		t.Errorf("rotary_plugin_starts_total{ok} = %v; want 1", n)
	}
	// The restart count exists from the first start, at 0, so that
	// increase() in an alert sees the first restart.
	if !sv.hasSeries(t, "rotary_plugin_restarts_total", "plugin", "tpl") || sv.metric(t, "rotary_plugin_restarts_total", "plugin", "tpl") != 0 {
		t.Errorf("rotary_plugin_restarts_total{plugin=tpl} missing or not 0 after one start")
	}
	if n := sv.metric(t, "rotary_plugin_call_duration_seconds", "plugin", "tpl", "method", "set"); n != 50 {
		t.Errorf("rotary_plugin_call_duration_seconds{set} count = %v; want 50", n)
	}
	st := sv.status(t, "tpl")
	if st.State != plugins.StateRunning || st.Pid <= 0 || st.Restarts != 0 || st.StartedAt.IsZero() {
		t.Errorf("Status = %+v; want one running process, no restart", st)
	}
	if len(rotatortest.ProcessGroup(st.Pid)) == 0 {
		t.Errorf("the running plugin's process group %d is empty", st.Pid)
	}
}

func TestSupervisorRestartsACrashedPluginAfterBackoff(t *testing.T) {
	h, _ := templateHarness(t)
	once := filepath.Join(t.TempDir(), "crashed")
	cat := &catalog{}
	cat.set(t, "crashy", binary(t, "testplugin"), "TESTPLUGIN_MODE=crash-set", "TESTPLUGIN_ONCE="+once)
	sv := newSupervised(t, cat, func(c *plugins.SupervisorConfig) { c.BackoffBase, c.BackoffMax = 700*time.Millisecond, time.Second })
	ctx := context.Background()
	r, err := sv.s.Rotator(ctx, "crashy")
	if err != nil {
		t.Fatal(err)
	}
	pid1 := sv.status(t, "crashy").Pid
	a := newAccount(t, h, "supcrash")
	resp, err := r.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatal(err)
	}
	set := rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value}
	err = r.Set(ctx, set)
	if !errors.Is(err, plugins.ErrExited) {
		t.Fatalf("Set through a plugin that crashes = %v; want plugins.ErrExited", err)
	}
	if strings.Contains(err.Error(), password(t, resp.Value)) {
		t.Fatalf("the error shows the pending password")
	}
	// During the backoff a call fails at once, saying why.
	start := time.Now()
	err = r.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current})
	if err == nil || !strings.Contains(err.Error(), `plugin "crashy" is restarting (in `) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("a call during the backoff = %v; want `plugin \"crashy\" is restarting (in …) after: …exited…`", err)
	}
	if time.Since(start) > 200*time.Millisecond {
		t.Errorf("a call during the backoff took %s; want it to fail at once", time.Since(start))
	}
	if st := sv.status(t, "crashy"); st.State != plugins.StateBackoff || st.Restarts != 1 || st.Pid != 0 || !strings.Contains(st.LastError, "exited") {
		t.Errorf("Status after the crash = %+v; want backoff, one restart, the reason", st)
	}
	if left := rotatortest.WaitNoProcessGroup(pid1, 5*time.Second); len(left) > 0 {
		t.Errorf("the crashed plugin's group %d still has %v", pid1, left)
	}
	// After the backoff the next call launches again and the step works.
	until(t, 10*time.Second, "Set after the backoff", func() error {
		err := r.Set(ctx, set)
		if err != nil && !strings.Contains(err.Error(), "is restarting") {
			t.Fatalf("Set after the crash = %v; want the backoff error, then success", err)
		}
		return err
	})
	if err := r.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: resp.Value}); err != nil {
		t.Fatalf("Test(pending) after the restart: %v", err)
	}
	st := sv.status(t, "crashy")
	if st.State != plugins.StateRunning || st.Pid == pid1 || st.Pid <= 0 || st.Restarts != 1 {
		t.Errorf("Status after the restart = %+v; want running, a new pid, one restart", st)
	}
	if n := sv.metric(t, "rotary_plugin_restarts_total", "plugin", "crashy"); n != 1 {
		t.Errorf("rotary_plugin_restarts_total = %v; want 1", n)
	}
	if n := sv.metric(t, "rotary_plugin_call_failures_total", "plugin", "crashy", "method", "set", "kind", "exited"); n != 1 {
		t.Errorf("rotary_plugin_call_failures_total{set,exited} = %v; want 1", n)
	}
	if n := sv.metric(t, "rotary_plugin_starts_total", "plugin", "crashy", "result", "ok"); n != 2 {
		t.Errorf("rotary_plugin_starts_total{ok} = %v; want 2", n)
	}
}

func TestSupervisorKillsAndReplacesAHungPlugin(t *testing.T) {
	h, _ := templateHarness(t)
	cat := &catalog{}
	cat.set(t, "hung", binary(t, "testplugin"), "TESTPLUGIN_MODE=hang-test")
	sv := newSupervised(t, cat, func(c *plugins.SupervisorConfig) { c.CallTimeout = 400 * time.Millisecond })
	ctx := context.Background()
	r, err := sv.s.Rotator(ctx, "hung")
	if err != nil {
		t.Fatal(err)
	}
	pid1 := sv.status(t, "hung").Pid
	a := newAccount(t, h, "suphang")
	test := rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current}

	// Negative control: the caller's own shorter deadline fails the call
	// but says nothing of the plugin, which keeps running.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := r.Test(short, test); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Test with a 50ms context = %v; want context.DeadlineExceeded", err)
	}
	if st := sv.status(t, "hung"); st.Pid != pid1 || st.Restarts != 0 {
		t.Fatalf("the caller's deadline restarted the plugin: %+v", st)
	}

	// The plugin's call timeout cuts a hung call: the process is killed.
	start := time.Now()
	err = r.Test(ctx, test)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Test that hangs = %v; want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Test that hangs returned after %s; want about the call timeout", took)
	}
	if left := rotatortest.WaitNoProcessGroup(pid1, 5*time.Second); len(left) > 0 {
		t.Fatalf("the hung plugin's group %d still has %v", pid1, left)
	}
	if st := sv.status(t, "hung"); st.Restarts != 1 || !strings.Contains(st.LastError, "hangs") {
		t.Errorf("Status after the hang = %+v; want one restart saying it hangs", st)
	}
	if n := sv.metric(t, "rotary_plugin_call_failures_total", "plugin", "hung", "method", "test", "kind", "deadline"); n != 2 {
		t.Errorf("rotary_plugin_call_failures_total{test,deadline} = %v; want 2", n)
	}
	// It is replaced after the backoff.
	until(t, 10*time.Second, "ValidateConfig after the hang", func() error {
		err := r.(rotators.ConfigValidator).ValidateConfig(ctx, "basic-auth", a.cfg)
		if err != nil && !strings.Contains(err.Error(), "is restarting") {
			t.Fatalf("ValidateConfig after the hang = %v", err)
		}
		return err
	})
	if st := sv.status(t, "hung"); st.State != plugins.StateRunning || st.Pid == pid1 {
		t.Errorf("Status after the replacement = %+v; want a new running process", st)
	}
}

func TestSupervisorRefusesAFileChangedAfterTheFirstStart(t *testing.T) {
	path := binary(t, "testplugin")
	marker := filepath.Join(t.TempDir(), "started")
	cat := &catalog{}
	cat.set(t, "changing", path, "TESTPLUGIN_MARKER="+marker)
	sv := newSupervised(t, cat, nil)
	ctx := context.Background()
	r, err := sv.s.Rotator(ctx, "changing")
	if err != nil {
		t.Fatal(err)
	}
	// Positive control: the registered file ran and wrote its marker.
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the plugin started but wrote no marker (the check below proves nothing): %v", err)
	}
	os.Remove(marker)
	// Someone replaces the file; the supervisor restarts the plugin.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".new", append(b, "tampered"...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	sv.s.Stop("changing")
	err = r.(rotators.ConfigValidator).ValidateConfig(ctx, "basic-auth", []byte(`{}`))
	if !errors.Is(err, plugins.ErrChecksum) || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("a call after the file changed = %v; want plugins.ErrChecksum", err)
	}
	if _, serr := os.Stat(marker); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("the changed file ran (its marker exists): %v", serr)
	}
	if n := sv.metric(t, "rotary_plugin_starts_total", "plugin", "changing", "result", "checksum"); n != 1 {
		t.Errorf("rotary_plugin_starts_total{checksum} = %v; want 1", n)
	}
	sv.mu.Lock()
	starts := slices.Clone(sv.starts)
	sv.mu.Unlock()
	if len(starts) != 2 || starts[0] != nil || !errors.Is(starts[1], plugins.ErrChecksum) {
		t.Errorf("OnStart saw %v; want a success, then ErrChecksum", starts)
	}
	if st := sv.status(t, "changing"); st.State != plugins.StateBackoff || !strings.Contains(st.LastError, "sha256") {
		t.Errorf("Status = %+v; want backoff with the checksum reason", st)
	}
	// A re-registration with the new sum takes effect at the next start.
	cat.set(t, "changing", path, "TESTPLUGIN_MARKER="+marker)
	sv.s.Stop("changing")
	if _, err := sv.s.Info(ctx, "changing"); err != nil {
		t.Fatalf("Info after re-registration: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the re-registered plugin did not start: %v", err)
	}
}

func TestSupervisorStopAndCloseKillTheProcessGroup(t *testing.T) {
	cat := &catalog{}
	cat.set(t, "kids", binary(t, "testplugin"), "TESTPLUGIN_MODE=child")
	sv := newSupervised(t, cat, nil)
	ctx := context.Background()
	group := func() int {
		t.Helper()
		if _, err := sv.s.Info(ctx, "kids"); err != nil {
			t.Fatal(err)
		}
		pgid := sv.status(t, "kids").Pid
		until(t, 10*time.Second, "the plugin's child in its group", func() error {
			if n := len(rotatortest.ProcessGroup(pgid)); n < 2 {
				return fmt.Errorf("%d processes", n)
			}
			return nil
		})
		return pgid
	}
	pgid := group()
	sv.s.Stop("kids")
	if left := rotatortest.WaitNoProcessGroup(pgid, 5*time.Second); len(left) > 0 {
		t.Fatalf("after Stop, processes %v of the plugin's group are left", left)
	}
	if st := sv.status(t, "kids"); st.State != plugins.StateStopped || st.Pid != 0 {
		t.Errorf("Status after Stop = %+v; want stopped", st)
	}
	// The next use launches again, at once (no backoff after Stop).
	pgid2 := group()
	if pgid2 == pgid {
		t.Fatalf("the same pid after Stop")
	}
	if err := sv.s.Close(); err != nil {
		t.Fatal(err)
	}
	if left := rotatortest.WaitNoProcessGroup(pgid2, 5*time.Second); len(left) > 0 {
		t.Fatalf("after Close, processes %v of the plugin's group are left", left)
	}
	if _, err := sv.s.Info(ctx, "kids"); !errors.Is(err, plugins.ErrClosed) {
		t.Errorf("Info after Close = %v; want plugins.ErrClosed", err)
	}
	if _, err := sv.s.Rotator(ctx, "kids"); !errors.Is(err, plugins.ErrClosed) {
		t.Errorf("Rotator after Close = %v; want plugins.ErrClosed", err)
	}
	if err := sv.s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestSupervisorLookupErrorsAndScrubbedStatus(t *testing.T) {
	canary := "canary-supervisor-secret-3141"
	cat := &catalog{}
	sv := newSupervised(t, cat, func(c *plugins.SupervisorConfig) {
		c.Secrets = func() []sensitive.Bytes { return []sensitive.Bytes{sensitive.Bytes(canary)} }
		c.Lookup = func(ctx context.Context, name string) (plugins.Config, error) {
			if name == "leaky" {
				return plugins.Config{Path: "/nonexistent/" + canary, SHA256: strings.Repeat("ab", 32)}, nil
			}
			return cat.lookup(ctx, name)
		}
	})
	ctx := context.Background()
	// Lookup's error is returned as is; nothing started, so no backoff
	// and no entry in Status.
	for range 2 {
		if _, err := sv.s.Info(ctx, "ghost"); !errors.Is(err, errNotRegistered) {
			t.Fatalf("Info of an unregistered plugin = %v; want Lookup's error as is", err)
		}
	}
	if st := sv.s.Status(); len(st) != 0 {
		t.Errorf("Status after lookups of an unregistered plugin = %+v; want nothing", st)
	}
	// Once registered, it starts at once.
	cat.set(t, "ghost", binary(t, "template"))
	if _, err := sv.s.Info(ctx, "ghost"); err != nil {
		t.Fatalf("Info right after registration: %v", err)
	}
	// A failed start: its error and Status never show the daemon's secret.
	_, err := sv.s.Rotator(ctx, "leaky")
	if err == nil || !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), canary) || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("Rotator of a plugin whose file is missing = %v; want os.ErrNotExist, the daemon's secret redacted", err)
	}
	st := sv.status(t, "leaky")
	if st.State != plugins.StateBackoff || strings.Contains(st.LastError, canary) || !strings.Contains(st.LastError, "/nonexistent/") {
		t.Errorf("Status = %+v; want backoff, the reason with the daemon's secret redacted", st)
	}
	if strings.Contains(sv.logs.String(), canary) {
		t.Errorf("the log shows the daemon's secret")
	}
}

// supHostMain is a daemon stand-in run in a child process of the test: a
// supervisor with a state directory starts the plugin at path (which
// starts a child), prints its pid and waits to be killed.
func supHostMain(path, stateDir string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	s, err := plugins.NewSupervisor(plugins.SupervisorConfig{
		StateDir: stateDir,
		Lookup: func(context.Context, string) (plugins.Config, error) {
			return plugins.Config{Path: path, SHA256: sha256Hex(b), Env: []string{"TESTPLUGIN_MODE=child"}}, nil
		},
	})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := s.Info(context.Background(), "left"); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(s.Status()[0].Pid)
	select {}
}

func TestNewSupervisorKillsWhatAKilledDaemonLeft(t *testing.T) {
	path := binary(t, "testplugin")
	stateDir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(self)
	host.Env = append(os.Environ(), "PLUGINS_TEST_SUP_HOST="+path, "PLUGINS_TEST_SUP_STATE="+stateDir)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the host printed nothing: %v", err)
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the host said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	until(t, 10*time.Second, "the plugin and its child", func() error {
		if n := len(rotatortest.ProcessGroup(pgid)); n < 2 {
			return fmt.Errorf("%d processes in group %d", n, pgid)
		}
		return nil
	})
	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	// The plugin dies with its host; its child is left behind.
	until(t, 5*time.Second, "the plugin's end", func() error {
		if slices.Contains(rotatortest.ProcessGroup(pgid), pgid) {
			return errors.New("the plugin runs")
		}
		return nil
	})
	if len(rotatortest.ProcessGroup(pgid)) == 0 {
		t.Fatalf("nothing of the plugin's group is left: the test proves nothing")
	}
	// The next daemon's supervisor kills it.
	logs := &rotatortest.SyncBuffer{}
	s, err := plugins.NewSupervisor(plugins.SupervisorConfig{
		StateDir: stateDir, Lookup: (&catalog{}).lookup,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if left := rotatortest.WaitNoProcessGroup(pgid, 5*time.Second); len(left) > 0 {
		t.Fatalf("NewSupervisor left %v of the plugin's group running", left)
	}
	if files, _ := filepath.Glob(filepath.Join(stateDir, "*")); len(files) > 0 {
		t.Errorf("records left in the state directory: %v", files)
	}
	if !strings.Contains(logs.String(), "killed process group") {
		t.Errorf("the log does not say what was killed:\n%s", logs.String())
	}
}

func TestNewSupervisorChecksTheRecordedExecutable(t *testing.T) {
	stateDir := t.TempDir()
	// A plugin group a previous daemon left, its leader running the
	// recorded executable (a copy of sleep stands for the plugin).
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "fakeplugin")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	startGroup := func(path string) *exec.Cmd {
		cmd := exec.Command(path, "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		return cmd
	}
	left := startGroup(fake)
	// A recorded pid that now runs another executable: the pid was
	// reused, and it must not be killed.
	reused := startGroup(sleep)
	// A plugin of another daemon that shares the directory and runs.
	live := startGroup(fake)
	otherDaemon := startGroup(sleep)
	const gone = 0 // the daemon that wrote the record is gone
	if err := plugins.WriteStateRecord(stateDir, "left", left.Process.Pid, fake, gone); err != nil {
		t.Fatal(err)
	}
	if err := plugins.WriteStateRecord(stateDir, "reused", reused.Process.Pid, binary(t, "testplugin"), gone); err != nil {
		t.Fatal(err)
	}
	if err := plugins.WriteStateRecord(stateDir, "live", live.Process.Pid, fake, otherDaemon.Process.Pid); err != nil {
		t.Fatal(err)
	}
	logs := &rotatortest.SyncBuffer{}
	s, err := plugins.NewSupervisor(plugins.SupervisorConfig{
		StateDir: stateDir, Lookup: (&catalog{}).lookup,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if pids := rotatortest.WaitNoProcessGroup(left.Process.Pid, 5*time.Second); len(pids) > 0 {
		t.Fatalf("the group the record names (leader running the recorded executable) is still running: %v", pids)
	}
	if !slices.Contains(rotatortest.ProcessGroup(reused.Process.Pid), reused.Process.Pid) {
		t.Fatalf("NewSupervisor killed pid %d, which runs another executable than the recorded one", reused.Process.Pid)
	}
	if !slices.Contains(rotatortest.ProcessGroup(live.Process.Pid), live.Process.Pid) {
		t.Fatalf("NewSupervisor killed the plugin of a daemon that still runs")
	}
	if !strings.Contains(logs.String(), "not the plugin; not killed") {
		t.Errorf("the log does not say why the reused pid was spared:\n%s", logs.String())
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSupervisorCloseDuringAStartLeavesNothing(t *testing.T) {
	script := filepath.Join(t.TempDir(), "slow")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n/bin/sleep 300 &\n/bin/sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cat := &catalog{}
	cat.set(t, "slow", script)
	sv := newSupervised(t, cat, func(c *plugins.SupervisorConfig) { c.StartTimeout = 2 * time.Second })
	errc := make(chan error, 2)
	for range 2 { // a start, and a caller waiting for it
		go func() {
			_, err := sv.s.Info(context.Background(), "slow")
			errc <- err
		}()
	}
	running := func() []int {
		var out []int
		for _, pid := range allPids() {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmd), script) {
				out = append(out, pid)
			}
		}
		return out
	}
	until(t, 10*time.Second, "the start under way", func() error {
		if len(running()) == 0 {
			return errors.New("not started")
		}
		return nil
	})
	start := time.Now()
	if err := sv.s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("Close took %s; want at most about the start timeout", took)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, plugins.ErrClosed) {
			t.Errorf("Info during Close = %v; want plugins.ErrClosed", err)
		}
	}
	until(t, 5*time.Second, "nothing of the start left", func() error {
		if pids := running(); len(pids) > 0 {
			return fmt.Errorf("processes %v", pids)
		}
		return nil
	})
}
