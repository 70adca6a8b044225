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
	"syscall"
	"testing"
	"time"
)

// The README's walkthroughs, run as they stand. Each test lays out a
// folder like a checkout after `make run` (bin/rotary, the daemon's data
// in .rotary-dev/), starts the dev daemon there the way `make run` does
// (without --dev-root-token: the token is the generated one in
// .rotary-dev/root-token), and runs the Quickstart's second-terminal
// block and then the walkthrough's blocks with bash -eux -o pipefail in
// that folder. The one substitution: the daemon listens on a free port,
// so http://127.0.0.1:8420 in the scripts becomes its address. PATH does
// not hold the binary under test: the Quickstart's own line puts it there.

// readmeDefaultAddr is the address the README's export line names.
const readmeDefaultAddr = "http://127.0.0.1:8420"

// traceMark starts every command bash traces (PS4), so outputOf can cut
// the combined output into each command's part.
const traceMark = "+[readme] "

// checkout is a folder laid out like a rotary checkout with `make run`
// going in it.
type checkout struct {
	dir string
	s   *server
}

// startMakeRun lays out the folder and starts the daemon in it as
// `make run` does: rotary server --dev --data-dir .rotary-dev (here with
// --listen on a free port).
func startMakeRun(t *testing.T) checkout {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rotaryBin, filepath.Join(dir, "bin", "rotary")); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	data := filepath.Join(dir, ".rotary-dev")
	s := &server{
		t: t, listen: listen, addr: "http://" + listen, dataDir: data, kind: "sqlite", logs: &syncBuffer{},
		args: []string{"server", "--dev", "--data-dir", data, "--listen", listen},
	}
	s.start()
	tok, err := os.ReadFile(filepath.Join(data, "root-token"))
	if err != nil {
		t.Fatalf("make run made no root token file: %v", err)
	}
	s.rootToken = strings.TrimSpace(string(tok))
	return checkout{dir: dir, s: s}
}

// systemPath is PATH without any folder holding a rotary binary.
func systemPath() string {
	var keep []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "rotary")); err == nil {
			continue
		}
		keep = append(keep, d)
	}
	return strings.Join(keep, string(os.PathListSeparator))
}

// secondTerminal is the Quickstart's block that starts the second
// terminal, pointed at co's daemon.
func (co checkout) secondTerminal(t *testing.T) string {
	t.Helper()
	for _, b := range readmeShellBlocks(t, "Quickstart") {
		if !strings.HasPrefix(b, `export PATH="$PWD/bin:$PATH"`) {
			continue
		}
		if !strings.Contains(b, "\nexport ROTARY_ADDR="+readmeDefaultAddr) || !strings.Contains(b, "\nexport ROTARY_TOKEN=$(cat .rotary-dev/root-token)") {
			t.Fatalf("the Quickstart's second terminal no longer exports ROTARY_ADDR=%s and the token of .rotary-dev:\n%s", readmeDefaultAddr, b)
		}
		return strings.ReplaceAll(b, readmeDefaultAddr, co.s.addr)
	}
	t.Fatal(`README.md: no Quickstart block starts with export PATH="$PWD/bin:$PATH"`)
	return ""
}

