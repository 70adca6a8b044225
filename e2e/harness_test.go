// Package e2e tests rotary as a user types it: the built binary, a real
// daemon (SQLite in --dev mode, or PostgreSQL through a config file) and the
// CLI driven through its environment. No test sleeps for a fixed time:
// every wait polls a condition against a deadline.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "modernc.org/sqlite"
)

const (
	readyTimeout = 90 * time.Second // a -race build on a busy machine starts slowly
	stopTimeout  = 20 * time.Second // SIGTERM to exit
	cliTimeout   = 2 * time.Minute
)

// rotaryBin is the binary under test, built once by TestMain with the
// race detector (daemons, watch, exec, render); cliBin the same code built
// without it, for the short CLI calls (cli.run).
var rotaryBin, cliBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "rotary-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	rotaryBin = filepath.Join(tmp, "rotary")
	cliBin = filepath.Join(tmp, "cli", "rotary")
	// The daemons (and the long-running watch, exec and render) run a
	// race-detector build; the short CLI calls, thousands of them, a plain
	// build of the same code, which starts in a fraction of the time (the
	// client code they run has its race-detector tests in its packages).
	// The failpoints tag compiles in the crash-test hook; it does nothing
	// unless ROTARY_FAILPOINTS names a point.
	builds := [][]string{
		{"build", "-race", "-tags", "failpoints", "-o", rotaryBin, "./cmd/rotary"},
		{"build", "-o", cliBin, "./cmd/rotary"},
	}
	errs := make(chan error, len(builds))
	for _, args := range builds {
		go func() {
			build := exec.Command("go", args...)
			build.Dir = ".."
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			errs <- build.Run()
		}()
	}
	for range builds {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building rotary:", err)
			return 1
		}
	}
	return m.Run()
}

// randHex returns n random bytes in hex.
func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// uniq returns a name unique to this run, starting with prefix.
func uniq(prefix string) string { return prefix + "-" + randHex(4) }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 50ms until it returns true or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a goroutine-safe buffer for a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len is the number of bytes written so far.
func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// server is one rotary daemon under test; restart keeps its store.
type server struct {
	t         testing.TB
	args      []string // after "rotary"
	env       []string // extra environment
	listen    string
	addr      string // http://host:port
	dataDir   string // the --dev data dir or the config's folder
	rootToken string
	kind      string // "sqlite" or "postgres"
	schema    string // postgres schema

	logs *syncBuffer // the daemon's stdout and stderr, across restarts

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	exitCode int
}

// serverOption adjusts a server before it first starts.
type serverOption func(*server)

// withArgs appends arguments to "rotary server ...".
func withArgs(args ...string) serverOption {
	return func(s *server) { s.args = append(s.args, args...) }
}

// startDev starts "rotary server --dev" on a fresh data dir.
func startDev(t testing.TB, opts ...serverOption) *server {
	t.Helper()
	port := freePort(t)
	s := &server{
		t:         t,
		listen:    fmt.Sprintf("127.0.0.1:%d", port),
		dataDir:   t.TempDir(),
		rootToken: "e2e-root-" + randHex(16),
		kind:      "sqlite",
		logs:      &syncBuffer{},
	}
	s.addr = "http://" + s.listen
	s.args = []string{"server", "--dev", "--listen", s.listen, "--data-dir", s.dataDir, "--dev-root-token", s.rootToken}
	for _, o := range opts {
		o(s)
	}
	s.start()
	return s
}

func postgresDSN() (string, bool) {
	if v := os.Getenv("ROTARY_TEST_POSTGRES_DSN"); v != "" {
		return v, true
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", false
}

// withSearchPath adds search_path=schema to a postgres:// DSN.
func withSearchPath(dsn, schema string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// pgFixture is a fresh PostgreSQL schema and a root key that several
// daemons can share.
type pgFixture struct {
	dsn, schema, keyFile, rootToken string
}

func newPGFixture(t testing.TB) pgFixture {
	t.Helper()
	base, _ := postgresDSN()
	db, err := sql.Open("postgres", base)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		t.Fatalf("PostgreSQL not reachable at %s (run make services, or set ROTARY_TEST_POSTGRES_DSN): %v", base, err)
	}
	schema := "e2e_" + randHex(6)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		db.Close()
	})
	keyFile := filepath.Join(t.TempDir(), "root.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return pgFixture{dsn: withSearchPath(base, schema), schema: schema, keyFile: keyFile, rootToken: "e2e-root-" + randHex(16)}
}

