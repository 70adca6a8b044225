package plugins_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
	"github.com/rotary-secrets/rotary/plugins/proto"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// The binaries are built once per test run (go build's cache keeps it
// fast) and copied where a test changes them.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	if path := os.Getenv("PLUGINS_TEST_HOST_PLUGIN"); path != "" {
		hostMain(path)
		return
	}
	if path := os.Getenv("PLUGINS_TEST_SUP_HOST"); path != "" {
		supHostMain(path, os.Getenv("PLUGINS_TEST_SUP_STATE"))
		return
	}
	if path := os.Getenv("PLUGINS_TEST_BARE_PARENT"); path != "" {
		bareParentMain(path)
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "rotary-plugins-test-")
		if buildErr != nil {
			return
		}
		for n, pkg := range map[string]string{"template": "./examples/template", "testplugin": "./internal/testplugin", "filehook": "./examples/filehook"} {
			tb := &builder{}
			out := filepath.Join(binDir, n)
			if err := tb.build(pkg, out); err != nil {
				buildErr = err
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build the test plugins: %v", buildErr)
	}
	// A private copy, so that a test may change it.
	src, err := os.ReadFile(filepath.Join(binDir, name))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// templateHarness: the template plugin's account store in a temporary
// directory.
func templateHarness(t *testing.T) (rotatortest.Harness, rotator.Store) {
	st := rotator.Store{Dir: t.TempDir()}
	return rotatortest.Harness{
		SecretType: "basic-auth",
		NewAccount: func(t *testing.T, username string, alsoDrop ...string) rotators.Value {
			pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Put(username, string(pw.Reveal())); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, u := range append([]string{username}, alsoDrop...) {
					_ = st.Remove(u)
				}
			})
			return rotator.Value(username, string(pw.Reveal()))
		},
		Login: func(_ context.Context, v rotators.Value) (string, error) {
			var c rotator.Credentials
			if err := json.Unmarshal(v.Reveal(), &c); err != nil {
				return "", err
			}
			return c.Username, st.Check(c.Username, c.Password)
		},
		Strategies: []string{rotators.StrategySingleUser},
		Config: func(strategy, _, _ string) json.RawMessage {
			return json.RawMessage(fmt.Sprintf(`{"accounts_dir":%q,"strategy":%q}`, st.Dir, strategy))
		},
		OldKeepsWorking: func(string) bool { return false },
	}, st
}

func TestTemplateConformanceThroughGRPC(t *testing.T) {
	h, _ := templateHarness(t)
	rotatortest.RunPlugin(t, binary(t, "template"), nil, h)
}

type launched struct {
	p    *plugins.Plugin
	logs *rotatortest.SyncBuffer
}

func launch(t *testing.T, path string, mutate func(*plugins.Config)) (launched, error) {
	t.Helper()
	logs := &rotatortest.SyncBuffer{}
	cfg := plugins.Config{
		Path: path, SHA256: rotatortest.FileSHA256(t, path), StartTimeout: 20 * time.Second, CallTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := plugins.Launch(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { p.Close() })
	}
	return launched{p, logs}, err
}

func mustLaunch(t *testing.T, path string, mutate func(*plugins.Config)) launched {
	t.Helper()
	l, err := launch(t, path, mutate)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	return l
}

func env(kv ...string) func(*plugins.Config) {
	return func(c *plugins.Config) { c.Env = append(c.Env, kv...) }
}

// account makes a basic-auth account in the template's store and the
// requests of one rotation of it.
type account struct {
	sec     rotators.Secret
	cfg     json.RawMessage
	current rotators.Value
}

func newAccount(t *testing.T, h rotatortest.Harness, user string) account {
	return account{
		sec:     rotators.Secret{Name: "test/" + user, Type: "basic-auth", Region: "default", Version: 2},
		cfg:     h.Config(rotators.StrategySingleUser, "", ""),
		current: h.NewAccount(t, user),
	}
}

func password(t *testing.T, v rotators.Value) string {
	var c rotator.Credentials
	if err := json.Unmarshal(v.Reveal(), &c); err != nil || c.Password == "" {
		t.Fatalf("not a basic-auth value")
	}
	return c.Password
}

