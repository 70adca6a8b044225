package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rotary-secrets/rotary/sensitive"
)

// scrubber knows the values that must never appear in what comes back
// from a plugin: the values of the calls in flight, and of calls that
// ended less than linger ago (the plugin's stderr is read asynchronously,
// so a line printed during a call may arrive after it returned), plus
// whatever the daemon adds through Config.Secrets.
type scrubber struct {
	mu     sync.Mutex
	active map[*[]sensitive.Bytes]time.Time // zero time: in flight
	extra  func() []sensitive.Bytes
	linger time.Duration
	now    func() time.Time
}

func newScrubber(extra func() []sensitive.Bytes) *scrubber {
	return &scrubber{active: map[*[]sensitive.Bytes]time.Time{}, extra: extra, linger: time.Minute, now: time.Now}
}

// hold registers values for the duration of a call; release starts their
// linger.
func (s *scrubber) hold(values []sensitive.Bytes) (release func()) {
	k := &values
	s.mu.Lock()
	s.active[k] = time.Time{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.active[k] = s.now().Add(s.linger)
		s.mu.Unlock()
	}
}

func (s *scrubber) values() []sensitive.Bytes {
	var out []sensitive.Bytes
	s.mu.Lock()
	now := s.now()
	for k, until := range s.active {
		if !until.IsZero() && now.After(until) {
			delete(s.active, k)
			continue
		}
		out = append(out, *k...)
	}
	s.mu.Unlock()
	if s.extra != nil {
		out = append(out, expand(s.extra()...)...)
	}
	return out
}

func (s *scrubber) clean(msg string) string { return sensitive.SanitizeString(msg, s.values()...) }

// expand returns the values to scrub for values: each value whole and, for
// a JSON object, each string field that holds a secret (password, secret,
// token, key in its name), since a plugin may print the field alone.
func expand(values ...sensitive.Bytes) []sensitive.Bytes {
	out := make([]sensitive.Bytes, 0, len(values))
	for _, v := range values {
		if v.Len() == 0 {
			continue
		}
		out = append(out, v)
		var m map[string]any
		if json.Unmarshal(v.Reveal(), &m) != nil {
			continue
		}
		for k, f := range m {
			s, ok := f.(string)
			if !ok || s == "" {
				continue
			}
			k = strings.ToLower(k)
			for _, w := range []string{"password", "secret", "token", "key"} {
				if strings.Contains(k, w) {
					out = append(out, sensitive.Bytes(s))
					break
				}
			}
		}
	}
	return out
}

// hclogAdapter is the hclog.Logger go-plugin logs through (its own
// messages and every line the plugin writes to stderr), writing to slog
// under the plugin's name. Every message and argument passes the
// scrubber first.
type hclogAdapter struct {
	log   *slog.Logger
	name  string
	args  []any
	scrub *scrubber
	level *slog.LevelVar
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger, name string, scrub *scrubber) *hclogAdapter {
	lv := &slog.LevelVar{}
	lv.Set(slog.LevelDebug)
	return &hclogAdapter{log: l, name: name, scrub: scrub, level: lv}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	sl := slogLevel(level)
	if sl < a.level.Level() || !a.log.Enabled(context.Background(), sl) {
		return
	}
	all := append(append([]any{}, a.args...), args...)
	attrs := []any{slog.String("plugin", a.name)}
	for i := 0; i < len(all); i += 2 {
		key := fmt.Sprint(all[i])
		var val any = "(missing)"
		if i+1 < len(all) {
			val = all[i+1]
		}
		switch v := val.(type) {
		case bool, int, int64, int32, uint, uint64, uint32, float64, float32, time.Duration, time.Time:
		case sensitive.Bytes:
			val = sensitive.Redacted
		case hclog.Format:
			if len(v) == 0 {
				val = ""
			} else if f, ok := v[0].(string); ok {
				val = a.scrub.clean(fmt.Sprintf(f, v[1:]...))
			} else {
				val = a.scrub.clean(fmt.Sprint(v...))
			}
		default:
			val = a.scrub.clean(fmt.Sprint(v))
		}
		attrs = append(attrs, slog.Any(a.scrub.clean(key), val))
	}
	a.log.Log(context.Background(), sl, a.scrub.clean(msg), attrs...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	sl := slogLevel(l)
	return sl >= a.level.Level() && a.log.Enabled(context.Background(), sl)
}
func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any{}, a.args...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

// Named keeps the plugin's own name: go-plugin names the stderr logger
// after the binary, which says nothing more.
func (a *hclogAdapter) Named(string) hclog.Logger      { c := *a; return &c }
func (a *hclogAdapter) ResetNamed(string) hclog.Logger { c := *a; return &c }

func (a *hclogAdapter) SetLevel(l hclog.Level) { a.level.Set(slogLevel(l)) }

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return lineWriter{a} }

type lineWriter struct{ a *hclogAdapter }

func (w lineWriter) Write(p []byte) (int, error) {
	w.a.Info(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// streamWriter turns what the plugin writes to its stdout or stderr once
// it serves (go-plugin carries both over the connection) into log lines,
// scrubbed like everything else.
type streamWriter struct {
	a      *hclogAdapter
	stream string
	level  hclog.Level
	mu     sync.Mutex
	buf    []byte
}

// maxLine caps a line kept waiting for its newline.
const maxLine = 64 << 10

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLine {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *streamWriter) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	w.a.Log(w.level, string(line), "stream", w.stream)
}
