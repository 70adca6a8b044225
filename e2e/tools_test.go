package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bgCLI is a long-running rotary command (watch, exec, render --watch).
type bgCLI struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line
	stderr *syncBuffer
	done   chan struct{}
}

// startCLI starts "rotary args..." against s with token and extra env.
func startCLI(t *testing.T, s *server, token string, env []string, args ...string) *bgCLI {
	t.Helper()
	cmd := exec.Command(rotaryBin, args...)
	cmd.Env = cleanEnv(append([]string{"ROTARY_ADDR=" + s.addr, "ROTARY_TOKEN=" + token}, env...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &bgCLI{t: t, cmd: cmd, lines: make(chan string, 10000), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = b.stderr
	// Its own process group, so that cleanup also ends what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		_ = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
		if t.Failed() {
			t.Logf("rotary %s stderr:\n%s", strings.Join(args, " "), b.stderr.String())
		}
	})
	return b
}

// wait waits for the command to exit and returns its exit code.
func (b *bgCLI) wait(timeout time.Duration) int {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.t.Fatalf("rotary did not exit within %v; stderr %s", timeout, b.stderr.String())
	}
	return b.cmd.ProcessState.ExitCode()
}

// watchLine is one line of rotary watch.
type watchLine struct {
	ID      int64    `json:"id"`
	Event   string   `json:"event"`
	Secret  string   `json:"secret"`
	Version int64    `json:"version"`
	Stages  []string `json:"stages"`
	Value   any      `json:"value"`
}

func (b *bgCLI) nextEvent(timeout time.Duration) watchLine {
	b.t.Helper()
	select {
	case l := <-b.lines:
		var w watchLine
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			b.t.Fatalf("rotary watch printed %q: not one JSON object: %v", l, err)
		}
		return w
	case <-time.After(timeout):
		b.t.Fatalf("no event line within %v; stderr %s", timeout, b.stderr.String())
	}
	return watchLine{}
}

// eventsUntil reads event lines until one matches stop.
func (b *bgCLI) eventsUntil(stop func(watchLine) bool) []watchLine {
	b.t.Helper()
	var got []watchLine
	for {
		w := b.nextEvent(60 * time.Second)
		got = append(got, w)
		if stop(w) {
			return got
		}
	}
}