func TestChecksumMismatchIsRefusedAndNothingRuns(t *testing.T) {
	path := binary(t, "testplugin")
	marker := filepath.Join(t.TempDir(), "started")
	registered := rotatortest.FileSHA256(t, path)
	// The file changes after registration.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	_, err = launch(t, path, func(c *plugins.Config) {
		c.SHA256 = registered
		c.Env = []string{"TESTPLUGIN_MARKER=" + marker}
	})
	if !errors.Is(err, plugins.ErrChecksum) || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), registered) {
		t.Fatalf("Launch of a changed file = %v; want plugins.ErrChecksum naming the registered sha256", err)
	}
	if _, serr := os.Stat(marker); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("the changed plugin ran (its start marker exists): %v", serr)
	}
	// Negative control: with the file's own sha256 it starts and runs.
	mustLaunch(t, path, env("TESTPLUGIN_MARKER="+marker))
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the plugin started but wrote no marker (the check above proves nothing): %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	path := binary(t, "testplugin")
	for _, tc := range []struct {
		name   string
		mutate func(*plugins.Config)
		want   string
	}{
		{"relative path", func(c *plugins.Config) { c.Path = "testplugin" }, "field Path"},
		{"no path", func(c *plugins.Config) { c.Path = "" }, "field Path"},
		{"bad sha256", func(c *plugins.Config) { c.SHA256 = "abc" }, "field SHA256"},
		{"reserved env", env("ROTARY_ROOT_KEY=x"), "field Env"},
		{"handshake env", env("PLUGIN_MIN_PORT=1"), "field Env"},
		{"not KEY=VALUE", env("JUSTAKEY"), "field Env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := launch(t, path, tc.mutate); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Launch = %v; want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestEnvironmentIsOnlyWhatIsListed(t *testing.T) {
	t.Setenv("ROTARY_CANARY", "canary-env-secret")
	t.Setenv("ROTARY_ROOT_KEY", "canary-root-key")
	t.Setenv("SOME_DAEMON_VAR", "daemon")
	path := binary(t, "testplugin")
	marker := filepath.Join(t.TempDir(), "env")
	mustLaunch(t, path, env("TESTPLUGIN_MARKER="+marker, "LISTED=yes"))
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(string(b), "\x00") {
		k, _, _ := strings.Cut(kv, "=")
		seen[k] = true
		switch {
		case strings.HasPrefix(k, "ROTARY_"), strings.Contains(kv, "canary"):
			t.Errorf("the plugin sees the daemon's %s", k)
		case k == "LISTED", k == "TESTPLUGIN_MARKER", strings.HasPrefix(k, "PLUGIN_"):
		default:
			t.Errorf("the plugin sees %s, which its config does not list", k)
		}
	}
	if !seen["LISTED"] || !seen["PLUGIN_ROTARY_ROTATOR"] {
		t.Errorf("the plugin's environment %v lacks the listed variable or the handshake cookie", seen)
	}
}

func TestCrashMidSetFailsCleanlyAndNextLaunchWorks(t *testing.T) {
	path := binary(t, "testplugin")
	h, _ := templateHarness(t)
	once := filepath.Join(t.TempDir(), "crashed")
	vars := env("TESTPLUGIN_MODE=crash-set", "TESTPLUGIN_ONCE="+once)
	l := mustLaunch(t, path, vars)
	a := newAccount(t, h, "crash")
	ctx := context.Background()
	resp, err := l.p.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	err = l.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value})
	if !errors.Is(err, plugins.ErrExited) {
		t.Fatalf("Set through a plugin that exits = %v; want plugins.ErrExited", err)
	}
	if strings.Contains(err.Error(), password(t, resp.Value)) {
		t.Fatalf("the error shows the pending password")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !l.p.Exited() {
		if time.Now().After(deadline) {
			t.Fatalf("Exited() stays false after the crash")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := l.p.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current}); !errors.Is(err, plugins.ErrExited) {
		t.Errorf("a call after the crash = %v; want plugins.ErrExited at once", err)
	}
	l.p.Close()
	// A new start of the same plugin works, and the rotation completes.
	l2 := mustLaunch(t, path, vars)
	if err := l2.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value}); err != nil {
		t.Fatalf("Set after the restart: %v", err)
	}
	if err := l2.p.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: resp.Value}); err != nil {
		t.Fatalf("Test(pending) after the restart: %v", err)
	}
	if err := l2.p.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current}); err == nil {
		t.Fatalf("Test(old) succeeded after Set; want it refused")
	}
}

