package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// jsonError runs a command with -o json that must fail with exit want and
// code; its stderr must be exactly one JSON line {"error","code"} and its
// stdout empty.
func jsonError(c cli, want int, code string, args ...string) string {
	c.t.Helper()
	out, errOut, exit := c.run(append(args, "-o", "json")...)
	if exit != want {
		c.t.Fatalf("rotary %s -o json: exit %d, want %d (stderr %q)", strings.Join(args, " "), exit, want, errOut)
	}
	if out != "" {
		c.t.Fatalf("rotary %s -o json: stdout %q on failure, want none", strings.Join(args, " "), out)
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	dec := json.NewDecoder(strings.NewReader(lines[0]))
	dec.DisallowUnknownFields()
	if len(lines) != 1 || dec.Decode(&e) != nil || e.Error == "" {
		c.t.Fatalf("rotary %s -o json: stderr %q, want one line {\"error\":...,\"code\":...}", strings.Join(args, " "), errOut)
	}
	if e.Code != code {
		c.t.Fatalf("rotary %s -o json: code %q, want %q (error %q)", strings.Join(args, " "), e.Code, code, e.Error)
	}
	return e.Error
}

// With -o json every failure is one JSON line on stderr with a stable code
// word and the exit code of text mode; in text mode the same failure is
// still "error: ...".
func TestCLIJSONErrors(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("ux/json")
	c.ok("secret", "create", name)
	reader := s.as(t, createToken(c, `{"rules":[{"secrets":"ux/other*","actions":["read"]}]}`))

	cases := []struct {
		c    cli
		exit int
		code string
		args []string
	}{
		{c, exitNotFound, "not_found", []string{"secret", "get", name + "-missing"}},
		{reader, exitDenied, "permission_denied", []string{"secret", "get", name}},
		{s.as(t, "e2e-wrong-"+randHex(8)), exitDenied, "unauthenticated", []string{"secret", "list"}},
		{c, exitUsage, "invalid", []string{"rotation", "set", name, "--rotator", "random", "--schedule", "bogus"}},
		{c, exitFailure, "conflict", []string{"secret", "create", name}},
		{c, exitUsage, "usage", []string{"secret", "get", name, "--stage", "old"}},
		{c, exitUsage, "usage", []string{"secrets"}},
		{c, exitUsage, "usage", []string{"secret", "get", "--bogus", name}}, // a flag error before -o is parsed
		{cli{t: t, addr: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), token: "x"},
			exitUnreachable, "unavailable", []string{"secret", "list"}},
	}
	for _, tc := range cases {
		msg := jsonError(tc.c, tc.exit, tc.code, tc.args...)
		// Text mode: the same exit code and the same reason.
		tc.c.fail(tc.exit, []string{msg}, tc.args...)
	}
	// -o json is not a way to hide the reason: it names what was wrong.
	if msg := jsonError(c, exitUsage, "usage", "secret", "get", name, "--stage", "old"); !strings.Contains(msg, "--stage") {
		t.Errorf("json error %q does not name the flag", msg)
	}
}

// An unknown command suggests the one meant, on the error line.
func TestCLIDidYouMean(t *testing.T) {
	t.Parallel()
	c := cli{t: t, addr: "http://127.0.0.1:1", token: "x"}
	c.fail(exitUsage, []string{`unknown command "secrets" for "rotary"`, `did you mean "secret"`}, "secrets")
	c.fail(exitUsage, []string{`unknown command "lsit" for "rotary secret"`, `did you mean "list"`}, "secret", "lsit")
	// Nothing close: no suggestion, a pointer to the help instead.
	errOut := c.fail(exitUsage, []string{`unknown command "zzzz"`, `rotary --help`}, "zzzz")
	if strings.Contains(errOut, "did you mean") {
		t.Errorf("rotary zzzz suggested something: %q", errOut)
	}
}

// background is a CLI process running while the test goes on.
type background struct {
	args      []string
	out, errb *syncBuffer
	cmd       *exec.Cmd
	done      chan struct{}
	ctx       context.Context
}