// TestWatchPrintsEventsAndResumes: rotary watch prints a rotation's
// events as JSON lines with ids, resumes from its last id when its daemon
// goes away and comes back (events made meanwhile on another daemon are
// printed once, in order), and --after replays from an id.
func TestWatchPrintsEventsAndResumes(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	extra := "events:\n  poll: 100ms\n"
	a := startPGServer(t, fx, extra)
	b := startPGServer(t, fx, extra)
	c := a.root(t)
	name := uniq("watch/pw")
	canary := "Canary-" + randHex(8)
	c.ok("secret", "create", name, "--value", canary)
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "none")
	other := uniq("nowatch/pw")
	c.ok("secret", "create", other, "--value", "x")

	w := startCLI(t, a, a.rootToken, nil, "watch", "watch/*")
	// The watch is live once a put made after it started shows up.
	probe := uniq("watch/probe")
	c.ok("secret", "create", probe, "--value", "p0")
	i := 0
	waitFor(t, 30*time.Second, "rotary watch to print the probe's event", func() bool {
		i++
		c.ok("secret", "put", probe, "--value", "p"+strconv.Itoa(i))
		select {
		case l := <-w.lines:
			return strings.Contains(l, probe)
		case <-time.After(500 * time.Millisecond):
			return false
		}
	})
	for drained := false; !drained; { // the other probe puts
		select {
		case <-w.lines:
		case <-time.After(time.Second):
			drained = true
		}
	}

	c.ok("secret", "put", other, "--value", "y") // filtered out
	c.ok("rotate", name, "--wait")
	evs := w.eventsUntil(func(e watchLine) bool { return e.Event == "rotated" })
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s:%s:%d:%s", e.Event, e.Secret, e.Version, strings.Join(e.Stages, ",")))
		if e.ID <= 0 || e.Value != nil {
			t.Fatalf("event line %+v: want an id and no value", e)
		}
	}
	want := []string{"version_created:" + name + ":2:pending", "rotated:" + name + ":2:current"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("watch printed %v, want %v", got, want)
	}
	lastID := evs[len(evs)-1].ID

	// Its daemon goes away; two rotations happen on the other one.
	a.stop()
	b.root(t).ok("rotate", name, "--wait")
	b.root(t).ok("rotate", name, "--wait")
	a.start()
	evs = w.eventsUntil(func(e watchLine) bool { return e.Event == "rotated" && e.Version == 4 })
	got = nil
	prev := lastID
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s:%d", e.Event, e.Version))
		if e.ID <= prev {
			t.Fatalf("after resuming, event id %d after %d: repeated or out of order", e.ID, prev)
		}
		prev = e.ID
	}
	if strings.Join(got, " ") != "version_created:3 rotated:3 version_created:4 rotated:4" {
		t.Fatalf("after resuming watch printed %v", got)
	}
	_ = w.cmd.Process.Signal(syscall.SIGINT)
	if code := w.wait(20 * time.Second); code != 0 {
		t.Fatalf("rotary watch exited %d after SIGINT, want 0", code)
	}
	if strings.Contains(w.stderr.String(), canary) {
		t.Fatal("watch's stderr shows a value")
	}

	// --after replays what came after an id and goes on.
	w2 := startCLI(t, a, a.rootToken, nil, "watch", name, "--after", strconv.FormatInt(lastID, 10))
	evs = w2.eventsUntil(func(e watchLine) bool { return e.Event == "rotated" && e.Version == 4 })
	if len(evs) != 4 || evs[0].Version != 3 {
		t.Fatalf("watch --after %d printed %+v", lastID, evs)
	}

	c.fail(exitUsage, []string{"--after"}, "watch", "--after", "-1")
}

// A watch whose daemon goes away before it printed anything resumes from
// where its stream opened: an event made meanwhile on another daemon is
// printed, not skipped by starting "from now" again.
func TestWatchResumesBeforeItsFirstEvent(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	extra := "events:\n  poll: 100ms\n"
	a := startPGServer(t, fx, extra)
	b := startPGServer(t, fx, extra)
	w := startCLI(t, a, a.rootToken, nil, "watch", "early/*")
	waitFor(t, 30*time.Second, "rotary watch to open its stream", func() bool {
		_, body := a.httpDo(t, "GET", "/metrics", "", "", nil)
		return metricValue(t, string(body), "rotary_event_stream_subscribers") >= 1
	})
	a.stop()
	name := uniq("early/pw")
	b.root(t).ok("secret", "create", name, "--value", "v1")
	a.start()
	evs := w.eventsUntil(func(e watchLine) bool { return e.Secret == name })
	if len(evs) != 1 || evs[0].Event != "version_created" || evs[0].Version != 1 {
		t.Fatalf("watch printed %+v, want the create of %s made while its daemon was away", evs, name)
	}
}