func TestPanicFailsTheCallOnly(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE=panic-set"))
	a := newAccount(t, h, "panic")
	ctx := context.Background()
	resp, err := l.p.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatal(err)
	}
	err = l.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value})
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Set that panics = %v; want an error saying it panicked", err)
	}
	pw := password(t, resp.Value)
	if strings.Contains(err.Error(), pw) || strings.Contains(l.logs.String(), pw) {
		t.Fatalf("the panic value (the pending password) reached the error or the log")
	}
	if err := l.p.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current}); err != nil {
		t.Fatalf("the plugin does not answer after a panic: %v", err)
	}
}

func TestHangIsCutByTheCallDeadline(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "testplugin"), func(c *plugins.Config) {
		c.Env = []string{"TESTPLUGIN_MODE=hang-test"}
		c.CallTimeout = 300 * time.Millisecond
	})
	a := newAccount(t, h, "hang")
	start := time.Now()
	err := l.p.Test(context.Background(), rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Test that hangs = %v; want context.DeadlineExceeded", err)
	}
	if took > 5*time.Second {
		t.Fatalf("Test that hangs returned after %s; want about the call timeout", took)
	}
	// A shorter deadline of the caller wins.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := l.p.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: a.current}); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("Test with a 50ms context = %v after %s", err, time.Since(start))
	}
	// Negative control: other calls still work, and Close ends the
	// process with its stuck call.
	if err := l.p.ValidateConfig(context.Background(), "basic-auth", a.cfg); err != nil {
		t.Fatalf("ValidateConfig while a Test hangs: %v", err)
	}
	l.p.Close()
	if pids := rotatortest.WaitNoProcessGroup(l.p.Pid(), 5*time.Second); len(pids) > 0 {
		t.Fatalf("after Close, processes %v are left", pids)
	}
}

func TestPluginErrorsAndLogsNeverShowValues(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE=echo"))
	a := newAccount(t, h, "echo")
	ctx := context.Background()
	resp, err := l.p.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatal(err)
	}
	err = l.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value})
	if err == nil {
		t.Fatal("Set of the echo plugin succeeded; want its error")
	}
	secrets := []string{password(t, resp.Value), password(t, a.current), string(resp.Value.Reveal()), string(a.current.Reveal())}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("the host's error shows a value the plugin echoed: %q", strings.ReplaceAll(err.Error(), s, "<LEAK>"))
		}
	}
	if !strings.Contains(err.Error(), "[redacted]") || !strings.Contains(err.Error(), "cannot set") {
		t.Errorf("error %q: want the plugin's message with the values redacted", err)
	}
	if !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("error %q: errors.Is(rotators.ErrUnsupported) is false across the wire", err)
	}
	// The plugin printed the values to stderr: the lines reach the log,
	// redacted.
	deadline := time.Now().Add(10 * time.Second)
	for !(strings.Contains(l.logs.String(), "setting") && strings.Contains(l.logs.String(), "json line")) {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's stderr lines never reached the log:\n%s", l.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := l.logs.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("the log shows a value the plugin printed:\n%s", strings.ReplaceAll(out, s, "<LEAK>"))
		}
	}
	if !strings.Contains(out, "plugin=") || !strings.Contains(out, "[redacted]") {
		t.Errorf("log lines lack the plugin's name or the redaction:\n%s", out)
	}
}

func TestCloseKillsTheWholeProcessGroup(t *testing.T) {
	l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE=child"))
	pgid := l.p.Pid()
	deadline := time.Now().Add(10 * time.Second)
	for len(rotatortest.ProcessGroup(pgid)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's child never showed up in group %d: %v", pgid, rotatortest.ProcessGroup(pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pgid == os.Getpid() || slices.Contains(rotatortest.ProcessGroup(pgid), os.Getpid()) {
		t.Fatalf("the plugin shares the test's process group")
	}
	l.p.Close()
	l.p.Close() // idempotent
	if pids := rotatortest.WaitNoProcessGroup(pgid, 5*time.Second); len(pids) > 0 {
		t.Fatalf("after Close, processes %v of the plugin's group are left", pids)
	}
	if _, err := l.p.Create(context.Background(), rotators.CreateRequest{}); !errors.Is(err, plugins.ErrExited) {
		t.Errorf("Create after Close = %v; want plugins.ErrExited", err)
	}
}