// runBackground starts the CLI and returns at once.
func runBackground(t *testing.T, s *server, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	b := &background{args: args, out: &syncBuffer{}, errb: &syncBuffer{}, done: make(chan struct{}), ctx: ctx}
	b.cmd = exec.CommandContext(ctx, cliBin, args...)
	b.cmd.Env = cleanEnv("ROTARY_ADDR="+s.addr, "ROTARY_TOKEN="+s.rootToken)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.errb
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { cancel(); <-b.done })
	return b
}

// wait waits for the process to end and returns its stdout, stderr and
// exit code.
func (b *background) wait(t *testing.T) (string, string, int) {
	t.Helper()
	select {
	case <-b.done:
	case <-b.ctx.Done():
		t.Fatalf("rotary %s did not end within %v", strings.Join(b.args, " "), cliTimeout)
	}
	return b.out.String(), b.errb.String(), b.cmd.ProcessState.ExitCode()
}

// A client waiting on a rotation when the daemon stops says the daemon
// went away and that the rotation resumes when it starts again, exit 5,
// never "EOF"; the rotation then does resume. Both ways a daemon stops:
// a second SIGTERM that exits at once (the connection drops), and a
// graceful stop that answers 503.
func TestCLIRotateWaitDaemonStops(t *testing.T) {
	t.Parallel()
	release := filepath.Join(t.TempDir(), "release")
	s := startDev(t, withEnv("ROTARY_FAILPOINTS=create-before-store=wait:"+release))
	c := s.root(t)

	// 1. The daemon exits at once: the connection drops mid-request.
	name := uniq("ux/gone")
	c.withStdin([]byte("v1")).ok("secret", "create", name, "--value-stdin")
	c.ok("rotation", "set", name, "--rotator", "random")
	rot := runBackground(t, s, "rotate", name, "--wait")
	watch := runBackground(t, s, "watch")
	s.waitLog("FAILPOINT create-before-store", 60*time.Second)
	s.signal(syscall.SIGTERM)
	s.waitLog("Send it again to exit at once", 30*time.Second)
	s.signal(syscall.SIGTERM)
	s.waitExit(30 * time.Second)
	_, errOut, code := rot.wait(t)
	checkErrorLine(t, []string{"rotate", name, "--wait"}, errOut, "went away", "resumes", "starts again", "rotary rotation history "+name)
	if code != exitUnreachable {
		t.Fatalf("rotate --wait when the daemon exited: exit %d, want %d (stderr %q)", code, exitUnreachable, errOut)
	}
	if strings.Contains(errOut, "EOF") {
		t.Fatalf("rotate --wait when the daemon exited: %q", errOut)
	}

	// The rotation resumes at the next start (without the failpoint).
	s.env = slicesWithout(s.env, "ROTARY_FAILPOINTS=")
	s.start()
	waitFor(t, 60*time.Second, "the cut-off rotation to resume and succeed", func() bool {
		runs := okJSON[client.RunList](c, "rotation", "history", name)
		return len(runs.Runs) == 1 && runs.Runs[0].State == "succeeded"
	})
	// watch, meanwhile, said the daemon went away, reconnected and printed
	// the resumed rotation.
	waitFor(t, 60*time.Second, "watch to print the resumed rotation", func() bool {
		return strings.Contains(watch.out.String(), `"rotated"`)
	})
	if w := watch.errb.String(); !strings.Contains(w, "went away") || strings.Contains(w, "EOF") {
		t.Errorf("watch when the daemon stopped said %q, want that it went away, not EOF", w)
	}

	// 2. A graceful stop: the step ends, the daemon answers 503.
	s.stop()
	s.env = append(s.env, "ROTARY_FAILPOINTS=create-before-store=wait:"+release)
	s.start()
	other := uniq("ux/stop")
	c.withStdin([]byte("v1")).ok("secret", "create", other, "--value-stdin")
	c.ok("rotation", "set", other, "--rotator", "random")
	rot = runBackground(t, s, "rotate", other, "--wait", "-o", "json")
	waitFor(t, 60*time.Second, "the second rotation to reach its failpoint", func() bool {
		return strings.Count(s.logs.String(), "FAILPOINT create-before-store") == 2 // the logs span the restarts
	})
	s.signal(syscall.SIGTERM)
	s.waitLog("waiting for running rotations to end their step", 30*time.Second)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.waitExit(30 * time.Second)
	_, errOut, code = rot.wait(t)
	var e struct{ Error, Code string }
	if err := json.Unmarshal([]byte(errOut), &e); err != nil || code != exitUnreachable || e.Code != "unavailable" ||
		!strings.Contains(e.Error, "shutting down") || !strings.Contains(e.Error, "resumes") {
		t.Fatalf("rotate --wait -o json during a graceful stop: exit %d, stderr %q; want exit %d, code unavailable, shutting down, resumes",
			code, errOut, exitUnreachable)
	}
}

