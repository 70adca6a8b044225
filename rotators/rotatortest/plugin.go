package rotatortest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/rotators"
)

// BuildPlugin builds the Go main package pkg (an import path or a
// directory, as `go build` takes it) into a temporary directory of t and
// returns the binary's absolute path.
func BuildPlugin(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// FileSHA256 returns the hex sha256 of the file at path.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// SyncBuffer is a log sink safe for concurrent writes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RunPlugin runs the suite against the plugin binary at path through the
// real gRPC boundary: it launches the plugin with plugins.Launch (sha256
// pinned, empty environment but env), checks its Info names h.SecretType,
// runs Run with h.Rotator set to the plugin (recording the values it
// creates), and finally checks that the
// plugin's log lines (go-plugin's and its stderr, at debug level) never
// showed a password the suite used, and that Close leaves no process of
// the plugin's group.
func RunPlugin(t *testing.T, path string, env []string, h Harness) {
	t.Helper()
	var logs SyncBuffer
	p, err := plugins.Launch(context.Background(), plugins.Config{
		Path: path, SHA256: FileSHA256(t, path), Env: env,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("plugins.Launch(%s): %v", path, err)
	}
	t.Cleanup(func() { p.Close() })
	info := p.Info()
	if !slices.Contains(info.SecretTypes, h.SecretType) {
		t.Fatalf("plugin Info: secret types %q, want %q among them", info.SecretTypes, h.SecretType)
	}
	seen := &seenValues{}
	h.Rotator = recording{Rotator: p.Rotator(), seen: seen}
	h.NewAccount = seen.wrap(h.NewAccount)
	Run(t, h)

	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if pids := ProcessGroup(p.Pid()); len(pids) > 0 {
		t.Errorf("after Close, processes %v of the plugin's group %d are still running", pids, p.Pid())
	}
	out := logs.String()
	for _, pw := range seen.passwords() {
		if strings.Contains(out, pw) {
			t.Errorf("the plugin's log shows a password the suite used")
		}
	}
}

// recording is the plugin's rotator, recording the passwords Create
// returns. It keeps ConfigValidator, the one optional interface Run asks
// for.
type recording struct {
	rotators.Rotator
	seen *seenValues
}

func (r recording) Create(ctx context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	resp, err := r.Rotator.Create(ctx, req)
	r.seen.add(resp.Value)
	return resp, err
}

func (r recording) ValidateConfig(ctx context.Context, secretType string, config json.RawMessage) error {
	if v, ok := r.Rotator.(rotators.ConfigValidator); ok {
		return v.ValidateConfig(ctx, secretType, config)
	}
	return nil
}

// seenValues records the passwords of the accounts the suite made and
// of the values the plugin created.
type seenValues struct {
	mu  sync.Mutex
	pws []string
}

func (s *seenValues) wrap(f func(t *testing.T, username string, alsoDrop ...string) rotators.Value) func(t *testing.T, username string, alsoDrop ...string) rotators.Value {
	return func(t *testing.T, username string, alsoDrop ...string) rotators.Value {
		v := f(t, username, alsoDrop...)
		s.add(v)
		return v
	}
}

func (s *seenValues) add(v rotators.Value) {
	if p := password(v); len(p) >= 4 {
		s.mu.Lock()
		s.pws = append(s.pws, p)
		s.mu.Unlock()
	}
}

func (s *seenValues) passwords() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pws)
}

// ProcessGroup lists the live (not zombie) processes of process group
// pgid, read from /proc.
func ProcessGroup(pgid int) []int {
	if pgid <= 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so cut
		// after its closing parenthesis.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pg, err := strconv.Atoi(f[2]); err != nil || pg != pgid {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// WaitNoProcessGroup waits up to d for process group pgid to be gone.
func WaitNoProcessGroup(pgid int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		pids := ProcessGroup(pgid)
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
}