func TestStartTimeoutBoundsAPluginThatNeverAnswers(t *testing.T) {
	script := filepath.Join(t.TempDir(), "silent")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n/bin/sleep 300 &\n/bin/sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := launch(t, script, func(c *plugins.Config) { c.StartTimeout = time.Second })
	if err == nil {
		t.Fatal("Launch of a plugin that never answers succeeded")
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("Launch gave up after %s; want about the start timeout", took)
	}
	// A shorter deadline of the caller's context wins.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = plugins.Launch(ctx, plugins.Config{Path: script, SHA256: rotatortest.FileSHA256(t, script), StartTimeout: time.Minute})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Launch with a 500ms context = %v after %s", err, time.Since(start))
	}
	// Nothing is left: neither the script nor its background child.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := false
		for _, pid := range allPids() {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmd), script) {
				left = true
			}
		}
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin that timed out is still running")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func TestInfoConfigAndTargetThroughGRPC(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "template"), nil)
	info := l.p.Info()
	if info.Name != "template" || !slices.Equal(info.SecretTypes, []string{"basic-auth"}) || !info.Targets || !info.ValidatesConfig ||
		!slices.Equal(info.IdentityFields, []string{"accounts_dir", "username"}) || !json.Valid(info.ConfigExample) {
		t.Fatalf("Info = %+v", info)
	}
	if _, ok := l.p.Rotator().(rotators.Targeter); !ok {
		t.Fatalf("Rotator() of a plugin with Target is not a rotators.Targeter")
	}
	ctx := context.Background()
	if err := l.p.ValidateConfig(ctx, "basic-auth", json.RawMessage(`{"accounts_dir":"relative"}`)); err == nil || !strings.Contains(err.Error(), "accounts_dir") {
		t.Errorf("ValidateConfig(relative accounts_dir) = %v; want an error naming accounts_dir", err)
	}
	if err := l.p.ValidateConfig(ctx, "basic-auth", json.RawMessage(`{"accounts_dir":"/x","strategy":"admin"}`)); !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("ValidateConfig(strategy admin) = %v; want rotators.ErrUnsupported across the wire", err)
	}
	a := newAccount(t, h, "target")
	if err := l.p.ValidateConfig(ctx, "basic-auth", a.cfg); err != nil {
		t.Errorf("ValidateConfig(good) = %v", err)
	}
	tg, err := l.p.Target(ctx, rotators.TargetRequest{SecretType: "basic-auth", Config: a.cfg, Value: a.current})
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := tg.Field("username"); f.Value != "target" {
		t.Errorf("Target = %s; want username target", tg)
	}
	if f, _ := tg.Field("accounts_dir"); !f.Server {
		t.Errorf("Target = %+v; want accounts_dir marked as the server", tg)
	}
}