// bashCmd is bash running script in co's folder, tracing every command.
func (co checkout) bashCmd(ctx context.Context, script string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-c", "PS4='"+traceMark+"'\nset -euxo pipefail\n"+script)
	cmd.Dir = co.dir
	cmd.Env = cleanEnv("PATH=" + systemPath())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// run runs the second terminal's block and then blocks, and returns the
// combined, traced output; it fails the test when a command fails.
func (co checkout) run(t *testing.T, what string, blocks ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := co.bashCmd(ctx, co.secondTerminal(t)+strings.Join(blocks, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's %s failed: %v\n%s", what, err, out)
	}
	return string(out)
}

// outputOf returns what the first traced command starting with cmd
// printed (stdout and stderr) before the next traced command.
func outputOf(t *testing.T, out, cmd string) string {
	t.Helper()
	i := strings.Index(out, traceMark+cmd)
	if i < 0 {
		t.Fatalf("the walkthrough ran no command %q:\n%s", cmd, out)
	}
	rest := out[i:]
	nl := strings.IndexByte(rest, '\n')
	if nl < 0 {
		return ""
	}
	rest = rest[nl+1:]
	if j := strings.Index(rest, traceMark); j >= 0 {
		rest = rest[:j]
	}
	// Nested traces (command substitutions) are marked with more '+'.
	return strings.TrimRight(rest, "+")
}

// TestQuickstartDevDaemon: make run's daemon prints the export lines to
// paste, and they work; it prints the root token only on the first start;
// a second daemon on its data dir is refused naming it, a taken port is
// named with the way to pick another, and a daemon killed with SIGKILL
// leaves a lock file that does not block the next start.
func TestQuickstartDevDaemon(t *testing.T) {
	t.Parallel()
	co := startMakeRun(t)
	s := co.s
	data := filepath.Join(co.dir, ".rotary-dev")
	logs := s.logs.String()
	for _, want := range []string{
		"\n    export PATH=\"" + filepath.Dir(rotaryBin) + ":$PATH\"\n", // rotary is not on the daemon's PATH
		"\n    export ROTARY_ADDR=" + s.addr + "\n",
		"\n    export ROTARY_TOKEN=$(cat " + filepath.Join(data, "root-token") + ")\n",
		"\nRoot token: " + s.rootToken + "\n",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("make run's output lacks %q:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, s.rootToken); n != 1 {
		t.Errorf("the root token shows %d times in the daemon's output, want once (the Root token line):\n%s", n, logs)
	}
	// The printed lines, pasted into a shell, make rotary available and
	// point it at the daemon.
	var paste []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, "    export ") {
			paste = append(paste, l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euc", strings.Join(paste, "\n")+"\nrotary secret create pasted/x --value-stdin <<<v\n")
	cmd.Dir = t.TempDir() // the lines work from any folder
	cmd.Env = cleanEnv("PATH=" + systemPath())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the printed export lines do not reach the daemon: %v\n%s", err, out)
	}

	// A second daemon on the same data dir is refused, naming the first.
	other := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	second := exec.Command(rotaryBin, "server", "--dev", "--data-dir", data, "--listen", other)
	second.Dir = co.dir
	second.Env = cleanEnv()
	out, err := second.CombinedOutput()
	want := fmt.Sprintf("is in use by another rotary server (pid %d, %s); stop it or pick another --data-dir", s.cmd.Process.Pid, s.addr)
	if code := second.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "--data-dir ") || !strings.Contains(string(out), want) {
		t.Fatalf("a second dev daemon on %s: exit %d, output:\n%s\nwant exit 1 and %q", data, code, out, want)
	}

	// A port in use is named, with the way to pick another.
	thirdData := t.TempDir()
	third := exec.Command(rotaryBin, "server", "--dev", "--data-dir", thirdData, "--listen", s.listen)
	third.Env = cleanEnv()
	out, err = third.CombinedOutput()
	want = "listen " + s.listen + ": address already in use; another process listens there: stop it or pick another with --listen 127.0.0.1:PORT (make run PORT=…)"
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("a dev daemon on a port in use: %v, output:\n%s\nwant %q", err, out, want)
	}
	if _, err := os.Stat(filepath.Join(thirdData, "root.key")); err == nil {
		t.Error("a dev daemon refused its port made a root key first")
	}

	// Killed, the daemon leaves its lock file naming it; the next start
	// is not blocked, and does not print the token again.
	oldPID := s.cmd.Process.Pid
	s.kill9()
	lock, err := os.ReadFile(filepath.Join(data, "rotary.db.lock"))
	if err != nil || !strings.Contains(string(lock), `"pid":`+strconv.Itoa(oldPID)) {
		t.Fatalf("lock file after SIGKILL: %q, %v; want it left naming pid %d", lock, err, oldPID)
	}
	before := s.logs.Len()
	s.start()
	again := s.logs.String()[before:]
	if !strings.Contains(again, "export ROTARY_TOKEN=$(cat ") || strings.Contains(again, s.rootToken) {
		t.Fatalf("the second start's output should read the token from its file and not print it:\n%s", again)
	}

	// A stopped daemon gives the lock back at once.
	s.stop()
	s.start()
}

// TestQuickstartDevRootTokenLine: with --dev-root-token the printed line
// exports the given token (printed on every start, as before).
func TestQuickstartDevRootTokenLine(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	if want := "\n    export ROTARY_TOKEN=" + s.rootToken + "\n"; !strings.Contains(s.logs.String(), want) {
		t.Fatalf("the output lacks %q:\n%s", want, s.logs.String())
	}
}

// TestWalkthroughSecrets runs "Walkthrough: secrets, tokens, keys and the
// audit log" and checks what its comments say.
func TestWalkthroughSecrets(t *testing.T) {
	t.Parallel()
	co := startMakeRun(t)
	out := co.run(t, "secrets walkthrough", readmeShellBlocks(t, "Walkthrough: secrets, tokens, keys and the audit log")...)
	if got := outputOf(t, out, "rotary secret get app/db --field password"); strings.TrimSpace(got) != "s3cret-1" {
		t.Errorf("secret get --field password printed %q, the README says s3cret-1", got)
	}
	if got := outputOf(t, out, "rotary secret get app/db --stage previous"); !strings.Contains(got, `"password":"s3cret-1"`) {
		t.Errorf("secret get --stage previous printed %q, want version 1 (s3cret-1)", got)
	}
	if got := outputOf(t, out, "rotary secret describe app/db"); strings.Contains(got, "s3cret") {
		t.Errorf("secret describe printed a value:\n%s", got)
	}
	// bash traces a command's own variables on a line of their own.
	refusal := regexp.MustCompile(`(?s)\+\[readme\] ROTARY_TOKEN=\S+\n\+\[readme\] rotary secret get app/db\nerror: permission denied: read on secret "app/db"\n\+\[readme\] echo refused\nrefused\n`)
	if !refusal.MatchString(out) {
		t.Errorf("the describe-only token was not refused the value as the README says:\n%s", out)
	}
	describe := regexp.MustCompile(`\+\[readme\] ROTARY_TOKEN=\S+\n\+\[readme\] rotary secret describe app/db\n((?:[^+].*\n)*)`).FindStringSubmatch(out)
	if describe == nil || !strings.Contains(describe[1], "app/db") || strings.Contains(describe[1], "s3cret") {
		t.Errorf("describe with the describe-only token printed %q", describe)
	}
	for _, f := range []string{"db.json", "new.json"} {
		if _, err := os.Stat(filepath.Join(co.dir, f)); err == nil {
			t.Errorf("the walkthrough left %s behind", f)
		}
	}
	c := co.s.root(t)
	if v := currentVersion(t, c, "app/db"); v != 2 {
		t.Fatalf("app/db: current version %d, want 2", v)
	}
	if pw := currentPassword(t, c, "app/db"); pw != "s3cret-2" {
		t.Fatalf("app/db: current password %q, want s3cret-2", pw)
	}
}

// TestWalkthroughPostgres runs "Walkthrough: rotate a PostgreSQL
// password" against the machine's PostgreSQL, as root. It uses the role
// app as written: runs of this test on one PostgreSQL take turns (an
// advisory lock), and the role is dropped at the end.
func TestWalkthroughPostgres(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const lockKey = 0x726f74617279 // "rotary": the README's role app is one per PostgreSQL
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", lockKey)
		conn.Close()
	})
	t.Cleanup(func() {
		_, _ = db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'`)
		if _, err := db.Exec("DROP ROLE IF EXISTS app"); err != nil {
			t.Errorf("drop role app: %v", err)
		}
	})
	co := startMakeRun(t)
	out := co.run(t, "PostgreSQL walkthrough", readmeShellBlocks(t, "Walkthrough: rotate a PostgreSQL password")...)

	if got := outputOf(t, out, "rotary rotation set prod/app-db --schedule @daily"); !regexp.MustCompile(`schedule: CRON_TZ=Europe/Berlin 0 3 \* \* \* -> (CRON_TZ=UTC )?@daily\n`).MatchString(got) {
		t.Errorf("rotation set --schedule @daily printed %q; the README says schedule: CRON_TZ=… -> @daily", got)
	}
	if got := outputOf(t, out, "psql -h 127.0.0.1 -U app -d postgres -Atc 'select current_user'"); strings.TrimSpace(got) != "app" {
		t.Errorf("psql with the rotated password printed %q, want app", got)
	}
	refusal := regexp.MustCompile(`(?s)\+\[readme\] psql -h 127\.0\.0\.1 -U app -d postgres -c 'select 1'\n[^+]*password authentication failed for user "app"[^+]*\+\[readme\] echo refused\nrefused\n`)
	if !refusal.MatchString(out) {
		t.Errorf("the first password was not refused after the rotation as the README says:\n%s", out)
	}
	c := co.s.root(t)
	if v := currentVersion(t, c, "prod/app-db"); v != 3 {
		t.Fatalf("prod/app-db: current version %d after a rotation and an emergency rotation, want 3", v)
	}
	user, pw := pgCurrent(c, "prod/app-db")
	mustLogin(t, "current", user, pw)
	if len(pw) != 40 {
		t.Errorf("the rotated password has %d characters; the config asked for 40", len(pw))
	}
	prev := okJSON[struct {
		Value string `json:"value"`
	}](c, "secret", "get", "prod/app-db", "--stage", "previous")
	if strings.Contains(prev.Value, pw) {
		t.Fatal("previous equals current")
	}
	_, prevPW := pgCurrentOf(t, prev.Value)
	mustRefuse(t, "previous (after the emergency rotation)", "app", prevPW)
	mustRefuse(t, "first", "app", "first-password-1")
	show := okJSON[map[string]any](c, "rotation", "show", "prod/app-db")
	if show["rotator"] != "postgres" || show["schedule"] != "" && show["schedule"] != nil {
		t.Errorf("rotation show after --clear-schedule: %v", show)
	}
}