// secret list fills the rotation columns from the list answer (no
// describe per secret) and --deleted shows the purge time; a token that
// may list but not describe gets no rotation details.
func TestCLISecretListRotation(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	p := uniq("ux/list") + "/"
	c.withStdin([]byte("v1")).ok("secret", "create", p+"a", "--value-stdin")
	c.ok("secret", "create", p+"b")
	c.withStdin([]byte("v1")).ok("secret", "create", p+"c", "--value-stdin")
	c.ok("secret", "create", p+"gone")
	c.ok("rotation", "set", p+"a", "--rotator", "random", "--schedule", "@daily")
	c.ok("rotation", "set", p+"c", "--rotator", "random", "--schedule", "@every 36h")
	c.ok("rotation", "disable", p+"c")
	c.ok("secret", "delete", p+"gone")

	list := okJSON[client.SecretList](c, "secret", "list", "--prefix", p)
	byName := map[string]client.Secret{}
	for _, sec := range list.Secrets {
		byName[sec.Name] = sec
	}
	if r := byName[p+"a"].Rotation; r == nil || r.Rotator != "random" || r.NextRotationAt == nil || !r.Enabled {
		t.Fatalf("list -o json: rotation of %sa = %+v, want random, enabled, with a next rotation", p, r)
	}
	if r := byName[p+"b"].Rotation; r != nil {
		t.Fatalf("list -o json: %sb has no rotation, got %+v", p, r)
	}
	if _, ok := byName[p+"gone"]; ok {
		t.Fatalf("list without --deleted shows the deleted secret")
	}

	out := c.ok("secret", "list", "--prefix", p)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "ROTATOR") || !strings.Contains(lines[0], "SCHEDULE") || !strings.Contains(lines[0], "NEXT ROTATION") {
		t.Fatalf("secret list:\n%s\nwant a header with ROTATOR, SCHEDULE, NEXT ROTATION and three rows", out)
	}
	row := func(n string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, n+" ") {
				return l
			}
		}
		t.Fatalf("secret list has no row for %s:\n%s", n, out)
		return ""
	}
	if a := row(p + "a"); !strings.Contains(a, "random") || !strings.Contains(a, "@daily") || !strings.Contains(a, " in ") || strings.Contains(a, "CRON_TZ") {
		t.Errorf("row of a scheduled secret: %q, want random, @daily and when", a)
	}
	if cRow := row(p + "c"); !strings.Contains(cRow, "@every 36h") || !strings.Contains(cRow, "none (disabled)") {
		t.Errorf("row of a disabled rotation: %q, want @every 36h and none (disabled)", cRow)
	}

	out = c.ok("secret", "list", "--prefix", p, "--deleted")
	if !strings.Contains(out, "PURGE AT") {
		t.Fatalf("secret list --deleted:\n%s\nwant a PURGE AT column", out)
	}
	gone := okJSON[client.SecretList](c, "secret", "list", "--prefix", p+"gone", "--deleted").Secrets
	if len(gone) != 1 || gone[0].PurgeAt == nil {
		t.Fatalf("list --deleted -o json: %+v, want the deleted secret with its purge time", gone)
	}
	purgeDay := gone[0].PurgeAt.Local().Format("2006-01-02")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, p+"gone ") && (!strings.Contains(l, "deleted") || !strings.Contains(l, purgeDay) || !strings.Contains(l, "in 7d")) {
			t.Errorf("row of the deleted secret: %q, want deleted and its purge time %s (in 7d)", l, purgeDay)
		}
	}

	// May list, may not describe: names only, no rotation.
	lister := s.as(t, createToken(c, `{"rules":[{"secrets":"`+p+`*","actions":["list"]}]}`))
	for _, sec := range okJSON[client.SecretList](lister, "secret", "list", "--prefix", p).Secrets {
		if sec.Rotation != nil {
			t.Fatalf("a token without describe sees the rotation of %s: %+v", sec.Name, sec.Rotation)
		}
	}
}