// Ctrl-C in the terminal rotary exec runs in reaches the child once: the
// terminal sends it to the foreground group, which holds both, and rotary
// exec does not pass it on a second time. Signals sent to rotary exec
// alone (USR1 here) are still passed on. The terminal is a pty that
// script(1) makes; ^C written to it becomes SIGINT.
func TestExecCtrlCReachesChildOnce(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script(1) (util-linux, in bsdutils) is needed: %v", err)
	}
	s := startDev(t)
	name := uniq("tty/pw")
	s.root(t).ok("secret", "create", name, "--value", "v1")
	dir := t.TempDir()
	log := filepath.Join(dir, "signals")
	child := `trap 'echo int >> "$LOG"' INT; trap 'echo usr1 >> "$LOG"' USR1; trap 'exit 7' TERM; echo ready >> "$LOG"; while :; do sleep 0.05; done`
	inner := strconvQuote(rotaryBin) + " exec --env PW=" + name + " -- sh -c " + shellQuote(child)
	cmd := exec.Command("script", "-qfec", inner, "/dev/null")
	cmd.Env = cleanEnv("ROTARY_ADDR="+s.addr, "ROTARY_TOKEN="+s.rootToken, "LOG="+log)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	keys, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-exited })
	lines := func() []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(string(b))
	}
	count := func(what string) (n int) {
		for _, l := range lines() {
			if l == what {
				n++
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, "the child to start", func() bool { return count("ready") == 1 })
	if _, err := keys.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the child to get the Ctrl-C", func() bool { return count("int") >= 1 })
	// USR1 to rotary exec alone, after the Ctrl-C: passed on in order, so
	// once it has arrived a second INT would have too.
	pids, err := exec.Command("pgrep", "-f", "-x", regexp.QuoteMeta(rotaryBin)+" exec --env PW="+regexp.QuoteMeta(name)+" .*").Output()
	if err != nil {
		t.Fatalf("pgrep rotary exec: %v (output %q)", err, out.String())
	}
	pid, _ := strconv.Atoi(strings.Fields(string(pids))[0])
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the child to get the USR1 passed on", func() bool { return count("usr1") == 1 })
	if n := count("int"); n != 1 {
		t.Fatalf("one Ctrl-C reached the child %d times (log %v)", n, lines())
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("rotary exec did not end after SIGTERM; output %q", out.String())
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// childScript sets its traps, writes the child's view of its environment
// to $OUT_FILE (atomically) and waits; TERM ends it with 7. The traps come
// first: the test acts as soon as the file appears, and a HUP before the
// trap would kill the shell.
const childScript = `trap 'exit 7' TERM
trap 'echo hup >> "$OUT_FILE.hup"' HUP
printf '%s|%s|%s|%s\n' "$$" "$APP_PW" "$APP_USER" "${ROTARY_TOKEN-unset}" > "$OUT_FILE.tmp" && mv "$OUT_FILE.tmp" "$OUT_FILE"
while :; do sleep 0.05; done`

type childView struct{ pid, pw, user, token string }

func readChild(t *testing.T, path string) (childView, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return childView{}, false
	}
	f := strings.Split(strings.TrimRight(string(b), "\n"), "|")
	if len(f) != 4 {
		t.Fatalf("child wrote %q", b)
	}
	return childView{f[0], f[1], f[2], f[3]}, true
}

// TestExecRestartsAndSignals: rotary exec runs its child with the values,
// restarts it with the new ones after a rotation (and after a put of a
// field's secret), or only signals it in signal mode; it forwards SIGTERM
// and exits with the child's code; ROTARY_TOKEN is not passed on.
func TestExecRestartsAndSignals(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	// Each subtest has its own secrets: they run in parallel.
	secrets := func() (pw, kv string, envArgs []string) {
		pw, kv = uniq("exec/pw"), uniq("exec/kv")
		c.ok("secret", "create", pw, "--value", "first-pw")
		c.ok("rotation", "set", pw, "--rotator", "random", "--schedule", "none")
		c.ok("secret", "create", kv, "--type", "key-value", "--value", `{"user":"alice","other":"z"}`)
		return pw, kv, []string{"--env", "APP_PW=" + pw, "--env", "APP_USER=" + kv + "#user"}
	}

	t.Run("restart", func(t *testing.T) {
		t.Parallel()
		pw, kv, envArgs := secrets()
		out := filepath.Join(t.TempDir(), "child")
		x := startCLI(t, s, s.rootToken, []string{"OUT_FILE=" + out}, append(append([]string{"exec"}, envArgs...), "--", "sh", "-c", childScript)...)
		var v1 childView
		waitFor(t, 60*time.Second, "the child to start", func() bool { var ok bool; v1, ok = readChild(t, out); return ok })
		if v1.pw != "first-pw" || v1.user != "alice" || v1.token != "unset" {
			t.Fatalf("child saw %+v; want first-pw, alice and no ROTARY_TOKEN", v1)
		}
		c.ok("rotate", pw, "--wait")
		newPw := c.ok("secret", "get", pw)
		var v2 childView
		waitFor(t, 30*time.Second, "the child to be restarted with the rotated value", func() bool {
			var ok bool
			v2, ok = readChild(t, out)
			return ok && v2.pid != v1.pid
		})
		if v2.pw != newPw || v2.user != "alice" {
			t.Fatalf("restarted child saw pw %q user %q; want the rotated password and alice", v2.pw, v2.user)
		}
		c.ok("secret", "put", kv, "--value", `{"user":"bob","other":"z"}`)
		waitFor(t, 30*time.Second, "the child to be restarted with the new field", func() bool {
			v, ok := readChild(t, out)
			return ok && v.pid != v2.pid && v.user == "bob" && v.pw == newPw
		})
		// SIGTERM goes to the child, whose exit code (7) becomes ours.
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		if code := x.wait(20 * time.Second); code != 7 {
			t.Fatalf("rotary exec exited %d after SIGTERM, want the child's 7", code)
		}
		for _, v := range []string{"first-pw", newPw} {
			if strings.Contains(x.stderr.String(), v) {
				t.Fatal("rotary exec's stderr shows a value")
			}
		}
	})
	t.Run("signal", func(t *testing.T) {
		t.Parallel()
		_, kv, envArgs := secrets()
		out := filepath.Join(t.TempDir(), "child")
		x := startCLI(t, s, s.rootToken, []string{"OUT_FILE=" + out},
			append(append([]string{"exec"}, envArgs...), "--on-rotate", "signal:HUP", "--", "sh", "-c", childScript)...)
		var v1 childView
		waitFor(t, 60*time.Second, "the child to start", func() bool { var ok bool; v1, ok = readChild(t, out); return ok })
		c.ok("secret", "put", kv, "--value", `{"user":"carol","other":"z"}`)
		waitFor(t, 30*time.Second, "SIGHUP to reach the child", func() bool {
			b, _ := os.ReadFile(out + ".hup")
			return strings.Contains(string(b), "hup")
		})
		if v, _ := readChild(t, out); v.pid != v1.pid {
			t.Fatalf("signal mode restarted the child (pid %s → %s)", v1.pid, v.pid)
		}
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		if code := x.wait(20 * time.Second); code != 7 {
			t.Fatalf("exit %d, want 7", code)
		}
	})
	t.Run("exit-code", func(t *testing.T) {
		t.Parallel()
		pw, _, _ := secrets()
		_, stderr, code := c.run("exec", "--env", "APP_PW="+pw, "--", "sh", "-c", `test -n "$APP_PW" && exit 3`)
		if code != 3 || stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 3 and nothing", code, stderr)
		}
		c.ok("exec", "--env", "APP_PW="+pw, "--", "true")
	})
	t.Run("bad-references", func(t *testing.T) {
		t.Parallel()
		pw, kv, _ := secrets()
		c.fail(exitNotFound, []string{"nope/missing"}, "exec", "--env", "X=nope/missing", "--", "true")
		e := c.fail(exitUsage, []string{kv, "nofield"}, "exec", "--env", "X="+kv+"#nofield", "--", "true")
		if strings.Contains(e, "alice") || strings.Contains(e, "\"z\"") {
			t.Fatalf("error shows a value: %s", e)
		}
		c.fail(exitUsage, []string{"--env"}, "exec", "--env", "1X="+pw, "--", "true")
		c.fail(exitUsage, []string{"--on-rotate"}, "exec", "--env", "X="+pw, "--on-rotate", "signal:NOPE", "--", "true")
		c.fail(exitUsage, []string{"command"}, "exec", "--env", "X="+pw)
	})
}

// TestRenderAtomicModeWatch: rotary render fills the references, writes
// OUT by rename with the mode, leaves OUT untouched on an unknown
// reference (naming it, never a value), and with --watch re-renders on
// rotation and runs the reload command.
func TestRenderAtomicModeWatch(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	pw := uniq("render/pw")
	kv := uniq("render/kv")
	canary := "Canary-" + randHex(8)
	c.ok("secret", "create", pw, "--value", canary)
	c.ok("rotation", "set", pw, "--rotator", "random", "--schedule", "none")
	c.ok("secret", "create", kv, "--type", "key-value", "--value", `{"user":"alice"}`)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "app.tmpl")
	out := filepath.Join(dir, "app.conf")
	writeT := func(body string) {
		if err := os.WriteFile(tmpl, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeT("user=$secret{" + kv + "#user}\npassword=$secret{" + pw + "}\n")
	if err := os.WriteFile(out, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ino := func() uint64 {
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	before := ino()
	c.ok("render", "--template", tmpl, "--out", out, "--mode", "0640")
	b, _ := os.ReadFile(out)
	if string(b) != "user=alice\npassword="+canary+"\n" {
		t.Fatalf("rendered %q", b)
	}
	st, _ := os.Stat(out)
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
	if ino() == before {
		t.Fatal("OUT was rewritten in place, not replaced by a rename")
	}
	noTemps := func() {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Fatalf("temporary file %s left behind", e.Name())
			}
		}
	}
	noTemps()

	// Unknown references: an error naming them, OUT untouched.
	good, _ := os.ReadFile(out)
	for _, tc := range []struct {
		body string
		code int
		want []string
	}{
		{"a=$secret{" + pw + "}\nb=$secret{render/missing}\n", exitNotFound, []string{"render/missing", "line 2"}},
		{"a=$secret{" + kv + "#nope}\n", exitUsage, []string{kv, "nope"}},
		{"a=$secret{" + pw + "\n", exitUsage, []string{"line 1", "closing"}},
	} {
		writeT(tc.body)
		e := c.fail(tc.code, tc.want, "render", "--template", tmpl, "--out", out)
		if strings.Contains(e, canary) || strings.Contains(e, "alice") {
			t.Fatalf("error shows a value: %s", e)
		}
		if now, _ := os.ReadFile(out); string(now) != string(good) {
			t.Fatalf("a failed render changed OUT to %q", now)
		}
		noTemps()
	}
	c.fail(exitUsage, []string{"--mode"}, "render", "--template", tmpl, "--out", out, "--mode", "rw")

	// --watch: a rotation re-renders (keeping the mode) and runs --exec;
	// a reader never sees a partial file.
	writeT("user=$secret{" + kv + "#user}\npassword=$secret{" + pw + "}\n")
	reloads := filepath.Join(dir, "reloads")
	w := startCLI(t, s, s.rootToken, nil, "render", "--template", tmpl, "--out", out, "--mode", "0600", "--watch",
		"--exec", "sh -c 'echo reloaded >> \""+reloads+"\"'")
	waitFor(t, 60*time.Second, "the first render", func() bool {
		st, err := os.Stat(out)
		return err == nil && st.Mode().Perm() == 0o600
	})
	var partial sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	var rd sync.WaitGroup
	rd.Go(func() {
		for ctx.Err() == nil {
			b, err := os.ReadFile(out)
			if err != nil || !strings.HasPrefix(string(b), "user=") || !strings.HasSuffix(string(b), "\n") || strings.Count(string(b), "\n") != 2 {
				partial.Do(func() { t.Errorf("a reader saw %q, %v", b, err) })
			}
		}
	})
	for i := range 3 {
		c.ok("rotate", pw, "--wait")
		cur := c.ok("secret", "get", pw)
		waitFor(t, 30*time.Second, fmt.Sprintf("re-render %d", i+1), func() bool {
			b, _ := os.ReadFile(out)
			return string(b) == "user=alice\npassword="+cur+"\n"
		})
		waitFor(t, 30*time.Second, "the reload command", func() bool {
			b, _ := os.ReadFile(reloads)
			return strings.Count(string(b), "reloaded") == i+1
		})
	}
	cancel()
	rd.Wait()
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("after re-renders the mode is %v", st.Mode().Perm())
	}
	noTemps()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(20 * time.Second); code != 0 {
		t.Fatalf("render --watch exited %d after SIGTERM", code)
	}
	if strings.Contains(w.stderr.String(), canary) {
		t.Fatal("render's stderr shows a value")
	}
}
