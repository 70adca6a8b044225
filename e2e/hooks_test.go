package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// hookEvent is the part of the event JSON the hook tests check.
type hookEvent struct {
	ID      int64  `json:"id"`
	Event   string `json:"event"`
	Secret  string `json:"secret"`
	Version int64  `json:"version"`
}

// webhookRecv is an httptest server recording every POST; status decides
// each answer.
type webhookRecv struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []webhookReq
	status  func(n int) int // n: 1-based request count
	started atomic.Int32    // requests received, answered or not
}

type webhookReq struct {
	header http.Header
	body   []byte
	status int
	ev     hookEvent
}

func newWebhookRecv(t *testing.T, status func(n int) int) *webhookRecv {
	w := &webhookRecv{status: status}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := int(w.started.Add(1))
		code := w.status(n)
		w.mu.Lock()
		var ev hookEvent
		_ = json.Unmarshal(body, &ev)
		w.reqs = append(w.reqs, webhookReq{header: r.Header.Clone(), body: body, status: code, ev: ev})
		w.mu.Unlock()
		rw.WriteHeader(code)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookRecv) all() []webhookReq {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.reqs)
}

// ok returns the requests answered 2xx.
func (w *webhookRecv) ok() []webhookReq {
	var out []webhookReq
	for _, r := range w.all() {
		if r.status/100 == 2 {
			out = append(out, r)
		}
	}
	return out
}

