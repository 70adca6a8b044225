package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// Plugins under test, built once per run into a folder of their own.
var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

// pluginBinary returns the path of the built plugin ("testplugin",
// "template" or "rabbitmq").
func pluginBinary(t testing.TB, name string) string {
	t.Helper()
	pluginsOnce.Do(func() {
		pluginsDir, pluginsErr = os.MkdirTemp("", "rotary-e2e-plugins-")
		if pluginsErr != nil {
			return
		}
		for n, pkg := range map[string]string{
			"testplugin": "./plugins/internal/testplugin",
			"template":   "./plugins/examples/template",
			"rabbitmq":   "./plugins/examples/rabbitmq",
			"filehook":   "./plugins/examples/filehook",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(pluginsDir, n), pkg)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				pluginsErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if pluginsErr != nil {
		t.Fatal(pluginsErr)
	}
	return filepath.Join(pluginsDir, name)
}

// pluginCopy copies a built plugin into a folder of the test, so that the
// test may change it.
func pluginCopy(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(pluginBinary(t, name))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// accounts is a template account store (the system the template plugin
// and testplugin rotate) with one account.
func newAccount(t testing.TB, dir, user, password string) string {
	t.Helper()
	if err := (rotator.Store{Dir: dir}).Put(user, password); err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(map[string]string{"username": user, "password": password})
	return string(v)
}

// basicAuthSecret creates a basic-auth secret for an account of dir and
// sets its rotation to plugin:plugin (manual).
func basicAuthSecret(t testing.TB, c cli, plugin, dir, name, password string) {
	t.Helper()
	user := strings.ReplaceAll(name, "/", "-")
	val := newAccount(t, dir, user, password)
	c.withStdin([]byte(val)).ok("secret", "create", name, "--type", "basic-auth", "--value-stdin")
	c.ok("rotation", "set", name, "--rotator", "plugin:"+plugin, "--config-json", fmt.Sprintf(`{"accounts_dir":%q}`, dir))
}

func pluginInfo(t testing.TB, c cli, name string) client.Plugin {
	t.Helper()
	return okJSON[client.Plugin](c, "plugin", "show", name)
}

// auditHas reports whether the audit log has a record of action on
// target with result.
func auditHas(c cli, action, target, result string) bool {
	c.t.Helper()
	recs := okJSON[client.AuditList](c, "audit", "list", "--secret", target)
	for _, r := range recs.Records {
		if r.Action == action && r.Target == target && r.Result == result {
			return true
		}
	}
	return false
}

// TestPluginCatalog: register, list, show and remove through the CLI,
// with every refusal: a missing file, one that is not executable, one
// anyone may write, a file that is not a rotary plugin, a wrong sha256,
// reserved env, a bad name, removal while a rotation uses the plugin
// (naming the secret), and a token that is admin on every secret but
// not on "plugins" (the positive control holds admin on "plugins").
// Every write is in the audit log.
func TestPluginCatalog(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	bin := pluginCopy(t, "template")
	sum := rotatortest.FileSHA256(t, bin)

	// Pinned: no warning.
	out, errOut, code := c.run("plugin", "register", "tpl", "--path", bin, "--sha256", sum)
	if code != 0 || errOut != "" || !strings.Contains(out, "registered plugin tpl") {
		t.Fatalf("plugin register --sha256: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	p := pluginInfo(t, c, "tpl")
	if p.Path != bin || p.SHA256 != sum || p.Version != "1.0.0" || strings.Join(p.SecretTypes, ",") != "basic-auth" ||
		strings.Join(p.IdentityFields, ",") != "accounts_dir,username" || p.Status != "ok" || p.LastStartAt == nil {
		t.Fatalf("plugin show tpl = %+v; want the path, sha256 and the Info of the template", p)
	}

	// Without --sha256: pinned anyway, with the warning.
	out, errOut, code = c.run("plugin", "register", "tpl2", "--path", bin, "--env", "LOG_LEVEL=debug")
	wantWarn := "warning: no --sha256 given; pinned the file's current sha256 " + sum + "; pass --sha256 to pin a hash you checked\n"
	if code != 0 || errOut != wantWarn {
		t.Fatalf("plugin register without --sha256: exit %d, stderr %q; want 0 and %q", code, errOut, wantWarn)
	}
	if p := pluginInfo(t, c, "tpl2"); p.SHA256 != sum || strings.Join(p.Env, " ") != "LOG_LEVEL=debug" {
		t.Fatalf("plugin show tpl2 = %+v; want the computed sha256 and the env", p)
	}

	list := c.ok("plugin", "list")
	for _, w := range []string{"NAME", "SHA256", "VERSION", "TYPES", "LAST START", "STATUS", "tpl2", sum[:12], "basic-auth", "1.0.0"} {
		if !strings.Contains(list, w) {
			t.Fatalf("plugin list does not show %q:\n%s", w, list)
		}
	}
	if strings.Contains(list, sum) {
		t.Fatalf("plugin list shows the whole sha256; want it short:\n%s", list)
	}
	pl := okJSON[client.PluginList](c, "plugin", "list")
	if len(pl.Plugins) != 2 || pl.Plugins[0].Name != "tpl" || pl.Plugins[0].SHA256 != sum {
		t.Fatalf("plugin list -o json = %+v; want tpl and tpl2 with the full sha256", pl.Plugins)
	}

	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	_ = os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	worldW := filepath.Join(dir, "worldw")
	b, _ := os.ReadFile(bin)
	_ = os.WriteFile(worldW, b, 0o755)
	_ = os.Chmod(worldW, 0o757)
	script := filepath.Join(dir, "script")
	_ = os.WriteFile(script, []byte("#!/bin/sh\necho hello\n"), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing file", []string{"plugin", "register", "x", "--path", filepath.Join(dir, "nope")}, []string{"no such file"}},
		{"directory", []string{"plugin", "register", "x", "--path", dir}, []string{"not a regular file"}},
		{"not executable", []string{"plugin", "register", "x", "--path", notExec}, []string{"not executable"}},
		{"world-writable", []string{"plugin", "register", "x", "--path", worldW}, []string{"writable by anyone"}},
		{"not a plugin", []string{"plugin", "register", "x", "--path", script}, []string{"not a working rotary plugin"}},
		{"not a plugin (binary)", []string{"plugin", "register", "x", "--path", "/bin/true"}, []string{"not a working rotary plugin", "handshake"}},
		{"wrong sha256", []string{"plugin", "register", "x", "--path", bin, "--sha256", strings.Repeat("0", 64)}, []string{"sha256", sum, "nothing ran"}},
		{"bad sha256", []string{"plugin", "register", "x", "--path", bin, "--sha256", "abc"}, []string{"not a hex sha256"}},
		{"reserved env", []string{"plugin", "register", "x", "--path", bin, "--env", "ROTARY_TOKEN=x"}, []string{"ROTARY_TOKEN", "reserved"}},
		{"plugin env", []string{"plugin", "register", "x", "--path", bin, "--env", "PLUGIN_PROTOCOL_VERSIONS=9"}, []string{"reserved"}},
		{"bad env", []string{"plugin", "register", "x", "--path", bin, "--env", "NOEQUALS"}, []string{"KEY=VALUE"}},
		{"bad name", []string{"plugin", "register", "Bad.Name", "--path", bin}, []string{"plugin name"}},
		{"no path", []string{"plugin", "register", "x"}, []string{"--path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.root(t)
			c.fail(exitUsage, tc.want, tc.args...)
		})
	}
	if out := c.ok("plugin", "list"); strings.Contains(out, "\nx ") {
		t.Fatalf("a refused registration is in the catalog:\n%s", out)
	}
	c.fail(exitNotFound, []string{"not registered"}, "plugin", "show", "x")
	c.fail(exitNotFound, []string{"not registered"}, "plugin", "remove", "x")

	// A rotation names an unregistered plugin: refused, saying what to do.
	c.withStdin([]byte(newAccount(t, t.TempDir(), "u", "pw-1"))).ok("secret", "create", "app/u", "--type", "basic-auth", "--value-stdin")
	c.fail(exitUsage, []string{`plugin "ghost" is not registered`, "rotary plugin register ghost --path"},
		"rotation", "set", "app/u", "--rotator", "plugin:ghost")

	// A hook plugin registers (its kinds are shown) but rotates nothing.
	c.ok("plugin", "register", "filehook", "--path", pluginBinary(t, "filehook"), "--env", "FILEHOOK_PATH="+filepath.Join(t.TempDir(), "events"))
	if p := pluginInfo(t, c, "filehook"); strings.Join(p.Kinds, ",") != "hook" {
		t.Fatalf("plugin show filehook: kinds %q, want hook", p.Kinds)
	}
	c.fail(exitUsage, []string{`plugin "filehook" serves hook, not a rotator`}, "rotation", "set", "app/u", "--rotator", "plugin:filehook")
	c.ok("plugin", "remove", "filehook")

	// In use: remove is refused, naming the secret; free again, it goes.
	acc := t.TempDir()
	basicAuthSecret(t, c, "tpl", acc, "app/one", "first-pw-1")
	c.fail(exitFailure, []string{"conflict", "plugin tpl is used", `"app/one"`}, "plugin", "remove", "tpl")
	if pluginInfo(t, c, "tpl").Name != "tpl" {
		t.Fatal("a refused remove removed the plugin")
	}

	// Authorization: admin on every secret is not enough.
	secretsAdmin := createToken(c, `{"rules":[{"secrets":"*","actions":["list","describe","read","write","rotate","delete","admin"]}]}`)
	as := s.as(t, secretsAdmin)
	as.fail(exitDenied, []string{"permission denied", "plugins"}, "plugin", "register", "evil", "--path", bin, "--sha256", sum)
	as.fail(exitDenied, []string{"permission denied", "plugins"}, "plugin", "list")
	as.fail(exitDenied, []string{"permission denied", "plugins"}, "plugin", "remove", "tpl2")
	c.fail(exitNotFound, nil, "plugin", "show", "evil")
	pluginsAdmin := createToken(c, `{"rules":[{"system":"plugins","actions":["admin"]}]}`)
	ap := s.as(t, pluginsAdmin)
	ap.ok("plugin", "register", "tpl3", "--path", bin, "--sha256", sum)
	ap.ok("plugin", "remove", "tpl3")

	c.ok("secret", "delete", "app/one", "--force")
	if out := c.ok("plugin", "remove", "tpl"); !strings.Contains(out, "removed plugin tpl") {
		t.Fatalf("plugin remove tpl: %q", out)
	}
	c.fail(exitNotFound, nil, "plugin", "show", "tpl")

	// Audited, refusals too.
	for _, w := range []struct{ action, target, result string }{
		{"plugins.register", "plugin/tpl", "ok"},
		{"plugins.register", "plugin/tpl2", "ok"},
		{"plugins.register", "plugin/x", "invalid"},
		{"plugins.register", "plugin/evil", "denied"},
		{"plugins.remove", "plugin/tpl", "invalid"},
		{"plugins.remove", "plugin/tpl", "ok"},
		{"plugins.remove", "plugin/tpl2", "denied"},
	} {
		if w.action == "plugins.remove" && w.result == "invalid" {
			w.result = "invalid" // 409 is recorded as invalid
		}
		if !auditHas(c, w.action, w.target, w.result) {
			recs := okJSON[client.AuditList](c, "audit", "list", "--secret", w.target)
			t.Errorf("audit has no %s on %s with result %s: %+v", w.action, w.target, w.result, recs.Records)
		}
	}
	recs := okJSON[client.AuditList](c, "audit", "list", "--secret", "plugin/tpl2")
	for _, r := range recs.Records {
		if r.Action == "plugins.register" && r.Result == "ok" && (!strings.Contains(r.Detail, "sha256="+sum) || !strings.Contains(r.Detail, "env=LOG_LEVEL")) {
			t.Errorf("audit record of register tpl2: detail %q; want the sha256 and the env keys", r.Detail)
		}
		if strings.Contains(r.Detail, "debug") {
			t.Errorf("audit record of register tpl2 shows an env value: %q", r.Detail)
		}
	}
	c.ok("audit", "verify")
}

// healthy checks the daemon still answers.
func healthy(t testing.TB, s *server) {
	t.Helper()
	resp, err := http.Get(s.addr + "/healthz")
	if err != nil {
		t.Fatalf("the daemon is gone: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
}

func history(t testing.TB, c cli, name string) []client.Run {
	t.Helper()
	return okJSON[client.RunList](c, "rotation", "history", name).Runs
}

func currentVersion(t testing.TB, c cli, name string) int64 {
	t.Helper()
	return okJSON[client.SecretValue](c, "secret", "get", name).Version
}

func currentPassword(t testing.TB, c cli, name string) string {
	t.Helper()
	return strings.TrimSpace(c.ok("secret", "get", name, "--field", "password"))
}

// TestPluginCrashMidSet: a plugin that exits in the middle of Set fails
// that run cleanly; the engine retries, the supervisor starts the plugin
// again and the rotation succeeds; the daemon stays up.
func TestPluginCrashMidSet(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	once := filepath.Join(t.TempDir(), "crashed-once")
	c.ok("plugin", "register", "crashy", "--path", pluginBinary(t, "testplugin"),
		"--env", "TESTPLUGIN_MODE=crash-set", "--env", "TESTPLUGIN_ONCE="+once)
	acc := t.TempDir()
	basicAuthSecret(t, c, "crashy", acc, "app/crash", "first-pw-1")
	c.fail(exitFailure, nil, "rotate", "app/crash", "--wait")
	if _, err := os.Stat(once); err != nil {
		t.Fatalf("the plugin never reached its crash in Set: %v", err)
	}
	healthy(t, s)
	runs := history(t, c, "app/crash")
	if len(runs) == 0 || runs[0].Error == "" {
		t.Fatalf("history after the crash: %+v; want a failed attempt with its error", runs)
	}
	// The engine retries on its own (dev backoff: seconds).
	waitFor(t, 90*time.Second, "the retried rotation to succeed", func() bool {
		return currentVersion(t, c, "app/crash") == 2
	})
	pw := currentPassword(t, c, "app/crash")
	if err := (rotator.Store{Dir: acc}).Check("app-crash", pw); err != nil {
		t.Fatalf("the new password does not log in: %v", err)
	}
	if err := (rotator.Store{Dir: acc}).Check("app-crash", "first-pw-1"); err == nil {
		t.Fatal("the old password still logs in")
	}
	healthy(t, s)
	if p := pluginInfo(t, c, "crashy"); p.Status != "ok" {
		t.Fatalf("plugin after the restart: status %q (%s), want ok", p.Status, p.LastError)
	}
}

// TestPluginHangsInTest: a plugin that never answers Test is cut by the
// configured plugin_call_timeout; the run fails with the deadline, the
// old credential stays current and the daemon stays up. (PostgreSQL
// store, through the config file.)
func TestPluginHangsInTest(t *testing.T) {
	t.Parallel()
	bin := pluginBinary(t, "testplugin")
	s := startPGServer(t, newPGFixture(t), fmt.Sprintf("plugin_call_timeout: 2s\nplugin_start_timeout: 4s\nplugin_dir: %s\n", filepath.Dir(bin)))
	c := s.root(t)
	c.ok("plugin", "register", "hangs", "--path", bin, "--env", "TESTPLUGIN_MODE=hang-test")

	// plugin_dir: a file elsewhere is refused.
	elsewhere := pluginCopy(t, "testplugin")
	c.fail(exitUsage, []string{"outside the plugin folder"}, "plugin", "register", "elsewhere", "--path", elsewhere)
	// plugin_start_timeout: a program that never answers the handshake
	// is refused after it, and killed.
	sleeper := filepath.Join(filepath.Dir(bin), uniq("sleeper"))
	if err := os.WriteFile(sleeper, []byte("#!/bin/sh\nwhile :; do sleep 1; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sleeper) })
	start := time.Now()
	c.fail(exitUsage, []string{"not a working rotary plugin"}, "plugin", "register", "sleeper", "--path", sleeper)
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("register of a plugin that never starts took %v; plugin_start_timeout is 4s", took)
	}
	if procs := processesOfScript(sleeper); len(procs) > 0 {
		t.Fatalf("the plugin that never started is still running: %v", procs)
	}

	acc := t.TempDir()
	basicAuthSecret(t, c, "hangs", acc, "app/hang", "first-pw-1")
	c.ok("rotation", "disable", "app/hang") // no automatic retry while we look
	start = time.Now()
	c.fail(exitFailure, nil, "rotate", "app/hang", "--wait")
	took := time.Since(start)
	if took > 90*time.Second {
		t.Fatalf("rotate --wait took %v; the 2s call timeout should have cut each Test", took)
	}
	healthy(t, s)
	runs := history(t, c, "app/hang")
	if len(runs) == 0 || !strings.Contains(strings.ToLower(runs[0].Error+fmt.Sprint(runs[0].Steps)), "deadline") {
		t.Fatalf("history: %+v; want the run failed by the deadline", runs)
	}
	if v := currentVersion(t, c, "app/hang"); v != 1 {
		t.Fatalf("current version %d after a failed rotation, want 1", v)
	}
	if currentPassword(t, c, "app/hang") != "first-pw-1" {
		t.Fatal("the current value changed after a failed rotation")
	}
	// The catalog on PostgreSQL: in use, the plugin stays.
	c.fail(exitFailure, []string{"plugin hangs is used", `"app/hang"`}, "plugin", "remove", "hangs")
	if p := pluginInfo(t, c, "hangs"); p.Status != "ok" || p.LastStartAt == nil {
		t.Fatalf("plugin show hangs = %+v; want its last start recorded", p)
	}
}

// TestPluginEchoesValues: a plugin that prints the values it gets and
// quotes them in its errors: the canary never reaches the daemon's log,
// the rotation history or its errors.
func TestPluginEchoesValues(t *testing.T) {
	t.Parallel()
	s := startDev(t, withArgs("--log-level", "debug"))
	c := s.root(t)
	c.ok("plugin", "register", "echo", "--path", pluginBinary(t, "testplugin"), "--env", "TESTPLUGIN_MODE=echo")
	canary := "canary-" + randHex(12)
	acc := t.TempDir()
	basicAuthSecret(t, c, "echo", acc, "app/echo", canary)
	c.ok("rotation", "disable", "app/echo")
	_, errOut, _ := c.run("rotate", "app/echo", "--wait")
	s.waitLog("setting", 30*time.Second) // the plugin's stderr reached the log
	runs := history(t, c, "app/echo")
	if len(runs) == 0 || runs[0].Error == "" {
		t.Fatalf("history: %+v; want the failed run", runs)
	}
	hist := c.ok("rotation", "history", "app/echo", "-o", "json")
	show := c.ok("rotation", "show", "app/echo", "-o", "json")
	for what, text := range map[string]string{"daemon log": s.logs.String(), "history": hist, "rotation show": show, "rotate stderr": errOut} {
		if strings.Contains(text, canary) {
			t.Errorf("the %s shows the canary value", what)
		}
	}
	if !strings.Contains(s.logs.String(), "[redacted]") && !strings.Contains(s.logs.String(), "redacted") {
		t.Errorf("the daemon log shows no redaction of the echoed values")
	}
	healthy(t, s)
}

// TestPluginEnvironment: the plugin's environment is exactly what its
// registration lists plus go-plugin's PLUGIN_* handshake: no ROTARY_*,
// no root token, nothing else of the daemon's.
func TestPluginEnvironment(t *testing.T) {
	t.Parallel()
	daemonSecret := "daemon-only-" + randHex(8)
	s := startDev(t, withEnv("DAEMON_SECRET="+daemonSecret, "ROTARY_SOMETHING=x"))
	c := s.root(t)
	marker := filepath.Join(t.TempDir(), "env")
	c.ok("plugin", "register", "envy", "--path", pluginBinary(t, "testplugin"),
		"--env", "TESTPLUGIN_MARKER="+marker, "--env", "GREETING=hello")
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("the plugin wrote no marker at register: %v", err)
	}
	env := strings.Split(string(b), "\x00")
	seen := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		seen[k] = true
		switch {
		case k == "GREETING" && kv == "GREETING=hello", k == "TESTPLUGIN_MARKER", strings.HasPrefix(k, "PLUGIN_"):
		default:
			t.Errorf("the plugin's environment has %q, which its registration does not list", k)
		}
	}
	if !seen["GREETING"] {
		t.Errorf("the plugin's environment lacks GREETING: %q", env)
	}
	if strings.Contains(string(b), s.rootToken) || strings.Contains(string(b), daemonSecret) || seen["ROTARY_SOMETHING"] {
		t.Errorf("the plugin's environment shows a daemon secret or a ROTARY_ variable: %q", env)
	}
}

// TestPluginChangedAfterRegister: a plugin file changed after it was
// registered is refused at its next start with the checksum reason, and
// nothing of it runs (its marker is not written).
func TestPluginChangedAfterRegister(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	bin := pluginCopy(t, "testplugin")
	marker := filepath.Join(t.TempDir(), "ran")
	c.ok("plugin", "register", "changed", "--path", bin, "--sha256", rotatortest.FileSHA256(t, bin), "--env", "TESTPLUGIN_MARKER="+marker)
	acc := t.TempDir()
	basicAuthSecret(t, c, "changed", acc, "app/changed", "first-pw-1")
	c.ok("rotation", "disable", "app/changed")
	// Restart the daemon so that no process of the old file is running,
	// then change the file (still a runnable program).
	s.restart()
	f, err := os.OpenFile(bin, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	c.fail(exitFailure, nil, "rotate", "app/changed", "--wait")
	runs := history(t, c, "app/changed")
	if len(runs) == 0 || !strings.Contains(runs[0].Error, "sha256") {
		t.Fatalf("history: %+v; want the run failed with the checksum reason", runs)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the changed plugin file ran (its marker was written)")
	}
	if v := currentVersion(t, c, "app/changed"); v != 1 {
		t.Fatalf("current version %d, want 1", v)
	}
	if p := pluginInfo(t, c, "changed"); p.Status != "failed" || !strings.Contains(p.LastError, "sha256") {
		t.Fatalf("plugin show: status %q, last error %q; want failed with the checksum reason", p.Status, p.LastError)
	}
	// Registered again with the new hash, it runs.
	c.ok("plugin", "register", "changed", "--path", bin, "--sha256", rotatortest.FileSHA256(t, bin), "--env", "TESTPLUGIN_MARKER="+marker)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("re-registered, the plugin did not run: %v", err)
	}
	// and the next rotation uses it.
	c.ok("rotate", "app/changed", "--wait")
	if v := currentVersion(t, c, "app/changed"); v < 2 {
		t.Fatalf("after the re-registration: current version %d, want a new one", v)
	}
	if err := (rotator.Store{Dir: acc}).Check("app-changed", currentPassword(t, c, "app/changed")); err != nil {
		t.Fatalf("the rotated password does not log in: %v", err)
	}
}

// TestPluginKill9Daemon: kill -9 of the daemon ends the plugin at once
// (parent-death signal, and the SDK's watchdog); the child the plugin
// started in its process group is ended by the next daemon on the same
// data dir, which finds the group its predecessor recorded. Then no
// process of the group is left.
func TestPluginKill9Daemon(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	c.ok("plugin", "register", "parent", "--path", pluginBinary(t, "testplugin"), "--env", "TESTPLUGIN_MODE=child")
	acc := t.TempDir()
	basicAuthSecret(t, c, "parent", acc, "app/parent", "first-pw-1") // starts the plugin
	pid := pluginInfo(t, c, "parent").PID
	if pid <= 0 {
		t.Fatalf("plugin show: no pid of a running plugin")
	}
	waitFor(t, 10*time.Second, "the plugin's child", func() bool { return len(rotatortest.ProcessGroup(pid)) >= 2 })
	s.kill9()
	waitFor(t, 15*time.Second, "the plugin process to end with the daemon", func() bool {
		return !slices.Contains(rotatortest.ProcessGroup(pid), pid)
	})
	s.start()
	if left := rotatortest.WaitNoProcessGroup(pid, 15*time.Second); len(left) > 0 {
		t.Fatalf("after kill -9 and a new start of the daemon, processes %v of the plugin's group %d are still running", left, pid)
	}
	healthy(t, s)
}

// TestPluginParallelRotations: 50 rotations at once through one plugin:
// one plugin process serves them all and every secret is rotated.
func TestPluginParallelRotations(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	bin := pluginBinary(t, "template")
	c.ok("plugin", "register", "tpl", "--path", bin)
	acc := t.TempDir()
	const n = 50
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("par/s%02d", i)
		basicAuthSecret(t, c, "tpl", acc, names[i], "first-pw-"+strconv.Itoa(i))
	}
	pid := pluginInfo(t, c, "tpl").PID
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := s.httpDo(t, http.MethodPost, "/v1/secrets/"+client.PathEscape(name)+"/rotate?wait=true", s.rootToken, "", nil)
			if code != http.StatusOK {
				errs <- fmt.Sprintf("rotate %s: %d %s", name, code, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i, name := range names {
		if v := currentVersion(t, c, name); v != 2 {
			t.Errorf("%s: current version %d, want 2", name, v)
			continue
		}
		user := strings.ReplaceAll(name, "/", "-")
		if err := (rotator.Store{Dir: acc}).Check(user, currentPassword(t, c, name)); err != nil {
			t.Errorf("%s: the new password does not log in: %v", name, err)
		}
		if err := (rotator.Store{Dir: acc}).Check(user, "first-pw-"+strconv.Itoa(i)); err == nil {
			t.Errorf("%s: the old password still logs in", name)
		}
	}
	if procs := processesOf(bin); len(procs) != 1 {
		t.Errorf("processes of %s: %v; want exactly one plugin process", bin, procs)
	}
	if p := pluginInfo(t, c, "tpl"); p.PID != pid || p.Restarts != 0 {
		t.Errorf("plugin after 50 rotations: pid %d restarts %d; want the same process %d, no restart", p.PID, p.Restarts, pid)
	}
}

// processesOfScript lists the live processes whose command line names
// path (a script runs as its interpreter).
func processesOfScript(path string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), path) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesOf lists the live processes running the executable path.
func processesOf(path string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestPluginEmergencyReportsEffects: a plugin's Finish reports what an
// emergency rotation made useless, and `rotate --emergency --wait` and
// the history show it; a plain rotation reports nothing.
func TestPluginEmergencyReportsEffects(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	bin := pluginCopy(t, "template")
	c.ok("plugin", "register", "tpleff", "--path", bin, "--sha256", rotatortest.FileSHA256(t, bin))
	acc := t.TempDir()
	name := "app/" + uniq("eff")
	user := strings.ReplaceAll(name, "/", "-")
	basicAuthSecret(t, c, "tpleff", acc, name, "first-pw-1234")
	out := c.ok("rotate", name, "--wait")
	if strings.Contains(out, "useless") {
		t.Fatalf("a plain rotation reported an effect:\n%s", out)
	}
	before := currentPassword(t, c, name)
	out = c.ok("rotate", name, "--emergency", "--wait")
	want := fmt.Sprintf("made the previous credential of user %q useless", user)
	if !strings.Contains(out, want) {
		t.Fatalf("rotate --emergency --wait printed:\n%s\nwant %q", out, want)
	}
	if err := (rotator.Store{Dir: acc}).Check(user, before); !errors.Is(err, rotator.ErrRefused) {
		t.Fatalf("the credential reported useless still logs in (err %v)", err)
	}
	if err := (rotator.Store{Dir: acc}).Check(user, currentPassword(t, c, name)); err != nil {
		t.Fatalf("the new password does not log in: %v", err)
	}
	runs := history(t, c, name)
	if len(runs) < 2 || runs[0].EffectsSummary() != want || runs[1].EffectsSummary() != "" {
		t.Fatalf("history: %+v; want the emergency run with %q first and the plain run without effects", runs, want)
	}
	if hist := c.ok("rotation", "history", name); !strings.Contains(hist, want) {
		t.Errorf("rotation history does not show the effect:\n%s", hist)
	}
}
