package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

func TestRestartPersistence(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		name := uniq("persist") + "/s"
		c.ok("secret", "create", name, "--value", "v1", "--tag", "a=b")
		c.ok("secret", "put", name, "--value", "v2")
		alias := uniq("pk")
		k := okJSON[client.Key](c, "key", "create", "--alias", alias)
		ct := strings.TrimSpace(c.withStdin([]byte("sealed")).ok("kms", "encrypt", "--key", "alias/"+alias, "--plaintext-stdin"))
		tok := createToken(c, `{"rules":[{"secrets":"*","actions":["read"]}]}`)

		s.restart()

		if got := c.ok("secret", "get", name); got != "v2" {
			t.Errorf("after restart: secret get = %q, want v2", got)
		}
		if got := c.ok("secret", "get", name, "--stage", "previous"); got != "v1" {
			t.Errorf("after restart: secret get --stage previous = %q, want v1", got)
		}
		if got := s.as(t, tok).ok("secret", "get", name); got != "v2" {
			t.Errorf("after restart: a token made before reads %q, want v2", got)
		}
		if d := okJSON[client.Key](c, "key", "describe", "alias/"+alias); d.ID != k.ID {
			t.Errorf("after restart: key %s is %+v, want id %s", alias, d, k.ID)
		}
		if got := c.withStdin([]byte(ct)).ok("kms", "decrypt", "--ciphertext-stdin"); got != "sealed" {
			t.Errorf("after restart: kms decrypt = %q, want sealed", got)
		}
		c.ok("audit", "verify")
	})
}

func TestSIGTERM(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	c.ok("secret", "create", uniq("term")+"/s", "--value", "x")
	start := time.Now()
	s.stop() // asserts exit 0 within stopTimeout
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the daemon took %v to stop after SIGTERM", d)
	}
	_, errOut, code := c.run("secret", "list")
	if code != exitUnreachable {
		t.Errorf("secret list against a stopped daemon: exit %d, want %d (%q)", code, exitUnreachable, errOut)
	}
	checkErrorLine(t, []string{"secret", "list"}, errOut, "cannot reach the rotary server at "+s.addr)
}

// signal sends sig to the daemon's process.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("%v: %v", sig, err)
	}
}

// waitExit waits for the daemon to exit and returns its exit code.
func (s *server) waitExit(timeout time.Duration) int {
	s.t.Helper()
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		s.t.Fatalf("the daemon did not exit within %v", timeout)
	}
	return s.exitStatus()
}

// historyOf returns the steps of a secret's only run, once it has ended.
func historyOf(t *testing.T, c cli, name string) (string, []string) {
	t.Helper()
	var runs client.RunList
	waitFor(t, 60*time.Second, "the rotation of "+name+" to end", func() bool {
		runs = okJSON[client.RunList](c, "rotation", "history", name, "-o", "json")
		return len(runs.Runs) == 1 && runs.Runs[0].State != "running"
	})
	var steps []string
	for _, st := range runs.Runs[0].Steps {
		steps = append(steps, st.Step+":"+st.Result)
	}
	return runs.Runs[0].State, steps
}

// SIGTERM while a rotation is inside a step: the daemon says what it
// waits for, lets the step end, exits 0, and the run resumes from the
// next step at the next start (each step ran once). A second SIGTERM
// during a shutdown that waits exits at once with 143, and that run
// resumes too.
func TestShutdownWithRotationInFlight(t *testing.T) {
	t.Parallel()
	release := filepath.Join(t.TempDir(), "release")
	s := startDev(t, withEnv("ROTARY_FAILPOINTS=set-before=wait:"+release))
	c := s.root(t)
	name := uniq("shut/a")
	c.ok("secret", "create", name, "--value", "v1")
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
	c.ok("rotate", name) // in the background
	s.waitLog("FAILPOINT set-before", 60*time.Second)
	s.signal(syscall.SIGTERM)
	s.waitLog("waiting for running rotations to end their step", 30*time.Second)
	if !strings.Contains(s.logs.String(), name) {
		t.Fatalf("the shutdown message does not name the rotation it waits for:\n%s", s.logs.String())
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := s.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("a shutdown that waited for a step exited %d, want 0", code)
	}
	s.waitLog("rotation cut off at shutdown", time.Second)
	s.env = slicesWithout(s.env, "ROTARY_FAILPOINTS=")
	s.start()
	state, steps := historyOf(t, c, name)
	if state != "succeeded" || strings.Join(steps, " ") != "create:ok set:ok test:ok finish:ok cleanup:ok" {
		t.Fatalf("after the restart the run ended %s with history %v, want succeeded, each step once", state, steps)
	}
	s.stop()

	// A step that never ends (held for good): the second SIGTERM exits
	// at once instead of waiting for the shutdown timeout.
	s.env = append(s.env, "ROTARY_FAILPOINTS=test-before")
	s.start()
	other := uniq("shut/b")
	c.ok("secret", "create", other, "--value", "v1")
	c.ok("rotation", "set", other, "--rotator", "random", "--schedule", "@every 24h")
	c.ok("rotate", other)
	s.waitLog("FAILPOINT test-before", 60*time.Second)
	s.signal(syscall.SIGTERM)
	waitFor(t, 30*time.Second, "the daemon to say it is shutting down", func() bool {
		return strings.Count(s.logs.String(), "Send it again to exit at once") == 3
	})
	start := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(5 * time.Second); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("the second SIGTERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the second SIGTERM took %v to end the daemon", d)
	}
	s.env = slicesWithout(s.env, "ROTARY_FAILPOINTS=")
	s.start()
	if state, steps := historyOf(t, c, other); state != "succeeded" || strings.Join(steps, " ") != "create:ok set:ok test:ok finish:ok cleanup:ok" {
		t.Fatalf("after the forced exit the run ended %s with history %v", state, steps)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	c := cli{t: t, addr: addr, token: "x"}
	c.fail(exitUnreachable, []string{"cannot reach the rotary server at " + addr}, "secret", "get", "a")
	c.fail(exitUnreachable, []string{"cannot reach"}, "key", "rewrap")
	c.withStdin([]byte("x")).fail(exitUnreachable, []string{"cannot reach"}, "kms", "encrypt", "--key", "k", "--plaintext-stdin")
}

func TestServerBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := cli{t: t, addr: "http://127.0.0.1:1"}
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := writeFile(p, body); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c.fail(exitFailure, []string{"unknown key", "line 2", "stroe"}, "server", "--config",
		write("unknown.yaml", "root_key: {file: /nonexistent}\nstroe: {sqlite: /tmp/x.db}\n"))
	c.fail(exitFailure, []string{"store.postgres", "$env{ROTARY_E2E_NOT_SET}"}, "server", "--config",
		write("env.yaml", "root_key: {file: /nonexistent}\nstore:\n  postgres: $env{ROTARY_E2E_NOT_SET}\n"))
	c.fail(exitUsage, []string{"--config"}, "server")
	// a wrong root key for an existing dev store
	s := startDev(t)
	s.root(t).ok("secret", "create", uniq("rk")+"/s", "--value", "x")
	s.stop()
	if err := writeFile(s.dataDir+"/root.key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"); err != nil {
		t.Fatal(err)
	}
	// It must refuse to start: exit non-zero with an "error: ..." line.
	cmd := exec.Command(rotaryBin, s.args...)
	cmd.Env = cleanEnv()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	select {
	case <-done:
	case <-time.After(readyTimeout):
		t.Fatalf("rotary server with a wrong root key is still running after %v:\n%s", readyTimeout, logs.String())
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("rotary server with a wrong root key exited 0:\n%s", logs.String())
	} else if !strings.Contains(logs.String(), "error: ") {
		t.Errorf("rotary server with a wrong root key: no \"error: ...\" line:\n%s", logs.String())
	}
}

// TestCanary writes a canary value through every path that handles values
// and checks it never appears in the daemon's logs, /metrics or the audit
// log.
func TestCanary(t *testing.T) {
	t.Parallel()
	s := startDev(t, withArgs("--log-level", "debug"))
	c := s.root(t)
	canary := "canary-" + randHex(16)
	name := uniq("canary") + "/s"
	c.ok("secret", "create", name, "--value", canary)
	c.withStdin([]byte(`{"password":"`+canary+`2"}`)).ok("secret", "put", name, "--value-stdin")
	if got := c.ok("secret", "get", name, "--field", "password"); got != canary+"2" {
		t.Fatalf("secret get --field password = %q", got)
	}
	c.ok("secret", "get", name, "--version", "1", "-o", "json")
	// values sent where they are refused must not be echoed either
	c.fail(exitUsage, nil, "secret", "create", name+"-bad", "--type", "db-credentials", "--value", canary+"3")
	c.fail(exitUsage, nil, "secret", "create", name+"-bad2", "--type", "certificate", "--value", canary+"4")
	ct := strings.TrimSpace(c.withStdin([]byte(canary+"5")).ok("kms", "encrypt", "--key", "alias/default", "--plaintext-stdin", "--context", "c=ctx"))
	c.withStdin([]byte(ct)).ok("kms", "decrypt", "--ciphertext-stdin", "--context", "c=ctx")
	c.withStdin([]byte(ct)).run("kms", "decrypt", "--ciphertext-stdin", "--context", "c=wrong")
	tok := createToken(c, `{"rules":[{"secrets":"`+name+`","actions":["describe"]}]}`)
	s.as(t, tok).run("secret", "get", name)
	s.as(t, canary+"tok").run("secret", "get", name)

	status, metrics := s.httpDo(t, "GET", "/metrics", "", "", nil)
	if status != http.StatusOK {
		t.Errorf("GET /metrics: %d", status)
	}
	audit := c.ok("audit", "list", "-o", "json")
	auditText := c.ok("audit", "list")
	logs := s.logs.String()
	for what, text := range map[string]string{"daemon logs": logs, "/metrics": string(metrics), "audit list -o json": audit, "audit list": auditText} {
		if strings.Contains(text, canary) {
			i := strings.Index(text, canary)
			t.Errorf("the canary value appears in %s: …%s…", what, text[max(0, i-200):min(len(text), i+100)])
		}
	}
	if strings.Contains(logs, ct[:20]) {
		t.Errorf("the daemon logs a KMS ciphertext")
	}
	if !strings.Contains(string(metrics), "# TYPE") {
		t.Errorf("/metrics is not Prometheus text: %.200s", metrics)
	}
}
