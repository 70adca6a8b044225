package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// Every failure has a code word; each word goes with one exit code.
func TestDescribeErrorCodes(t *testing.T) {
	t.Parallel()
	const addr = "http://127.0.0.1:1"
	lost := fmt.Errorf("%w: %s: %w", client.ErrUnreachable, addr, client.ErrConnectionLost)
	tests := []struct {
		err  error
		exit int
		word string
		msg  string // a part of the message
	}{
		{usageErrorf("--tag: bad"), exitUsage, codeUsage, "--tag"},
		{&client.APIError{Status: 400, Message: "name: bad"}, exitUsage, codeInvalid, "invalid input: name: bad"},
		{&client.APIError{Status: 404, Message: "secret x not found"}, exitNotFound, codeNotFound, "not found"},
		{&client.APIError{Status: 401, Message: "bad token"}, exitDenied, codeUnauthenticated, "authentication failed"},
		{&client.APIError{Status: 403, Message: "read on x"}, exitDenied, codePermissionDenied, "permission denied"},
		{&client.APIError{Status: 409, Message: "exists"}, exitFailure, codeConflict, "conflict: exists"},
		{&client.APIError{Status: 502, Message: "rotation failed: set: boom"}, exitFailure, codeRotationFailed, "rotation failed"},
		{&client.APIError{Status: 503, Message: "hooks are not enabled"}, exitFailure, codeUnavailable, "not enabled"},
		{&client.APIError{Status: 500, Message: "internal error"}, exitFailure, codeInternal, "internal error"},
		{fmt.Errorf("%w: %s: connection refused", client.ErrUnreachable, addr), exitUnreachable, codeUnavailable, "cannot reach"},
		{lost, exitUnreachable, codeUnavailable, "went away"},
		{context.Canceled, exitFailure, codeInterrupted, "interrupted"},
		{errors.New("boom"), exitFailure, codeFailed, "boom"},
		{exitError{code: exitFailure, msg: "rotation of x ended failed"}, exitFailure, codeFailed, "ended failed"},
	}
	for _, tt := range tests {
		f := describeError(tt.err, addr)
		if f.exit != tt.exit || f.word != tt.word || !strings.Contains(f.msg, tt.msg) {
			t.Errorf("describeError(%v) = %+v, want exit %d, code %s, message with %q", tt.err, f, tt.exit, tt.word, tt.msg)
		}
	}
}

// The category the CLI puts first is not repeated inside the message.
func TestWithPrefixOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ p, msg, want string }{
		{"invalid input", "rotator: invalid input: plugin x is not registered", "invalid input: rotator: plugin x is not registered"},
		{"invalid input", "invalid input: name: bad", "invalid input: name: bad"},
		{"permission denied", "Permission denied: read on x", "permission denied: read on x"},
		{"not found", "", "not found"},
		{"conflict", "secret exists", "conflict: secret exists"},
	} {
		if got := withPrefix(tt.p, tt.msg); got != tt.want {
			t.Errorf("withPrefix(%q, %q) = %q, want %q", tt.p, tt.msg, got, tt.want)
		}
	}
}

// -o json failures are one JSON line on stderr, whether -o was parsed
// or the flag error came first; text mode stays "error: ...".
func TestRunJSONErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		exit int
		code string
	}{
		{[]string{"-o", "json", "nosuch"}, exitUsage, codeUsage},
		{[]string{"secret", "get", "--bogus", "-o", "json"}, exitUsage, codeUsage},
		{[]string{"secret", "get", "--bogus", "--output=json"}, exitUsage, codeUsage},
		{[]string{"--addr", "http://127.0.0.1:1", "secret", "list", "-ojson"}, exitUnreachable, codeUnavailable},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		var e errorJSON
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if code != tt.exit || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.Code != tt.code || e.Error == "" {
			t.Errorf("rotary %q: exit %d, stderr %q; want exit %d and one JSON line with code %s", tt.args, code, stderr.String(), tt.exit, tt.code)
		}
	}
	// "-o json" after "--" is an argument, not the output format.
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"nosuch", "--", "-o", "json"}, strings.NewReader(""), &stdout, &stderr)
	if !strings.HasPrefix(stderr.String(), "error: ") {
		t.Errorf("rotary nosuch -- -o json: stderr %q, want the text error", stderr.String())
	}
}