// pgCurrentOf reads username and password of a db-credentials value.
func pgCurrentOf(t *testing.T, value string) (string, string) {
	t.Helper()
	var v struct{ Username, Password string }
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		t.Fatal("not a db-credentials value")
	}
	return v.Username, v.Password
}

// TestWalkthroughWatch runs "Walkthrough: follow rotations with watch,
// exec and render": the watch block in its own "terminal" (a background
// bash), the rest in the second one, and checks that the watch printed
// the rotation the README says it prints.
func TestWalkthroughWatch(t *testing.T) {
	t.Parallel()
	co := startMakeRun(t)
	blocks := readmeShellBlocks(t, "Walkthrough: follow rotations with watch, exec and render")
	if len(blocks) < 2 || !strings.HasPrefix(blocks[0], "rotary watch ") {
		t.Fatalf("want the watch block first, then the second terminal's:\n%q", blocks)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := co.bashCmd(ctx, co.secondTerminal(t)+blocks[0])
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	watch.Stderr = stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cancel()
		_ = watch.Wait()
		if t.Failed() {
			t.Logf("the watch terminal's stderr:\n%s", stderr.String())
		}
	})
	// The watch prints what happens once it is connected: rotate a probe
	// under app/* until it shows one.
	c := co.s.root(t)
	c.withStdin([]byte("sk_probe-1")).ok("secret", "create", "app/probe", "--type", "api-key", "--value-stdin")
	c.ok("rotation", "set", "app/probe", "--rotator", "random", "--schedule", "none")
	waitFor(t, time.Minute, "the README's watch to print a probe rotation", func() bool {
		c.ok("rotate", "app/probe", "--wait")
		select {
		case l := <-lines:
			return strings.Contains(l, `"secret":"app/probe"`)
		case <-time.After(2 * time.Second):
			return false
		}
	})

	out := co.run(t, "watch walkthrough", blocks[1:]...)
	if got := outputOf(t, out, "rotary exec --env API_KEY=app/api-key"); strings.TrimSpace(got) != "a key of 46 characters" {
		t.Errorf("rotary exec printed %q, the README says 46", got)
	}
	if got := outputOf(t, out, "grep -c '^api_key = sk_' app.conf"); strings.TrimSpace(got) != "1" {
		t.Errorf("grep -c printed %q, the README says 1", got)
	}
	if fi, err := os.Stat(filepath.Join(co.dir, "app.conf")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("app.conf: %v, %v; want mode 0600", fi, err)
	}
	want := `{"secret":"app/api-key","version":2}`
	deadline := time.After(time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the watch ended before printing %s", want)
			}
			if l == want {
				return
			}
			if !strings.Contains(l, `"secret":"app/probe"`) {
				t.Fatalf("the watch printed %q, the README says %s", l, want)
			}
		case <-deadline:
			t.Fatalf("the watch did not print %s within a minute", want)
		}
	}
}