func TestConcurrentRotationsThroughOnePlugin(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "template"), nil)
	r := l.p.Rotator()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		a := newAccount(t, h, fmt.Sprintf("par%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
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
}

type builder struct{}

func (builder) build(pkg, out string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// hostMain is a daemon stand-in run in a child process of the test: it
// launches the plugin at path, prints its pid and waits to be killed.
func hostMain(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	sum := sha256.Sum256(b)
	p, err := plugins.Launch(context.Background(), plugins.Config{Path: path, SHA256: hex.EncodeToString(sum[:]), Env: []string{"TESTPLUGIN_MODE=child"}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(p.Pid())
	select {}
}

func TestKilledHostLeavesNoPluginProcess(t *testing.T) {
	path := binary(t, "testplugin")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(self)
	host.Env = append(os.Environ(), "PLUGINS_TEST_HOST_PLUGIN="+path)
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
	deadline := time.Now().Add(10 * time.Second)
	for len(rotatortest.ProcessGroup(pgid)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin and its child never showed up in group %d", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	// The plugin dies with its host (parent-death signal, the SDK's
	// watchdog). Its own child is not the host's child: only the plugin's
	// end matters here, so look at the plugin's pid.
	deadline = time.Now().Add(5 * time.Second)
	for slices.Contains(rotatortest.ProcessGroup(pgid), pgid) {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin (pid %d) outlived its host killed with SIGKILL", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Clean up the orphaned child of the plugin.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func TestPluginWithoutTargetIsNoTargeter(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE=no-target"))
	info := l.p.Info()
	if info.Name != "plain" || info.Targets || info.ValidatesConfig || len(info.IdentityFields) > 0 {
		t.Fatalf("Info = %+v; want a plugin without Target and ValidateConfig", info)
	}
	r := l.p.Rotator()
	if _, ok := r.(rotators.Targeter); ok {
		t.Fatalf("Rotator() of a plugin without Target is a rotators.Targeter: the engine would refuse to bind it")
	}
	if _, ok := r.(rotators.ConfigValidator); !ok {
		t.Errorf("Rotator() is no rotators.ConfigValidator")
	}
	a := newAccount(t, h, "plain")
	if _, err := l.p.Target(context.Background(), rotators.TargetRequest{SecretType: "basic-auth", Config: a.cfg, Value: a.current}); !errors.Is(err, rotators.ErrUnsupported) {
		t.Errorf("Target = %v; want rotators.ErrUnsupported", err)
	}
	// The steps still work.
	ctx := context.Background()
	resp, err := r.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value}); err != nil {
		t.Fatal(err)
	}
	if err := r.Test(ctx, rotators.TestRequest{Secret: a.sec, Config: a.cfg, Value: resp.Value}); err != nil {
		t.Fatal(err)
	}
}

func TestProtocolViolations(t *testing.T) {
	h, _ := templateHarness(t)
	path := binary(t, "testplugin")
	marker := filepath.Join(t.TempDir(), "started")
	_, err := launch(t, path, env("TESTPLUGIN_MODE=bad-info", "TESTPLUGIN_MARKER="+marker))
	if !errors.Is(err, plugins.ErrProtocol) || !strings.Contains(err.Error(), "identity_fields") {
		t.Fatalf("Launch of a plugin declaring identity fields without Target = %v; want plugins.ErrProtocol naming identity_fields", err)
	}
	if _, serr := os.Stat(marker); serr != nil {
		t.Fatalf("the plugin never started, so the refusal proves nothing: %v", serr)
	}
	l := mustLaunch(t, path, env("TESTPLUGIN_MODE=bad-target"))
	a := newAccount(t, h, "badtarget")
	if _, err := l.p.Target(context.Background(), rotators.TargetRequest{SecretType: "basic-auth", Config: a.cfg, Value: a.current}); !errors.Is(err, plugins.ErrProtocol) || !strings.Contains(err.Error(), "undeclared") {
		t.Errorf("Target returning an undeclared field = %v; want plugins.ErrProtocol naming it", err)
	}
}

// bareParentMain starts the plugin at path the way go-plugin would, but
// without a parent-death signal, prints its pid and waits to be killed:
// only the SDK's watchdog can end the plugin then.
func bareParentMain(path string) {
	cmd := exec.Command(path)
	cmd.Env = []string{
		proto.Handshake.MagicCookieKey + "=" + proto.Handshake.MagicCookieValue,
		"PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000", "PLUGIN_PROTOCOL_VERSIONS=1",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(cmd.Process.Pid)
	select {}
}

func TestSDKWatchdogEndsAnOrphanedPlugin(t *testing.T) {
	path := binary(t, "template")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(self)
	parent.Env = append(os.Environ(), "PLUGINS_TEST_BARE_PARENT="+path)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the parent printed nothing: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the parent said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	// The plugin serves (negative control: it does not just exit).
	time.Sleep(500 * time.Millisecond) // let it pass its start; the check below is the condition
	if !slices.Contains(rotatortest.ProcessGroup(pid), pid) {
		t.Fatalf("the plugin (pid %d) did not keep running under its parent", pid)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	if left := rotatortest.WaitNoProcessGroup(pid, 5*time.Second); len(left) > 0 {
		t.Fatalf("the plugin outlived its parent (no parent-death signal here): the SDK's watchdog did not end it")
	}
}

func TestCrashOutputIsScrubbed(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE=crash-panic"))
	a := newAccount(t, h, "crashpanic")
	ctx := context.Background()
	resp, err := l.p.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatal(err)
	}
	err = l.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value})
	if !errors.Is(err, plugins.ErrExited) {
		t.Fatalf("Set through a plugin that panics in a goroutine = %v; want plugins.ErrExited", err)
	}
	// The runtime prints the panic, with the value, to the plugin's stderr.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.logs.String(), "crash with") {
		if time.Now().After(deadline) {
			t.Fatalf("the panic never reached the log:\n%s", l.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pw := password(t, resp.Value)
	if out := l.logs.String(); strings.Contains(out, pw) || strings.Contains(err.Error(), pw) {
		t.Fatalf("the crash output shows the pending password:\n%s", strings.ReplaceAll(out, pw, "<LEAK>"))
	}
}

func TestRollbackThroughGRPC(t *testing.T) {
	h, _ := templateHarness(t)
	ctx := context.Background()
	for _, mode := range []string{"rollback", ""} {
		t.Run("mode="+mode, func(t *testing.T) {
			l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE="+mode))
			if l.p.Info().RollsBack != (mode == "rollback") {
				t.Fatalf("Info().RollsBack = %v", l.p.Info().RollsBack)
			}
			a := newAccount(t, h, "rb"+mode)
			resp, err := l.p.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value}); err != nil {
				t.Fatal(err)
			}
			if err := l.p.Rollback(ctx, rotators.RollbackRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value}); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			_, curErr := h.Login(ctx, a.current)
			if mode == "rollback" && curErr != nil {
				t.Fatalf("after Rollback the current password is refused: %v", curErr)
			}
			// Negative control: without a Rollbacker, Rollback does nothing.
			if mode == "" && curErr == nil {
				t.Fatalf("Rollback of a plugin that cannot roll back changed the target")
			}
		})
	}
}