func hmacSig(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// readEvents reads the JSON lines an exec hook appended to path.
func readEvents(t *testing.T, path string) []hookEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var evs []hookEvent
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var ev hookEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("hook output line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func withRootTokenEnv() serverOption {
	return func(s *server) { s.env = append(s.env, "ROTARY_ROOT_TOKEN="+s.rootToken) }
}

// TestHooksExecAndWebhook: an exec hook and a signed webhook fire once per
// rotation, in order, with the contract's event JSON; the exec hook sees
// only PATH and the ROTARY_EVENT/SECRET/VERSION variables; the webhook's
// signature verifies with its secret and not with another; the secret
// never shows in the log or the listing.
func TestHooksExecAndWebhook(t *testing.T) {
	t.Parallel()
	canary := "daemon-env-canary-" + randHex(8)
	s := startDev(t, withRootTokenEnv(), withEnv("E2E_DAEMON_CANARY="+canary))
	c := s.root(t)
	dir := t.TempDir()
	name := uniq("hooks/app")
	c.withStdin([]byte("v1")).ok("secret", "create", name, "--value-stdin")
	c.ok("rotation", "set", name, "--rotator", "random")

	// exec: a script without a shell in between; it appends the event from
	// stdin and records its environment.
	script := filepath.Join(dir, "hook.sh")
	out, envOut := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "env.txt")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat >> \"$1\"\necho >> \"$1\"\n/usr/bin/env > \"$2\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	c.ok("hook", "add", "rec", "--on", "finished", "--secrets", "hooks/*", "--exec", script+" "+out+" "+envOut)

	recv := newWebhookRecv(t, func(int) int { return http.StatusNoContent })
	secret := "whsec-" + randHex(24)
	secretFile := filepath.Join(dir, "hook.key")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	added := okJSON[client.AddHookResponse](c, "hook", "add", "notify", "--on", "finished", "--webhook", recv.srv.URL+"/rotary", "--secret-file", secretFile)
	if added.Secret != "" || added.Kind != "webhook" {
		t.Fatalf("hook add with --secret-file answered secret %q kind %q, want no secret, webhook", added.Secret, added.Kind)
	}
	// A hook on another secret glob never fires for this one.
	c.ok("hook", "add", "other", "--on", "all", "--secrets", "elsewhere/*", "--shell", "--exec", "echo other >> "+filepath.Join(dir, "other.txt"))

	const rotations = 3
	for range rotations {
		c.ok("rotate", name, "--wait")
	}
	waitFor(t, 30*time.Second, "3 exec hook events", func() bool { return len(readEvents(t, out)) >= rotations })
	waitFor(t, 30*time.Second, "3 webhook deliveries", func() bool { return len(recv.ok()) >= rotations })

	evs := readEvents(t, out)
	if len(evs) != rotations {
		t.Fatalf("exec hook got %d events, want %d (once per rotation): %+v", len(evs), rotations, evs)
	}
	for i, ev := range evs {
		if ev.Event != "rotated" || ev.Secret != name || ev.Version != int64(i+2) || ev.ID == 0 {
			t.Errorf("exec event %d = %+v, want rotated %s version %d with an id", i, ev, name, i+2)
		}
	}
	// The hooks never see a value: neither the rotated one nor the first.
	cur := c.ok("secret", "get", name)
	raw, _ := os.ReadFile(out)
	for _, r := range recv.all() {
		raw = append(raw, r.body...)
	}
	if strings.Contains(string(raw), cur) || strings.Contains(string(raw), `"value"`) {
		t.Fatalf("a hook was given a secret value")
	}
	env, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"ROTARY_ROOT_TOKEN", s.rootToken, canary, "HOME=", "ROTARY_ADDR"} {
		if strings.Contains(string(env), bad) {
			t.Errorf("exec hook environment contains %q:\n%s", bad, env)
		}
	}
	last := evs[len(evs)-1]
	for _, want := range []string{"ROTARY_SECRET=" + name, "ROTARY_VERSION=" + strconv.FormatInt(last.Version, 10), "ROTARY_EVENT={", "PATH="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("exec hook environment lacks %q:\n%s", want, env)
		}
	}

	got := recv.ok()
	if len(got) != rotations {
		t.Fatalf("webhook got %d successful deliveries, want %d", len(got), rotations)
	}
	for i, r := range got {
		if r.ev.Version != int64(i+2) || r.ev.Event != "rotated" {
			t.Errorf("webhook delivery %d = %+v, want rotated version %d (in order)", i, r.ev, i+2)
		}
		ts := r.header.Get("X-Rotary-Timestamp")
		if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
			t.Errorf("X-Rotary-Timestamp %q: not a current unix time", ts)
		}
		sig := r.header.Get("X-Rotary-Signature")
		if want := hmacSig([]byte(secret), ts, r.body); !hmac.Equal([]byte(sig), []byte(want)) {
			t.Errorf("X-Rotary-Signature %q does not verify with the hook's secret (want %q)", sig, want)
		}
		// Negative controls: another secret, or another body, does not verify.
		if sig == hmacSig([]byte(secret+"x"), ts, r.body) || sig == hmacSig([]byte(secret), ts, append(r.body, ' ')) {
			t.Errorf("signature verifies with another secret or body")
		}
		if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Rotary-Hook") != "notify" ||
			r.header.Get("X-Rotary-Delivery") != fmt.Sprintf("notify-%d", r.ev.ID) {
			t.Errorf("webhook headers = %v", r.header)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "other.txt")); err == nil {
		t.Errorf("the hook on elsewhere/* fired for %s", name)
	}

	list := okJSON[client.HookList](c, "hook", "list")
	byName := map[string]client.Hook{}
	for _, h := range list.Hooks {
		byName[h.Name] = h
	}
	if h := byName["notify"]; h.Delivered != rotations || h.State != "ok" || h.LastDeliveryAt == nil || h.Backlog != 0 {
		t.Errorf("hook list notify = %+v, want delivered %d, ok, a last delivery, backlog 0", h, rotations)
	}
	text := c.ok("hook", "list")
	for _, want := range []string{"NAME", "LAST DELIVERY", "notify", "webhook", "rec", "exec", "finished", "hooks/*"} {
		if !strings.Contains(text, want) {
			t.Errorf("hook list text lacks %q:\n%s", want, text)
		}
	}
	for _, where := range []string{s.logs.String(), c.ok("hook", "list", "-o", "json"), c.ok("audit", "list", "-o", "json")} {
		if strings.Contains(where, secret) {
			t.Fatalf("the webhook signing secret shows in the log, the listing or the audit log")
		}
	}
	if m := metricsText(t, s); !strings.Contains(m, `rotary_hook_deliveries_total{hook="notify",result="ok"} 3`) ||
		!strings.Contains(m, `rotary_hook_failing{hook="notify"} 0`) || !strings.Contains(m, "rotary_outbox_backlog") {
		t.Errorf("metrics lack the hook counters:\n%s", grepLines(m, "hook"))
	}

	c.ok("hook", "remove", "rec")
	c.fail(exitNotFound, []string{"rec"}, "hook", "remove", "rec")
}

func metricsText(t *testing.T, s *server) string {
	t.Helper()
	code, body := s.httpDo(t, http.MethodGet, "/metrics", "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	return string(body)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHookWebhookRetryAcrossRestart: the receiver fails until the daemon
// has been restarted; then each event is delivered successfully exactly
// once, in order, and the generated secret (printed once) signs them.
func TestHookWebhookRetryAcrossRestart(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("retry/app")
	c.withStdin([]byte("v1")).ok("secret", "create", name, "--value-stdin")
	c.ok("rotation", "set", name, "--rotator", "random")

	var healthy sync.Once
	up := make(chan struct{})
	recv := newWebhookRecv(t, func(int) int {
		select {
		case <-up:
			return http.StatusOK
		default:
			return http.StatusInternalServerError
		}
	})
	added := okJSON[client.AddHookResponse](c, "hook", "add", "wh", "--on", "finished", "--webhook", recv.srv.URL, "--timeout", "5s")
	if len(added.Secret) < 32 {
		t.Fatalf("hook add without --secret-file returned secret %q, want a generated one", added.Secret)
	}
	text := c.ok("hook", "add", "wh2", "--on", "failed", "--webhook", recv.srv.URL)
	if !strings.Contains(text, "signing secret: ") || !strings.Contains(text, "not shown again") {
		t.Errorf("hook add text output = %q, want the secret and a note to store it", text)
	}

	c.ok("rotate", name, "--wait")
	c.ok("rotate", name, "--wait")
	waitFor(t, 30*time.Second, "a failed attempt (HTTP 500)", func() bool { return len(recv.all()) >= 1 })
	h := okJSON[client.HookList](c, "hook", "list").Hooks[0]
	if h.Name != "wh" || h.Failures < 1 || h.Backlog != 2 || !strings.Contains(h.LastError, "500") {
		t.Errorf("hook list while failing = %+v, want failures, backlog 2, last error naming HTTP 500", h)
	}
	// The second event waits behind the first (order per hook and secret).
	for _, r := range recv.all() {
		if r.ev.Version != 2 {
			t.Fatalf("version %d was attempted while version 2 was still undelivered", r.ev.Version)
		}
	}
	s.stop()
	healthy.Do(func() { close(up) })
	s.start()
	waitFor(t, 60*time.Second, "both events delivered after the restart", func() bool { return len(recv.ok()) >= 2 })
	// Nothing more may come: wait until the backlog is empty, then check.
	waitFor(t, 30*time.Second, "backlog 0", func() bool { return okJSON[client.HookList](c, "hook", "list").Hooks[0].Backlog == 0 })
	ok := recv.ok()
	if len(ok) != 2 || ok[0].ev.Version != 2 || ok[1].ev.Version != 3 {
		t.Fatalf("successful deliveries = %+v, want versions 2 then 3, once each", ok)
	}
	for _, r := range ok {
		ts := r.header.Get("X-Rotary-Timestamp")
		if r.header.Get("X-Rotary-Signature") != hmacSig([]byte(added.Secret), ts, r.body) {
			t.Errorf("signature does not verify with the generated secret")
		}
		if r.header.Get("X-Rotary-Signature") == hmacSig([]byte("another-secret-0123456789"), ts, r.body) {
			t.Errorf("signature verifies with another secret")
		}
	}
	if h := okJSON[client.HookList](c, "hook", "list").Hooks[0]; h.Delivered != 2 || h.State != "ok" {
		t.Errorf("hook list after recovery = %+v, want delivered 2, ok", h)
	}
	if strings.Contains(s.logs.String(), added.Secret) {
		t.Fatal("the generated signing secret shows in the daemon log")
	}
}

// TestHookHangingExecDoesNotDelayRotations: an exec hook that sleeps for
// an hour neither delays the rotation nor a second one; it is killed
// (with its process group) at its timeout and retried.
func TestHookHangingExecDoesNotDelayRotations(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("hang/app")
	c.withStdin([]byte("v1")).ok("secret", "create", name, "--value-stdin")
	c.ok("rotation", "set", name, "--rotator", "random")
	pids := filepath.Join(t.TempDir(), "pids")
	// The shell records the pid of the sleep it starts (a grandchild of
	// the daemon), then waits for it.
	c.ok("hook", "add", "hang", "--on", "finished", "--timeout", "3s", "--shell",
		"--exec", "sleep 3600 & echo $! >> "+pids+"; wait")

	start := time.Now()
	c.ok("rotate", name, "--wait")
	waitFor(t, 20*time.Second, "the hook to start", func() bool { b, _ := os.ReadFile(pids); return len(b) > 0 })
	c.ok("rotate", name, "--wait") // while the hook hangs
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("two rotations took %v with a hanging hook, want no delay from it", d)
	}
	show := okJSON[client.Secret](c, "secret", "describe", name)
	if len(show.Versions) < 3 {
		t.Errorf("describe after two rotations: %d versions, want 3", len(show.Versions))
	}
	s.waitLog("timed out after", 30*time.Second)
	b, _ := os.ReadFile(pids)
	first, err := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)[0])
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	waitFor(t, 10*time.Second, "the hung sleep (in the hook's process group) to be killed", func() bool {
		return syscall.Kill(first, 0) == syscall.ESRCH || isZombie(first)
	})
	h := okJSON[client.HookList](c, "hook", "list").Hooks[0]
	if h.Failures < 1 || !strings.Contains(h.LastError, "timed out") {
		t.Errorf("hook list = %+v, want a failure that says timed out", h)
	}
	c.ok("hook", "remove", "hang")
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

// TestHookAuthorizationAndBadInput: hooks need admin on the system
// resource "hooks"; bad definitions are refused naming the problem.
func TestHookAuthorizationAndBadInput(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	// Negative control: admin on every secret is not admin on hooks.
	noHooks := createToken(c, `{"rules":[{"secrets":"*","actions":["list","describe","read","write","rotate","delete","admin"]}]}`)
	s.as(t, noHooks).fail(exitDenied, []string{"hooks"}, "hook", "add", "x", "--on", "all", "--exec", "/bin/true")
	s.as(t, noHooks).fail(exitDenied, []string{"hooks"}, "hook", "list")
	hookAdmin := createToken(c, `{"rules":[{"system":"hooks","actions":["admin"]}]}`)
	s.as(t, hookAdmin).ok("hook", "add", "x", "--on", "all", "--exec", "/bin/true")
	s.as(t, noHooks).fail(exitDenied, []string{"hooks"}, "hook", "remove", "x")
	s.as(t, hookAdmin).ok("hook", "remove", "x")
	audit := c.ok("audit", "list", "-o", "json")
	for _, want := range []string{`"hooks.add"`, `"hook/x"`, `"hooks.remove"`, `"denied"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"hook", "add", "Bad_Name", "--on", "all", "--exec", "/bin/true"}, []string{"name"}},
		{[]string{"hook", "add", "ok", "--on", "sometimes", "--exec", "/bin/true"}, []string{"--on"}},
		{[]string{"hook", "add", "ok", "--on", "all", "--webhook", "ftp://x"}, []string{"--webhook"}},
		{[]string{"hook", "add", "ok", "--on", "all", "--exec", "/bin/echo 'unterminated"}, []string{"--exec"}},
		{[]string{"hook", "add", "ok", "--on", "all", "--exec", "/bin/true", "--timeout", "1h"}, []string{"--timeout"}},
		{[]string{"hook", "add", "ok", "--on", "all", "--secrets", "a b", "--exec", "/bin/true"}, []string{"--secrets"}},
	} {
		c.fail(exitUsage, tc.want, tc.args...)
	}
	c.fail(exitUsage, []string{"exactly one"}, "hook", "add", "ok", "--on", "all")
	c.ok("hook", "add", "dup", "--on", "all", "--exec", "/bin/true")
	c.fail(exitFailure, []string{"exists"}, "hook", "add", "dup", "--on", "all", "--exec", "/bin/true")
	if l := okJSON[client.HookList](c, "hook", "list"); len(l.Hooks) != 1 || l.Hooks[0].Name != "dup" {
		t.Errorf("hook list after refused adds = %+v, want only dup", l.Hooks)
	}
}

// TestHooksTwoDaemonsPostgres: two daemons on one PostgreSQL store; each
// event is delivered once, whichever daemon claims it.
func TestHooksTwoDaemonsPostgres(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	a := startPGServer(t, fx, "")
	b := startPGServer(t, fx, "")
	ca, cb := a.root(t), b.root(t)
	recv := newWebhookRecv(t, func(int) int { return http.StatusOK })
	ca.ok("hook", "add", "wh", "--on", "finished", "--webhook", recv.srv.URL)
	var names []string
	for i := range 3 {
		n := uniq(fmt.Sprintf("pg/app%d", i))
		ca.withStdin([]byte("v1")).ok("secret", "create", n, "--value-stdin")
		ca.ok("rotation", "set", n, "--rotator", "random")
		names = append(names, n)
	}
	const perSecret = 3
	var wg sync.WaitGroup
	for i, n := range names {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		wg.Go(func() {
			for range perSecret {
				c.ok("rotate", n, "--wait")
			}
		})
	}
	wg.Wait()
	total := len(names) * perSecret
	waitFor(t, 60*time.Second, fmt.Sprintf("%d deliveries", total), func() bool { return len(recv.ok()) >= total })
	waitFor(t, 30*time.Second, "backlog 0", func() bool { return okJSON[client.HookList](cb, "hook", "list").Hooks[0].Backlog == 0 })
	seen := map[int64]int{}
	last := map[string]int64{}
	for _, r := range recv.ok() {
		seen[r.ev.ID]++
		if r.ev.Version <= last[r.ev.Secret] {
			t.Errorf("%s: version %d delivered after %d", r.ev.Secret, r.ev.Version, last[r.ev.Secret])
		}
		last[r.ev.Secret] = r.ev.Version
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d delivered %d times, want once", id, n)
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct events delivered, want %d", len(seen), total)
	}
}

// TestHookDaemonKilledMidDelivery: the daemon is killed with SIGKILL while
// a webhook request is in flight; restarted, it takes the delivery back at
// once (not after the lease) and the event is delivered successfully
// exactly once.
func TestHookDaemonKilledMidDelivery(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("kill/app")
	c.withStdin([]byte("v1")).ok("secret", "create", name, "--value-stdin")
	c.ok("rotation", "set", name, "--rotator", "random")
	release := make(chan struct{})
	recv := newWebhookRecv(t, func(n int) int {
		if n == 1 {
			select { // the daemon dies while this request waits
			case <-release:
			case <-time.After(30 * time.Second):
			}
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	// A 30s timeout makes a 60s lease: a prompt delivery after the restart
	// shows the lease was released, not waited out.
	c.ok("hook", "add", "wh", "--on", "finished", "--webhook", recv.srv.URL, "--timeout", "30s")
	c.ok("rotate", name, "--wait")
	waitFor(t, 30*time.Second, "the first request in flight", func() bool { return recv.started.Load() >= 1 })
	s.kill9()
	close(release)
	restarted := time.Now()
	s.start()
	waitFor(t, 30*time.Second, "delivery after the restart", func() bool { return len(recv.ok()) >= 1 })
	if d := time.Since(restarted); d > 25*time.Second {
		t.Errorf("delivery came %v after the restart, want well before the 60s lease", d)
	}
	waitFor(t, 30*time.Second, "backlog 0", func() bool { return okJSON[client.HookList](c, "hook", "list").Hooks[0].Backlog == 0 })
	if ok := recv.ok(); len(ok) != 1 || ok[0].ev.Version != 2 {
		t.Fatalf("successful deliveries = %+v, want version 2 once", ok)
	}
}