// Schedules read as written, next times in the schedule's own zone, the
// window explained; status and rotation show use the same words.
func TestCLIScheduleDisplay(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	berlin, daily := uniq("ux/berlin"), uniq("ux/daily")
	c.ok("secret", "create", berlin)
	c.ok("secret", "create", daily)
	set := c.ok("rotation", "set", berlin, "--rotator", "random", "--schedule", "CRON_TZ=Europe/Berlin 0 3 * * *", "--window", "2h")
	if !strings.Contains(set, "window: (none) -> 2h\n") {
		t.Errorf("rotation set printed:\n%s\nwant the window as written (2h)", set)
	}
	show := c.ok("rotation", "show", berlin)
	zone := time.Now().In(mustZone(t, "Europe/Berlin")).Format("MST") // CET or CEST
	for _, want := range []string{"CRON_TZ=Europe/Berlin 0 3 * * *", "2h: each run starts at a random point within 2h after its scheduled time", " " + zone + " ("} {
		if !strings.Contains(show, want) {
			t.Errorf("rotation show:\n%s\nwant %q", show, want)
		}
	}
	if strings.Contains(show, "2h0m0s") {
		t.Errorf("rotation show:\n%s\nshows the window as 2h0m0s", show)
	}
	// Every next time is between 03:00 and 05:00 Berlin time.
	for _, n := range okJSON[client.RotationShow](c, "rotation", "show", berlin).Next {
		h := n.In(mustZone(t, "Europe/Berlin")).Hour()
		if h < 3 || h >= 5 || !strings.Contains(show, n.In(mustZone(t, "Europe/Berlin")).Format("2006-01-02 15:04:05 MST")) {
			t.Errorf("next rotation %v: want it shown in Berlin time between 03:00 and 05:00:\n%s", n, show)
		}
	}

	c.ok("rotation", "set", daily, "--rotator", "random", "--schedule", "@daily")
	show = c.ok("rotation", "show", daily)
	if !strings.Contains(show, "Schedule:        @daily\n") && !strings.Contains(show, "@daily\n") || strings.Contains(show, "CRON_TZ=UTC") {
		t.Errorf("rotation show of @daily:\n%s\nwant @daily as written", show)
	}
	c.ok("rotation", "disable", daily)
	show = c.ok("rotation", "show", daily)
	status := c.ok("status")
	for _, words := range []string{"none (disabled)"} {
		if !strings.Contains(show, words) || !strings.Contains(status, words) {
			t.Errorf("status and rotation show differ on %q:\n%s\n%s", words, show, status)
		}
	}
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, berlin+" ") && (!strings.Contains(l, "CRON_TZ=Europe/Berlin 0 3 * * *") || !strings.Contains(l, "scheduled")) {
			t.Errorf("status row %q: want the schedule as written and state scheduled", l)
		}
		if strings.HasPrefix(l, daily+" ") && (!strings.Contains(l, "@daily") || strings.Contains(l, "CRON_TZ")) {
			t.Errorf("status row %q: want @daily", l)
		}
	}
	if !strings.Contains(status, "LAST ROTATED") || !strings.Contains(status, "NEXT ROTATION") || !strings.Contains(status, "LAST ERROR") ||
		!strings.Contains(show, "Last rotated:") || !strings.Contains(show, "Next rotation:") {
		t.Errorf("status and rotation show name the same things differently:\n%s\n%s", status, show)
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// ptyRun runs the CLI with a terminal (script(1)'s pty) as its standard
// output and returns what the terminal showed.
func ptyRun(t *testing.T, s *server, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script(1) (util-linux, in bsdutils) is needed: %v", err)
	}
	inner := strconvQuote(cliBin)
	for _, a := range args {
		inner += " " + shellQuote(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", inner, "/dev/null")
	cmd.Env = cleanEnv("ROTARY_ADDR="+s.addr, "ROTARY_TOKEN="+s.rootToken)
	cmd.Stdin = bytes.NewReader(nil)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("script -qec %s: %v (output %q)", inner, err, out)
	}
	return strings.ReplaceAll(string(out), "\r\n", "\n")
}

// secret get --field ends its line on a terminal and stays byte for byte
// when piped; token create says "shown only once" only on a terminal.
func TestCLITerminalOutput(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("ux/tty")
	c.withStdin([]byte(`{"username":"app","password":"s3cr3t"}`)).ok("secret", "create", name, "--type", "key-value", "--value-stdin")

	if out := c.ok("secret", "get", name, "--field", "password"); out != "s3cr3t" {
		t.Fatalf("piped secret get --field: %q, want %q with no newline", out, "s3cr3t")
	}
	if out := ptyRun(t, s, "secret", "get", name, "--field", "password"); out != "s3cr3t\n" {
		t.Fatalf("secret get --field on a terminal: %q, want %q", out, "s3cr3t\n")
	}
	// The whole value is never changed, terminal or not.
	if out := ptyRun(t, s, "secret", "get", name); out != `{"username":"app","password":"s3cr3t"}` {
		t.Fatalf("secret get on a terminal: %q, want the value byte for byte", out)
	}

	pol := uniq("pol")
	c.withStdin([]byte(`{"rules":[{"secrets":"ux/*","actions":["read"]}]}`)).ok("policy", "put", pol, "--file", "-")
	out, errOut, code := c.run("token", "create", "--policy", pol)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "rot_") {
		t.Fatalf("piped token create: exit %d, stdout %q; want the token alone on one line", code, out)
	}
	if strings.Contains(errOut, "shown only once") || !strings.Contains(errOut, "policies "+pol) {
		t.Fatalf("piped token create: stderr %q, want the token's details without the terminal reminder", errOut)
	}
	if tty := ptyRun(t, s, "token", "create", "--policy", pol); !strings.Contains(tty, "shown only once") {
		t.Fatalf("token create on a terminal: %q, want the \"shown only once\" reminder", tty)
	}
}

