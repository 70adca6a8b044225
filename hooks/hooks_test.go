package hooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/hooks"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// fakePlugins is a PluginCaller whose answer OnEventFunc decides.
type fakePlugins struct {
	mu          sync.Mutex
	calls       []string
	OnEventFunc func(name string, event []byte) error
}

func (f *fakePlugins) OnEvent(_ context.Context, name string, event []byte) error {
	f.mu.Lock()
	f.calls = append(f.calls, name+" "+string(event))
	fn := f.OnEventFunc
	f.mu.Unlock()
	return fn(name, event)
}

func (f *fakePlugins) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

type bundle struct {
	st    store.Store
	m     *hooks.Manager
	relay *events.Relay
}

func setup(t *testing.T, cfg hooks.Config) bundle {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rotary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store, cfg.Key = st, testKey
	if cfg.Poll == 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = 10*time.Millisecond, 20*time.Millisecond
	}
	m, err := hooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := events.NewRelay(events.RelayConfig{Store: st, Sinks: []events.Sink{m.Sink()}, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	wg.Go(func() { m.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return bundle{st: st, m: m, relay: r}
}

func (b bundle) event(t *testing.T, typ, secret string, version int64) int64 {
	t.Helper()
	ev := events.Event{Event: typ, Secret: secret, Version: version, At: time.Now().UTC()}
	id, err := b.st.AppendOutbox(t.Context(), store.OutboxEvent{Type: typ, Secret: secret, Version: version, Payload: ev.Marshal(), CreatedAt: ev.At})
	if err != nil {
		t.Fatal(err)
	}
	b.relay.Wake()
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hook(t *testing.T, st store.Store, name string) store.Hook {
	t.Helper()
	h, err := st.GetHook(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestValidate(t *testing.T) {
	ok := hooks.AddParams{Name: "a-1_b", On: hooks.OnAll, Kind: hooks.KindExec, Target: "/bin/true"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", ok, err)
	}
	for _, tc := range []struct {
		change func(*hooks.AddParams)
		want   string
	}{
		{func(p *hooks.AddParams) { p.Name = "" }, "name"},
		{func(p *hooks.AddParams) { p.Name = "-x" }, "name"},
		{func(p *hooks.AddParams) { p.Name = strings.Repeat("a", 64) }, "name"},
		{func(p *hooks.AddParams) { p.On = "rotated" }, "--on"},
		{func(p *hooks.AddParams) { p.Secrets = "a b" }, "--secrets"},
		{func(p *hooks.AddParams) { p.Timeout = time.Hour }, "--timeout"},
		{func(p *hooks.AddParams) { p.Target = "  " }, "--exec"},
		{func(p *hooks.AddParams) { p.Target = `echo "open` }, "--exec"},
		{func(p *hooks.AddParams) { p.Kind, p.Target = hooks.KindWebhook, "file:///etc/passwd" }, "--webhook"},
		{func(p *hooks.AddParams) { p.Kind, p.Target = hooks.KindWebhook, "https://u:p@x/" }, "credentials"},
		{func(p *hooks.AddParams) {
			p.Kind, p.Target, p.Secret = hooks.KindWebhook, "https://x/", []byte("short")
		}, "--secret-file"},
		{func(p *hooks.AddParams) { p.Kind, p.Target = hooks.KindPlugin, "../x" }, "--plugin"},
		{func(p *hooks.AddParams) { p.Kind = "email" }, "kind"},
		{func(p *hooks.AddParams) { p.Kind, p.Target, p.Shell = hooks.KindWebhook, "https://x/", true }, "--shell"},
	} {
		p := ok
		tc.change(&p)
		err := p.Validate()
		if !errors.Is(err, hooks.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid naming %q", p, err, tc.want)
		}
	}
}

// The signing secret is sealed under the hook's name: a sealed secret
// moved to another hook does not open (its deliveries fail), and the
// listing never returns it.
func TestWebhookSecretSealedToHook(t *testing.T) {
	var mu sync.Mutex
	var sigs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		sigs = append(sigs, r.Header.Get("X-Rotary-Signature")+"|"+r.Header.Get("X-Rotary-Timestamp")+"|"+string(body))
		mu.Unlock()
	}))
	defer srv.Close()
	b := setup(t, hooks.Config{})
	secret := []byte("a-signing-secret-of-enough-bytes")
	if gen, err := b.m.Add(t.Context(), hooks.AddParams{Name: "a", On: hooks.OnAll, Kind: hooks.KindWebhook, Target: srv.URL, Secret: secret}); err != nil || gen != "" {
		t.Fatalf("Add(a) = %q, %v", gen, err)
	}
	if _, err := b.m.Add(t.Context(), hooks.AddParams{Name: "a", On: hooks.OnAll, Kind: hooks.KindExec, Target: "/bin/true"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Add(a) again err = %v, want ErrConflict", err)
	}
	hs, _ := b.m.List(t.Context())
	if len(hs) != 1 || hs[0].SealedSecret != nil {
		t.Fatalf("List = %+v, want one hook without its sealed secret", hs)
	}
	// Move a's sealed secret to hook b: it must not open there.
	ha := hook(t, b.st, "a")
	if err := b.st.PutHook(t.Context(), store.Hook{Name: "b", On: hooks.OnAll, Kind: hooks.KindWebhook, Target: srv.URL,
		SealedSecret: ha.SealedSecret, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b.event(t, events.Rotated, "s", 2)
	waitFor(t, "a delivered and b failed", func() bool {
		return hook(t, b.st, "a").Delivered == 1 && hook(t, b.st, "b").Failures >= 1
	})
	if hb := hook(t, b.st, "b"); hb.Delivered != 0 || !strings.Contains(hb.LastError, "signing secret") {
		t.Errorf("hook b with a's sealed secret: delivered %d, last error %q; want 0 and a signing secret error", hb.Delivered, hb.LastError)
	}
	mu.Lock()
	got := sigs[0]
	mu.Unlock()
	parts := strings.SplitN(got, "|", 3)
	if parts[0] != hooks.Signature(secret, parts[1], []byte(parts[2])) {
		t.Errorf("signature %q does not verify", parts[0])
	}
}

func TestWebhookRedirectNotFollowed(t *testing.T) {
	var hit atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit.Store(true) }))
	defer target.Close()
	redir := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redir.Close()
	b := setup(t, hooks.Config{})
	if _, err := b.m.Add(t.Context(), hooks.AddParams{Name: "r", On: hooks.OnAll, Kind: hooks.KindWebhook, Target: redir.URL}); err != nil {
		t.Fatal(err)
	}
	b.event(t, events.Rotated, "s", 2)
	waitFor(t, "a failed attempt", func() bool { return hook(t, b.st, "r").Failures >= 1 })
	if h := hook(t, b.st, "r"); h.Delivered != 0 || !strings.Contains(h.LastError, "307") || hit.Load() {
		t.Errorf("redirect: delivered %d, last error %q, target hit %v; want 0, HTTP 307, false", h.Delivered, h.LastError, hit.Load())
	}
}

// Plugin hooks through a fake caller: matching by event type and secret
// glob, retry after failure, order per secret, give-up marks the hook
// failing until the next success.
func TestPluginHookRetryOrderGiveUp(t *testing.T) {
	fail := map[int64]int{} // version -> failures left
	var mu sync.Mutex
	var order []int64
	fp := &fakePlugins{OnEventFunc: func(name string, event []byte) error {
		var ev events.Event
		_ = json.Unmarshal(event, &ev)
		mu.Lock()
		defer mu.Unlock()
		if fail[ev.Version] > 0 {
			fail[ev.Version]--
			return errors.New("plugin says no")
		}
		order = append(order, ev.Version)
		return nil
	}}
	b := setup(t, hooks.Config{Plugins: fp, MaxAttempts: 3})
	if _, err := b.m.Add(t.Context(), hooks.AddParams{Name: "p", On: hooks.OnFinished, Secrets: "app/*", Kind: hooks.KindPlugin, Target: "notifier"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail[2], fail[4] = 2, 100 // version 2 succeeds at the 3rd attempt; version 4 never
	mu.Unlock()
	b.event(t, events.Rotated, "app/x", 2)
	b.event(t, events.RotationFailed, "app/x", 0) // not "finished"
	b.event(t, events.Rotated, "other/y", 2)      // not app/*
	b.event(t, events.Rotated, "app/x", 3)
	waitFor(t, "versions 2 and 3 delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 2 })
	mu.Lock()
	if order[0] != 2 || order[1] != 3 {
		t.Errorf("delivery order = %v, want [2 3] (3 waits for 2's retries)", order)
	}
	mu.Unlock()
	if fp.n() != 4 {
		t.Errorf("plugin called %d times, want 4 (2 failures, 2 successes; nothing for other events)", fp.n())
	}
	b.event(t, events.Rotated, "app/x", 4)
	waitFor(t, "the hook marked failing", func() bool { return hook(t, b.st, "p").Failing })
	if h := hook(t, b.st, "p"); h.Backlog != 0 || !strings.Contains(h.LastError, "gave up") {
		t.Errorf("after give-up: backlog %d, last error %q", h.Backlog, h.LastError)
	}
	b.event(t, events.Rotated, "app/x", 5)
	waitFor(t, "failing cleared by a success", func() bool { return !hook(t, b.st, "p").Failing })
}

// Exec: the environment is PATH and the ROTARY_* variables only; a hook
// past its timeout is killed with its process group.
func TestExecEnvironmentAndTimeout(t *testing.T) {
	t.Setenv("HOOKS_TEST_CANARY", "must-not-leak")
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	b := setup(t, hooks.Config{MaxAttempts: 1})
	if _, err := b.m.Add(t.Context(), hooks.AddParams{Name: "dump", On: hooks.OnAll, Kind: hooks.KindExec,
		Target: "/bin/sh -c '/usr/bin/env > " + envFile + "'"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.m.Add(t.Context(), hooks.AddParams{Name: "hang", On: hooks.OnAll, Kind: hooks.KindExec, Shell: true,
		Target: "sleep 3600 & echo $! > " + filepath.Join(dir, "pid") + "; wait", Timeout: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b.event(t, events.Rotated, "s", 7)
	waitFor(t, "env dumped", func() bool { return hook(t, b.st, "dump").Delivered == 1 })
	env, _ := os.ReadFile(envFile)
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		k, _, _ := strings.Cut(l, "=")
		got[k] = true
	}
	for k := range got {
		switch k {
		case "PATH", "ROTARY_EVENT", "ROTARY_SECRET", "ROTARY_VERSION", "PWD", "SHLVL", "_": // the last three: sh's own
		default:
			t.Errorf("exec hook environment has %s", k)
		}
	}
	if !got["ROTARY_EVENT"] || !strings.Contains(string(env), "ROTARY_VERSION=7") {
		t.Errorf("exec hook environment lacks the event:\n%s", env)
	}
	waitFor(t, "the hanging hook given up", func() bool { return hook(t, b.st, "hang").Failing })
	if h := hook(t, b.st, "hang"); !strings.Contains(h.LastError, "timed out") {
		t.Errorf("hang last error = %q, want timed out", h.LastError)
	}
	// The sleep the shell started (same process group) was killed too.
	pb, _ := os.ReadFile(filepath.Join(dir, "pid"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil {
		t.Fatalf("pid file %q: %v", pb, err)
	}
	waitFor(t, "the sleep killed with its group", func() bool {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return true
		}
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	})
}
