package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
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