// startPostgres starts "rotary server --config" against a fresh
// PostgreSQL schema, created here and dropped when the test ends. The DSN
// reaches the config file through $env{...}; the root token through
// ROTARY_ROOT_TOKEN.
func startPostgres(t testing.TB, opts ...serverOption) *server {
	t.Helper()
	return startPGServer(t, newPGFixture(t), "", opts...)
}

// startPGServer starts one daemon on fx; extraYAML is appended to its
// config file.
func startPGServer(t testing.TB, fx pgFixture, extraYAML string, opts ...serverOption) *server {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`# rotary e2e config (PostgreSQL)
listen: %s
store:
  postgres: $env{ROTARY_E2E_PG_DSN}
root_key:
  file: %s
root_token_file: %s
regions: [default]
min_rotation_interval: 1s
rotation_concurrency: 2
shutdown_timeout: 10s
`, listen, fx.keyFile, filepath.Join(dir, "root-token")) + extraYAML
	cfgFile := filepath.Join(dir, "rotary.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{
		t:         t,
		listen:    listen,
		addr:      "http://" + listen,
		dataDir:   dir,
		rootToken: fx.rootToken,
		kind:      "postgres",
		schema:    fx.schema,
		logs:      &syncBuffer{},
		args:      []string{"server", "--config", cfgFile},
	}
	s.env = []string{"ROTARY_E2E_PG_DSN=" + fx.dsn, "ROTARY_ROOT_TOKEN=" + s.rootToken}
	for _, o := range opts {
		o(s)
	}
	s.start()
	return s
}

// forEachStore runs f against a daemon on each store, as subtests.
func forEachStore(t *testing.T, f func(t *testing.T, s *server)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		f(t, startDev(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, startPostgres(t))
	})
}

func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROTARY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// start launches the daemon and waits until /readyz answers 200.
func (s *server) start() {
	t := s.t
	t.Helper()
	cmd := exec.Command(rotaryBin, s.args...)
	cmd.Env = cleanEnv(s.env...)
	logStart := s.logs.Len()
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rotary server: %v", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.exitCode = cmd, done, -1
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		s.mu.Lock()
		s.exitCode = cmd.ProcessState.ExitCode()
		s.mu.Unlock()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			logs := s.logs.String()
			if len(logs) > 16<<10 {
				logs = "…" + logs[len(logs)-16<<10:]
			}
			t.Logf("daemon %s output:\n%s", s.addr, logs)
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-done:
			t.Fatalf("rotary server exited with %d before it was ready:\n%s", s.exitStatus(), s.logs.String())
		default:
		}
		// Until this process says it listens, whatever answers on its port
		// is another test's daemon (a port freePort handed out twice, or one
		// a restarting daemon let go of for a moment).
		if strings.Contains(s.logs.String()[logStart:], "rotary is listening") {
			resp, err := hc.Get(s.addr + "/readyz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotary server not ready after %v:\n%s", readyTimeout, s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) exitStatus() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitCode
}

// stop sends SIGTERM and asserts the daemon exits 0 within stopTimeout.
func (s *server) stop() {
	t := s.t
	t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	start := time.Now()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("rotary server did not exit within %v of SIGTERM", stopTimeout)
	}
	if code := s.exitStatus(); code != 0 {
		t.Fatalf("rotary server exited with %d after SIGTERM (after %v), want 0", code, time.Since(start).Round(time.Millisecond))
	}
}

