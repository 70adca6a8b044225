package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "15m", want: 15 * time.Minute},
		{in: "12h", want: 12 * time.Hour},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "365d", want: 365 * 24 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0", want: 0},
		{in: "-2d", want: -48 * time.Hour},
		{in: "", wantErr: true},
		{in: "d", wantErr: true},
		{in: "7", wantErr: true},
		{in: "7x", wantErr: true},
		{in: "seven days", wantErr: true},
		{in: "1..5d", wantErr: true},
		{in: "100000000d", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseDuration(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("parseDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDurationFlagNamesFlag(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"soon", "-1h", "0"} {
		_, err := durationFlag("recovery-window", v)
		if err == nil || !strings.Contains(err.Error(), "--recovery-window") {
			t.Errorf("durationFlag(recovery-window, %q) err = %v, want one naming --recovery-window", v, err)
		}
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("durationFlag(%q) err is %T, want usageError", v, err)
		}
	}
	for in, want := range map[string]string{"2d": "2d", "48h": "2d", "1d12h": "36h0m0s", "90s": "1m30s", "": ""} {
		if got, err := wireDuration("ttl", in); err != nil || got != want {
			t.Errorf("wireDuration(ttl, %q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseKV(t *testing.T) {
	t.Parallel()
	got, err := parseKV("tag", []string{"team=pay", "url=a=b", "empty="})
	if err != nil {
		t.Fatalf("parseKV: %v", err)
	}
	want := map[string]string{"team": "pay", "url": "a=b", "empty": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseKV = %v, want %v", got, want)
	}
	if m, err := parseKV("tag", nil); m != nil || err != nil {
		t.Errorf("parseKV(nil) = %v, %v; want nil, nil", m, err)
	}
	for _, bad := range [][]string{{"novalue"}, {"=v"}, {" =v"}, {"a=1", "a=2"}} {
		_, err := parseKV("context", bad)
		if err == nil || !strings.Contains(err.Error(), "--context") {
			t.Errorf("parseKV(context, %q) err = %v, want one naming --context", bad, err)
		}
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"1h", now.Add(-time.Hour)},
		{"2d", now.Add(-48 * time.Hour)},
		{"2025-01-02T03:04:05Z", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"", time.Time{}},
	}
	for _, tt := range tests {
		got, err := parseSince(now, tt.in)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseSince(now, "yesterday"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Errorf("parseSince(yesterday) err = %v, want one naming --since", err)
	}
}

func TestRelTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{now.Add(3 * time.Hour), "in 3h"},
		{now.Add(-5 * time.Minute), "5m ago"},
		{now.Add(-72 * time.Hour), "3d ago"},
		{now.Add(7*24*time.Hour - time.Second), "in 7d"},
		{now.Add(-(59*time.Minute + 50*time.Second)), "1h ago"},
		{now.Add(90 * time.Second), "in 2m"},
		{now, "just now"},
		{time.Time{}, "-"},
	}
	for _, tt := range tests {
		if got := relTime(now, tt.t); got != tt.want {
			t.Errorf("relTime(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestDescribeError(t *testing.T) {
	t.Parallel()
	addr := "http://127.0.0.1:1"
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string
	}{
		{"unreachable", fmt.Errorf("%w: %s: %v", client.ErrUnreachable, addr, "connection refused"),
			exitUnreachable, "cannot reach the rotary server at http://127.0.0.1:1: connection refused"},
		{"401", &client.APIError{Status: 401, Message: "missing or invalid token"},
			exitDenied, "authentication failed: missing or invalid token"},
		{"403", &client.APIError{Status: 403, Message: `read on secret "app/db" is not allowed`},
			exitDenied, `permission denied: read on secret "app/db" is not allowed`},
		{"403 prefixed", &client.APIError{Status: 403, Message: "permission denied: read app/db"},
			exitDenied, "permission denied: read app/db"},
		{"404", &client.APIError{Status: 404, Message: `secret "app/x" not found`},
			exitNotFound, `not found: secret "app/x" not found`},
		{"400", &client.APIError{Status: 400, Message: `name: invalid character " "`},
			exitUsage, `invalid input: name: invalid character " "`},
		{"413", &client.APIError{Status: 413, Message: "request body too large"},
			exitUsage, "invalid input: request body too large"},
		{"415", &client.APIError{Status: 415, Message: "want application/json"},
			exitUsage, "invalid input: want application/json"},
		{"409", &client.APIError{Status: 409, Message: "secret exists"}, exitFailure, "conflict: secret exists"},
		{"500", &client.APIError{Status: 500, Message: "internal error"}, exitFailure, "internal error"},
		{"usage", usageErrorf("--tag %q: want KEY=VALUE", "x"), exitUsage, `--tag "x": want KEY=VALUE`},
		{"explicit", exitError{code: exitFailure, msg: "audit log altered at record 3: hash mismatch"},
			exitFailure, "audit log altered at record 3: hash mismatch"},
		{"canceled", context.Canceled, exitFailure, "interrupted"},
		{"other", errors.New("boom"), exitFailure, "boom"},
	}
	for _, tt := range tests {
		f := describeError(tt.err, addr)
		code, msg := f.exit, f.msg
		if code != tt.wantCode || msg != tt.wantMsg {
			t.Errorf("%s: describeError = %d, %q; want %d, %q", tt.name, code, msg, tt.wantCode, tt.wantMsg)
		}
	}
}

// TestRunExitCodes drives the command tree without a server.
func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"--help"}, exitOK, ""},
		{[]string{"secret", "get", "--help"}, exitOK, ""},
		{[]string{"nosuch"}, exitUsage, `unknown command "nosuch"`},
		{[]string{"secret", "nosuch"}, exitUsage, `unknown command "nosuch" for "rotary secret"`},
		{[]string{"secret", "get"}, exitUsage, "missing NAME"},
		{[]string{"secret", "get", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{[]string{"secret", "get", "a", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"secret", "get", "a", "--version", "x"}, exitUsage, "--version"},
		{[]string{"secret", "get", "a", "--stage", "old"}, exitUsage, "--stage"},
		{[]string{"secret", "put", "a"}, exitUsage, "--value"},
		{[]string{"secret", "put", "a", "--value", "x", "--value-stdin"}, exitUsage, "only one of"},
		{[]string{"secret", "create", "a", "--tag", "x"}, exitUsage, "--tag"},
		{[]string{"secret", "delete", "a", "--recovery-window", "40d"}, exitUsage, "--recovery-window"},
		{[]string{"secret", "delete", "a", "--recovery-window", "7d", "--force"}, exitUsage, "mutually exclusive"},
		{[]string{"kms", "encrypt", "--key", "k"}, exitUsage, "--plaintext-file"},
		{[]string{"kms", "encrypt", "--key", "k", "--plaintext-stdin", "--context", "bad"}, exitUsage, "--context"},
		{[]string{"kms", "decrypt", "--ciphertext-stdin"}, exitUsage, "empty"},
		{[]string{"token", "create"}, exitUsage, "--policy"},
		{[]string{"token", "create", "--policy", "p", "--ttl", "forever"}, exitUsage, "--ttl"},
		{[]string{"audit", "list", "--since", "yesterday"}, exitUsage, "--since"},
		{[]string{"-o", "yaml", "secret", "list"}, exitUsage, "--output"},
		{[]string{"--addr", "ftp://x", "secret", "list"}, exitUsage, "--addr"},
		{[]string{"--addr", "http://127.0.0.1:1", "secret", "list"}, exitUnreachable, "cannot reach the rotary server at http://127.0.0.1:1"},
		{[]string{"server"}, exitUsage, "--config"},
		{[]string{"server", "--dev", "--config", "x.yaml"}, exitUsage, "mutually exclusive"},
		{[]string{"server", "--config", "/nonexistent/rotary.yaml"}, exitFailure, "config:"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if code != tt.wantCode {
			t.Errorf("rotary %q: exit %d, want %d (stderr %q)", tt.args, code, tt.wantCode, stderr.String())
			continue
		}
		if tt.wantCode == exitOK {
			if stderr.Len() != 0 {
				t.Errorf("rotary %q: stderr %q, want none", tt.args, stderr.String())
			}
			continue
		}
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") || !strings.Contains(lines[0], tt.wantErr) {
			t.Errorf("rotary %q: stderr %q, want one line \"error: ...%s...\"", tt.args, stderr.String(), tt.wantErr)
		}
	}
}

func TestEveryCommandHasExample(t *testing.T) {
	t.Parallel()
	a := &app{getenv: func(string) string { return "" }}
	var check func(cmd *cobra.Command)
	check = func(cmd *cobra.Command) {
		if cmd.Name() != "help" && cmd.Name() != "completion" && cmd.Example == "" {
			t.Errorf("%s has no Example", cmd.CommandPath())
		}
		for _, sub := range cmd.Commands() {
			check(sub)
		}
	}
	check(a.rootCmd())
}