func TestDidYouMean(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"secrets"}, `did you mean "secret"?`},
		{[]string{"polcy"}, `did you mean "policy"?`},
		{[]string{"secret", "lsit"}, `did you mean "list"?`},
		{[]string{"rotation", "shwo"}, `did you mean "show"?`},
		{[]string{"qqqqqq"}, `see "rotary --help"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("rotary %q: exit %d, stderr %q; want one line with %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

func TestScheduleText(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		stored, want string
		loc          *time.Location
	}{
		{"CRON_TZ=UTC @daily", "@daily", time.UTC},
		{"CRON_TZ=UTC 0 3 * * *", "0 3 * * *", time.UTC},
		{"CRON_TZ=Europe/Berlin 0 3 * * *", "CRON_TZ=Europe/Berlin 0 3 * * *", berlin},
		{"@every 2h0m0s", "@every 2h", time.Local},
		{"@every 1h30m0s", "@every 1h30m", time.Local},
		{"rate(7 days)", "rate(7 days)", time.Local},
		{"", "", time.Local},
	} {
		got, loc := scheduleText(tt.stored)
		if got != tt.want || loc.String() != tt.loc.String() {
			t.Errorf("scheduleText(%q) = %q, %v; want %q, %v", tt.stored, got, loc, tt.want, tt.loc)
		}
	}
	for in, want := range map[string]string{"2h0m0s": "2h", "1h30m0s": "1h30m", "1m30s": "1m30s", "90s": "1m30s",
		"45s": "45s", "168h0m0s": "7d", "36h0m0s": "36h", "0s": "0s", "15m0s": "15m"} {
		if got := windowText(in); got != want {
			t.Errorf("windowText(%q) = %q, want %q", in, got, want)
		}
	}
}

// The status and rotation show words for the next rotation.
func TestNextRotationText(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	next := now.Add(18 * time.Hour)
	for _, tt := range []struct {
		r    client.RotationInfo
		want string
	}{
		{client.RotationInfo{Schedule: "CRON_TZ=Europe/Berlin 0 3 * * *", Enabled: true, NextRotationAt: &next}, "2026-12-04 04:00:00 CET (in 18h)"},
		{client.RotationInfo{Schedule: "CRON_TZ=UTC @daily", Enabled: false, NextRotationAt: &next}, "none (disabled)"},
		{client.RotationInfo{Enabled: true}, "none (manual only)"},
		{client.RotationInfo{Schedule: "@every 1s", Enabled: true, State: client.RotationUnschedulable}, "none (unschedulable, see State)"},
	} {
		if got := nextRotationText(now, tt.r, false); got != tt.want {
			t.Errorf("nextRotationText(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	// Not parallel: it sets the link-time variables.
	version, commit = "v1.2.3-4-gabcdef", "abcdef0123"
	defer func() { version, commit = "", "" }()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("rotary %q: exit %d, stderr %q", args, code, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "rotary v1.2.3-4-gabcdef (commit abcdef0123, ") {
			t.Errorf("rotary %q: %q, want the version and commit set at build time", args, stdout.String())
		}
	}
	version, commit = "", ""
	if v, rev := buildVersion(); !strings.HasPrefix(v, "dev") || rev == "" {
		t.Errorf("without -ldflags: version %q, commit %q; want dev and the VCS revision or unknown", v, rev)
	}
}

// A rotate the daemon did not answer because it stopped: exit 5, and
// what becomes of the rotation.
func TestDaemonGone(t *testing.T) {
	t.Parallel()
	const addr = "http://127.0.0.1:1"
	lost := fmt.Errorf("%w: %s: %w", client.ErrUnreachable, addr, client.ErrConnectionLost)
	stopping := &client.APIError{Status: 503, Message: "rotate app/db: the daemon is shutting down; rotations resume at its next start"}
	for _, tt := range []struct {
		err  error
		wait bool
		want string
	}{
		{lost, true, "went away before it answered; a rotation that started resumes"},
		{stopping, true, "is shutting down; a rotation that started resumes"},
		{stopping, false, "is shutting down; the rotation of app/db was not started"},
		{lost, false, "went away before it answered; if the rotation of app/db started, it resumes"},
	} {
		f := describeError(daemonGone(tt.err, addr, "app/db", tt.wait), addr)
		if f.exit != exitUnreachable || f.word != codeUnavailable || !strings.Contains(f.msg, tt.want) {
			t.Errorf("daemonGone(%v, wait %v) = %+v, want exit 5, unavailable, %q", tt.err, tt.wait, f, tt.want)
		}
	}
	// Other failures pass through.
	other := &client.APIError{Status: 503, Message: "function hooks are not enabled in this daemon"}
	if f := describeError(daemonGone(other, addr, "app/db", true), addr); f.exit != exitFailure {
		t.Errorf("daemonGone(another 503) = %+v, want exit 1", f)
	}
}