// restart stops the daemon (SIGTERM, exit 0) and starts it again on the
// same store.
func (s *server) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// cli runs the rotary CLI against a server with a token.
type cli struct {
	t     testing.TB
	addr  string
	token string
	stdin []byte
}

// root returns a CLI with the root token.
func (s *server) root(t testing.TB) cli { return cli{t: t, addr: s.addr, token: s.rootToken} }

// as returns a CLI with token.
func (s *server) as(t testing.TB, token string) cli { return cli{t: t, addr: s.addr, token: token} }

// withStdin returns a copy of c that feeds in on standard input.
func (c cli) withStdin(in []byte) cli { c.stdin = in; return c }

// run runs "rotary args..." with ROTARY_ADDR and ROTARY_TOKEN set and
// returns its stdout, stderr and exit code.
func (c cli) run(args ...string) (stdout, stderr string, exit int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	cmd.Env = cleanEnv("ROTARY_ADDR="+c.addr, "ROTARY_TOKEN="+c.token)
	if c.stdin != nil {
		cmd.Stdin = bytes.NewReader(c.stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		c.t.Fatalf("rotary %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		c.t.Fatalf("rotary %s: did not finish within %v", strings.Join(args, " "), cliTimeout)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// ok runs a command that must succeed and returns its stdout.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("rotary %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fail runs a command that must fail with exit code want and one line
// "error: ..." containing every string in contains; it returns stderr.
func (c cli) fail(want int, contains []string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != want {
		c.t.Fatalf("rotary %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(args, " "), code, want, out, errOut)
	}
	checkErrorLine(c.t, args, errOut, contains...)
	return errOut
}

func checkErrorLine(t testing.TB, args []string, stderr string, contains ...string) {
	t.Helper()
	// The --value warning is not an error line (see TestValueFlagWarns).
	stderr = strings.ReplaceAll(stderr, valueWarning+"\n", "")
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") {
		t.Fatalf("rotary %s: stderr %q, want exactly one line \"error: ...\"", strings.Join(args, " "), stderr)
	}
	for _, w := range contains {
		if !strings.Contains(strings.ToLower(lines[0]), strings.ToLower(w)) {
			t.Fatalf("rotary %s: stderr %q does not mention %q", strings.Join(args, " "), stderr, w)
		}
	}
}

// okJSON runs a command with -o json that must succeed and decodes its
// stdout into a T.
func okJSON[T any](c cli, args ...string) T {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("rotary %s -o json: not one JSON document: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// Exit codes of the CLI (cmd/rotary/main.go).
const (
	exitFailure     = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitDenied      = 4
	exitUnreachable = 5
)

// createToken makes a policy with doc and a token bound to it, returning
// the token.
func createToken(c cli, doc string, extra ...string) string {
	c.t.Helper()
	pol := uniq("pol")
	f := filepath.Join(c.t.TempDir(), pol+".json")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.ok("policy", "put", pol, "--file", f)
	out := c.ok(append([]string{"token", "create", "--policy", pol, "--name", pol}, extra...)...)
	tok := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if tok == "" {
		c.t.Fatalf("token create printed no token: %q", out)
	}
	return tok
}

// httpDo sends a raw request to the daemon and returns the status and body.
func (s *server) httpDo(t testing.TB, method, path, token, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// sqliteDB opens the dev daemon's SQLite file for direct edits.
func (s *server) sqliteDB(t testing.TB) *sql.DB {
	t.Helper()
	if s.kind != "sqlite" {
		t.Fatalf("sqliteDB on a %s server", s.kind)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.dataDir, "rotary.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }

// withEnv adds environment variables to the daemon.
func withEnv(kv ...string) serverOption {
	return func(s *server) { s.env = append(s.env, kv...) }
}

// kill9 kills the daemon with SIGKILL, as a crash would, and waits for it.
func (s *server) kill9() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// waitLog waits until the daemon's output contains substr.
func (s *server) waitLog(substr string, timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, timeout, "daemon output "+strconvQuote(substr), func() bool {
		return strings.Contains(s.logs.String(), substr)
	})
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }
