package hooks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/google/shlex"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/store"
)

// call makes one delivery attempt to hook h.
func (m *Manager) call(ctx context.Context, h store.Hook, d store.HookDelivery, ev events.Event) error {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(h.Timeout, DefaultTimeout))
	defer cancel()
	switch h.Kind {
	case KindExec:
		return m.runExec(ctx, h, d.Payload, ev)
	case KindWebhook:
		return m.postWebhook(ctx, h, d)
	case KindPlugin:
		if m.cfg.Plugins == nil {
			return errors.New("plugin hooks are not available in this daemon")
		}
		if err := m.cfg.Plugins.OnEvent(ctx, h.Target, d.Payload); err != nil {
			return fmt.Errorf("plugin %s: %w", h.Target, err)
		}
		return nil
	}
	return fmt.Errorf("unknown hook kind %q", h.Kind)
}

// runExec runs an exec hook: no shell unless asked, the event on stdin,
// an environment of PATH and ROTARY_EVENT/SECRET/VERSION only, its own
// process group killed whole at the deadline (and after it exits, so
// nothing it started lingers). Exit status 0 is success.
func (m *Manager) runExec(ctx context.Context, h store.Hook, payload []byte, ev events.Event) error {
	argv := []string{"/bin/sh", "-c", h.Target}
	if !h.Shell {
		var err error
		if argv, err = shlex.Split(h.Target); err != nil || len(argv) == 0 {
			return fmt.Errorf("command %q cannot be split into arguments", h.Target)
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{
		"PATH=" + m.cfg.Path,
		"ROTARY_EVENT=" + string(payload),
		"ROTARY_SECRET=" + ev.Secret,
		"ROTARY_VERSION=" + strconv.FormatInt(ev.Version, 10),
	}
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(payload)
	out := &boundedBuffer{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	setProcAttr(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever it left behind
	}
	if o := out.String(); o != "" {
		m.log.Info("hook output", "hook", h.Name, "event_id", ev.ID, "output", o, "truncated", out.truncated)
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("timed out after %s; its process group was killed", time.Since(start).Round(time.Millisecond))
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("exited with %s", ee.ProcessState)
		}
		return fmt.Errorf("run %s: %s", argv[0], scrub(err.Error()))
	}
	return nil
}

// boundedBuffer keeps the first max bytes written to it.
type boundedBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if len(p) > room {
		b.truncated = true
		b.buf = append(b.buf, p[:max(room, 0)]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return scrub(string(b.buf))
}

// scrub makes process output safe for one log attribute: control
// characters (terminal escapes, carriage returns that hide text) become
// '?', invalid UTF-8 is replaced, and surrounding space is trimmed.
func scrub(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// Signature returns the X-Rotary-Signature value of body sent at the unix
// timestamp ts: "sha256=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Signature(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// webhookTransport is shared by every webhook, for connection reuse.
var webhookTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 4
	return t
}()

// postWebhook POSTs the event, signed; a 2xx answer is success. Redirects
// are not followed (a redirect is an answer, and not a 2xx).
func (m *Manager) postWebhook(ctx context.Context, h store.Hook, d store.HookDelivery) error {
	secret, err := m.open(h.Name, h.SealedSecret)
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(m.cfg.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.Target, bytes.NewReader(d.Payload))
	if err != nil {
		return errors.New("webhook request: the URL cannot be used")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rotary-hooks/1")
	req.Header.Set("X-Rotary-Timestamp", ts)
	req.Header.Set("X-Rotary-Signature", Signature(secret, ts, d.Payload))
	req.Header.Set("X-Rotary-Hook", h.Name)
	req.Header.Set("X-Rotary-Delivery", fmt.Sprintf("%s-%d", h.Name, d.EventID))
	client := &http.Client{
		Transport:     webhookTransport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("POST timed out after %s", cmp.Or(h.Timeout, DefaultTimeout))
		}
		// Not the url.Error itself: it quotes the URL, whose query may
		// carry a credential of the receiver's.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST: %s", scrub(err.Error()))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return fmt.Errorf("answered HTTP %d (redirects are not followed)", resp.StatusCode)
		}
		return fmt.Errorf("answered HTTP %d", resp.StatusCode)
	}
	return nil
}