// TestFinishEffectsThroughGRPC: what a plugin's Finish reports reaches the
// host's collector; the template reports the credential an emergency made
// useless only after checking its store refuses it, and nothing otherwise.
func TestFinishEffectsThroughGRPC(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "template"), nil)
	a := newAccount(t, h, "eff")
	ctx := context.Background()
	resp, err := l.p.Create(ctx, rotators.CreateRequest{Secret: a.sec, Config: a.cfg, Current: a.current})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.p.Set(ctx, rotators.SetRequest{Secret: a.sec, Config: a.cfg, Current: a.current, Pending: resp.Value}); err != nil {
		t.Fatal(err)
	}
	for _, emergency := range []bool{false, true} {
		var effects rotators.Effects
		err := l.p.Finish(ctx, rotators.FinishRequest{Secret: a.sec, Config: a.cfg, Current: resp.Value, Previous: a.current, Emergency: emergency, Effects: &effects})
		if err != nil {
			t.Fatalf("Finish(emergency %v): %v", emergency, err)
		}
		want := []rotators.Effect(nil)
		if emergency {
			want = []rotators.Effect{{Kind: rotators.EffectCredentialRevoked, Target: `user "eff"`}}
		}
		if got := effects.List(); !slices.Equal(got, want) {
			t.Errorf("Finish(emergency %v) reported %+v, want %+v", emergency, got, want)
		}
	}
	// Negative control: an emergency whose previous password still logs in
	// is an error, not a report.
	var effects rotators.Effects
	err = l.p.Finish(ctx, rotators.FinishRequest{Secret: a.sec, Config: a.cfg, Current: resp.Value, Previous: resp.Value, Emergency: true, Effects: &effects})
	if err == nil || !strings.Contains(err.Error(), "still logs in") || len(effects.List()) != 0 {
		t.Errorf("Finish with a previous password that works = %v, %+v; want an error and no effect", err, effects.List())
	}
}

// TestFinishEffectsAreCheckedAndScrubbed: the host keeps a plugin's
// effects only in the shape the run history may show: known kinds, a
// count of zero or more, a target of one short line without the values
// sent to the call.
func TestFinishEffectsAreCheckedAndScrubbed(t *testing.T) {
	h, _ := templateHarness(t)
	l := mustLaunch(t, binary(t, "testplugin"), env("TESTPLUGIN_MODE=effects"))
	a := newAccount(t, h, "effx")
	var effects rotators.Effects
	cur := rotator.Value("effx", "Another-Password-12345")
	if err := l.p.Finish(context.Background(), rotators.FinishRequest{Secret: a.sec, Config: a.cfg, Current: cur, Previous: a.current, Emergency: true, Effects: &effects}); err != nil {
		t.Fatal(err)
	}
	got := effects.List()
	want := []rotators.Effect{
		{Kind: rotators.EffectSessionsEnded, Target: `user "effx"`, Count: 2},
		{Kind: rotators.EffectCredentialRevoked, Target: "user effx (password [redacted])"},
		{Kind: rotators.EffectCredentialRevoked, Target: "user[31m redline"},
		{Kind: rotators.EffectCredentialRevoked, Target: strings.Repeat("x", 199) + "…"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("effects kept:\n%+v\nwant\n%+v", got, want)
	}
	pw := password(t, a.current)
	for _, e := range got {
		if strings.Contains(e.Target, pw) {
			t.Fatalf("an effect's target shows the previous password")
		}
	}
	logs := l.logs.String()
	if !strings.Contains(logs, "unknown kind") || !strings.Contains(logs, "negative count") || strings.Contains(logs, pw) {
		t.Errorf("the dropped effects are not logged, or the log shows the password:\n%s", strings.ReplaceAll(logs, pw, "<LEAK>"))
	}
}
