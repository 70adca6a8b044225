package plugins

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rotary-secrets/rotary/sensitive"
)

const canary = "CANARY-pw-4f1e"

func TestExpandScrubsSecretFieldsNotNames(t *testing.T) {
	got := expand(sensitive.Bytes(`{"username":"alice-user","password":"` + canary + `","api_token":"tok-12345","port":5672}`))
	var s []string
	for _, v := range got {
		s = append(s, string(v.Reveal()))
	}
	joined := strings.Join(s, "\n")
	for _, want := range []string{canary, "tok-12345"} {
		if !strings.Contains(joined, want) {
			t.Errorf("expand misses the secret field %q", want)
		}
	}
	for _, v := range s {
		if v == "alice-user" {
			t.Errorf("expand scrubs the user name: messages naming the account would be useless")
		}
	}
}

func TestScrubberLingersThenForgets(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newScrubber(func() []sensitive.Bytes { return []sensitive.Bytes{sensitive.Bytes("daemon-secret-x")} })
	s.now = func() time.Time { return now }
	release := s.hold(expand(sensitive.Bytes(canary)))
	if got := s.clean("in flight " + canary); strings.Contains(got, canary) {
		t.Fatalf("a value of a call in flight is not scrubbed: %q", got)
	}
	release()
	now = now.Add(s.linger / 2)
	if got := s.clean("late line " + canary); strings.Contains(got, canary) {
		t.Fatalf("a value of a call that just ended is not scrubbed from a late line: %q", got)
	}
	now = now.Add(s.linger)
	if got := s.clean("much later " + canary); !strings.Contains(got, canary) {
		t.Fatalf("the scrubber keeps values forever: %q", got)
	}
	if got := s.clean("daemon-secret-x"); strings.Contains(got, "daemon-secret-x") {
		t.Fatalf("Config.Secrets are not scrubbed: %q", got)
	}
}

func TestHCLogAdapterScrubsEverything(t *testing.T) {
	var buf bytes.Buffer
	s := newScrubber(nil)
	defer s.hold([]sensitive.Bytes{sensitive.Bytes(canary)})()
	a := newHCLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "p1", s)
	a.Info("msg "+canary, "arg", canary, "bytes", sensitive.Bytes("other-secret"), "n", 3)
	a.With("k", canary).Named("x").Debug("with")
	a.Log(hclog.Error, "fmt", "f", hclog.Fmt("%s", canary))
	sw := &streamWriter{a: a, stream: "stderr", level: hclog.Info}
	sw.Write([]byte("partial " + canary[:5]))
	sw.Write([]byte(canary[5:] + " done\nnext\n"))
	out := buf.String()
	if strings.Contains(out, canary) || strings.Contains(out, "other-secret") {
		t.Fatalf("the log shows a value:\n%s", out)
	}
	for _, want := range []string{"plugin=p1", "[redacted]", "stream=stderr", "next", "n=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if !a.IsDebug() || a.GetLevel() != hclog.Trace {
		t.Errorf("level: IsDebug %v, GetLevel %v", a.IsDebug(), a.GetLevel())
	}
}