// Completion through the real binary: secret names by prefix, policies,
// rotators; nothing (and no error) when the daemon refuses.
func TestCLICompletion(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	p := uniq("ux/comp")
	c.ok("secret", "create", p+"/one")
	c.ok("secret", "create", p+"/two")
	c.ok("secret", "create", uniq("ux/elsewhere"))
	pol := uniq("pol")
	c.withStdin([]byte(`{"rules":[{"secrets":"ux/*","actions":["read"]}]}`)).ok("policy", "put", pol, "--file", "-")

	complete := func(c cli, args ...string) []string {
		t.Helper()
		out, errOut, code := c.run(append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("rotary __complete %q: exit %d, stderr %q", args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
			t.Fatalf("rotary __complete %q: %q, want candidates and a :directive line", args, out)
		}
		return lines[:len(lines)-1]
	}
	if got := complete(c, "secret", "get", p+"/"); strings.Join(got, " ") != p+"/one "+p+"/two" {
		t.Fatalf("__complete secret get %s/: %q, want the two secrets under it", p, got)
	}
	if got := complete(c, "rotate", p+"/t"); strings.Join(got, " ") != p+"/two" {
		t.Fatalf("__complete rotate %s/t: %q", p, got)
	}
	if got := complete(c, "exec", "--env", "PW="+p+"/o"); strings.Join(got, " ") != "PW="+p+"/one" {
		t.Fatalf("__complete exec --env PW=%s/o: %q", p, got)
	}
	if got := complete(c, "secret", "get", p+"/one", ""); len(got) != 0 {
		t.Fatalf("__complete after the NAME: %q, want nothing", got)
	}
	if got := complete(c, "token", "create", "--policy", pol[:5]); !contains(got, pol) {
		t.Fatalf("__complete token create --policy: %q, want %s", got, pol)
	}
	if got := complete(c, "rotation", "set", p+"/one", "--rotator", ""); strings.Join(got, " ") != "postgres mysql redis random" {
		t.Fatalf("__complete --rotator: %q, want the built-in rotators", got)
	}
	// A wrong token: no candidates, no error text in the completion.
	bad := s.as(t, "e2e-wrong-"+randHex(8))
	out, errOut, code := bad.run("__complete", "secret", "get", p+"/")
	if code != 0 || strings.Contains(out, p) || strings.Contains(errOut, "error") {
		t.Fatalf("__complete with a wrong token: exit %d, stdout %q, stderr %q; want no candidates and no error", code, out, errOut)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// rotary version and rotary --version print the same line: the version
// and the commit.
func TestCLIVersion(t *testing.T) {
	t.Parallel()
	c := cli{t: t, addr: "http://127.0.0.1:1", token: ""}
	v1, v2 := c.ok("version"), c.ok("--version")
	if v1 != v2 || !strings.HasPrefix(v1, "rotary ") || !strings.Contains(v1, "(commit ") {
		t.Fatalf("rotary version %q, rotary --version %q: want the same line with the version and commit", v1, v2)
	}
	var j struct{ Version, Commit string }
	if out := c.ok("version", "-o", "json"); json.Unmarshal([]byte(out), &j) != nil || j.Version == "" || j.Commit == "" {
		t.Fatalf("rotary version -o json: %q", out)
	}
}

// Errors are one line that names each layer once: no "rotator postgres:
// postgres: config:", no "set: postgres: set:", no "invalid input: ...
// invalid input:".
func TestCLIErrorsNameEachLayerOnce(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("ux/pg")
	role := "nobody_" + randHex(4) // no such role: the rotation fails at set
	val := `{"engine":"postgres","host":"127.0.0.1","port":5432,"username":"` + role + `","password":"pw-` + randHex(8) + `","dbname":"test","sslmode":"disable"}`
	c.withStdin([]byte(val)).ok("secret", "create", name, "--type", "db-credentials", "--value-stdin")

	repeated := func(errOut string) {
		t.Helper()
		line := strings.TrimPrefix(strings.TrimSpace(errOut), "error: ")
		parts := strings.Split(line, ": ")
		for i := 1; i < len(parts); i++ {
			for j := 0; j < i; j++ {
				if parts[i] == parts[j] && len(parts[i]) > 0 {
					t.Errorf("error line %q repeats %q", errOut, parts[i])
				}
			}
		}
	}
	errOut := c.fail(exitUsage, []string{`invalid input: rotator postgres: config: strategy "bogus"`},
		"rotation", "set", name, "--rotator", "postgres", "--config-json", `{"strategy":"bogus"}`)
	repeated(errOut)
	errOut = c.fail(exitUsage, []string{`invalid input: rotator: plugin "nope-x" is not registered`},
		"rotation", "set", name, "--rotator", "plugin:nope-x")
	repeated(errOut)

	c.ok("rotation", "set", name, "--rotator", "postgres")
	// The role does not exist: neither stored password logs in, and the
	// line says so once, with what fixes it.
	errOut = c.fail(exitFailure, []string{"rotation failed: " + name + ": neither the current nor the pending password of role " + strconvQuote(role) + " logs in",
		`store the working one with "rotary secret put ` + name + `"`}, "rotate", name, "--wait")
	repeated(errOut)
	if strings.Contains(errOut, "rotate "+name+":") {
		t.Errorf("rotate --wait: %q names the rotation twice", errOut)
	}
	if strings.Contains(errOut, "pw-") {
		t.Fatalf("the error line shows the password: %q", errOut)
	}
	msg := jsonError(c, exitFailure, "rotation_failed", "rotate", name, "--wait")
	if !strings.HasPrefix(msg, "rotation failed: "+name+": neither the current nor the pending password") {
		t.Errorf("rotate --wait -o json: %q", msg)
	}
}
