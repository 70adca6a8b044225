package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// onDataDir makes startDev use dir (a restored store, a root key put
// there) and token as the --dev root token.
func onDataDir(dir, token string) serverOption {
	return func(s *server) {
		s.dataDir, s.rootToken = dir, token
		for i := range s.args {
			switch s.args[i] {
			case "--data-dir":
				s.args[i+1] = dir
			case "--dev-root-token":
				s.args[i+1] = token
			}
		}
	}
}

func goClient(t *testing.T, s *server, token string) *client.Client {
	t.Helper()
	c, err := client.New(s.addr, client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// secretState is everything readable about one secret: its stages per
// version and every version's value (empty for a secret scheduled for
// deletion, which cannot be read).
type secretState struct {
	Deleted bool
	Stages  map[int64][]string
	Values  map[int64]string
}

// readState reads every secret of the daemon, deleted ones included.
func readState(t *testing.T, c *client.Client) map[string]secretState {
	t.Helper()
	ctx := t.Context()
	list, err := c.ListAllSecrets(ctx, client.ListSecretsOptions{Deleted: true})
	if err != nil {
		t.Fatalf("list secrets: %v", err)
	}
	out := map[string]secretState{}
	for _, s := range list {
		d, err := c.DescribeSecret(ctx, s.Name)
		if err != nil {
			t.Fatalf("describe %s: %v", s.Name, err)
		}
		st := secretState{Deleted: d.DeletedAt != nil, Stages: map[int64][]string{}, Values: map[int64]string{}}
		for _, v := range d.Versions {
			stages := slices.Clone(v.Stages)
			slices.Sort(stages)
			st.Stages[v.Version] = stages
			if st.Deleted {
				continue
			}
			val, err := c.GetSecret(ctx, s.Name, v.Version, "")
			if err != nil {
				t.Fatalf("get %s version %d: %v", s.Name, v.Version, err)
			}
			st.Values[v.Version] = val.Value
		}
		out[s.Name] = st
	}
	return out
}

// TestBackupRestoreDrill is the restore drill: a daemon with secrets in
// every state is backed up while clients keep writing; a fresh daemon on
// the snapshot and the first one's root key serves every secret as it was
// at one instant (every version of every secret, the busy ones complete up
// to some version between what was acknowledged before and after the
// backup), its tokens, and an audit log that verifies. Around it, the
// refusals: a token without the backup grant (exit 4, audited), an
// existing --out without --force, damaged files, a restore over a store,
// and a start with the wrong root key, which changes nothing.
func TestBackupRestoreDrill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a := startDev(t)
	root := a.root(t)
	ca := goClient(t, a, a.rootToken)

	// Secrets in every state: several versions, a key-value one, a
	// rotated one, one scheduled for deletion.
	for i := range 6 {
		name := fmt.Sprintf("drill/app-%d", i)
		root.withStdin([]byte(fmt.Sprintf("v1-%d-%s", i, randHex(8)))).ok("secret", "create", name, "--value-stdin")
		for v := 2; v <= 1+i%3; v++ {
			root.withStdin([]byte(fmt.Sprintf("v%d-%d-%s", v, i, randHex(8)))).ok("secret", "put", name, "--value-stdin")
		}
	}
	root.withStdin([]byte(`{"user":"app","password":"`+randHex(12)+`"}`)).ok("secret", "create", "drill/kv", "--type", "key-value", "--value-stdin")
	root.withStdin([]byte("before-rotation")).ok("secret", "create", "drill/rotated", "--value-stdin")
	root.ok("rotation", "set", "drill/rotated", "--rotator", "random", "--schedule", "@every 24h")
	root.ok("rotate", "drill/rotated", "--wait")
	root.withStdin([]byte("pending-deletion-"+randHex(8))).ok("secret", "create", "drill/deleted", "--value-stdin")
	root.withStdin([]byte("pending-deletion-2-"+randHex(8))).ok("secret", "put", "drill/deleted", "--value-stdin")
	// What it holds, to compare after restoring it on B.
	deletedValues := readState(t, ca)["drill/deleted"].Values
	root.ok("secret", "delete", "drill/deleted", "--recovery-window", "7d")
	static := readState(t, ca)
	if !static["drill/deleted"].Deleted || len(deletedValues) != 2 || len(static["drill/deleted"].Stages) != 2 {
		t.Fatalf("setup: drill/deleted = %+v, values %v; want deleted with 2 versions", static["drill/deleted"], deletedValues)
	}
	if got := static["drill/rotated"]; len(got.Values) != 2 || got.Values[2] == "before-rotation" {
		t.Fatalf("setup: drill/rotated = %+v, want a rotated second version", got)
	}

	// Busy secrets: version n of busy-j holds "busy-j-n", written by
	// clients that keep putting while the backup runs.
	const writers = 3
	for j := range writers {
		if _, err := ca.CreateSecret(ctx, client.CreateSecretRequest{Name: fmt.Sprintf("drill/busy-%d", j), Value: client.NewValue([]byte(fmt.Sprintf("busy-%d-1", j)))}); err != nil {
			t.Fatal(err)
		}
	}
	var acked [writers]atomic.Int64
	for j := range writers {
		acked[j].Store(1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	werr := make(chan error, writers)
	for j := range writers {
		wg.Go(func() {
			name := fmt.Sprintf("drill/busy-%d", j)
			for n := int64(2); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				v, err := ca.PutSecret(ctx, name, []byte(fmt.Sprintf("busy-%d-%d", j, n)))
				if err != nil {
					werr <- fmt.Errorf("put %s: %v", name, err)
					return
				}
				if v.Version != n {
					werr <- fmt.Errorf("put %s: version %d, want %d", name, v.Version, n)
					return
				}
				acked[j].Store(n)
			}
		})
	}
	waitFor(t, 60*time.Second, "the writers to get going", func() bool { return acked[writers-1].Load() >= 5 })

	dir := t.TempDir()
	backup := filepath.Join(dir, "rotary.bak")
	var before [writers]int64
	for j := range writers {
		before[j] = acked[j].Load()
	}
	out := root.ok("backup", "--out", backup)
	var after [writers]int64
	for j := range writers {
		after[j] = acked[j].Load()
	}
	waitFor(t, 60*time.Second, "writes after the backup", func() bool { return acked[0].Load() > after[0]+2 })
	close(stop)
	wg.Wait()
	close(werr)
	for err := range werr {
		t.Fatal(err)
	}
	during := int64(0)
	for j := range writers {
		during += after[j] - before[j]
	}
	if during == 0 {
		t.Fatalf("no write was acknowledged while the backup ran: the drill shows nothing about consistency")
	}
	t.Logf("%d puts acknowledged while the backup ran; %s", during, strings.TrimSpace(out))
	if !strings.Contains(out, "Wrote "+backup) || !strings.Contains(out, "root key") {
		t.Errorf("backup printed %q, want the file and a word on the root key", out)
	}
	fi, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode = %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left beside the backup: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(a.dataDir, ".*backup*")); len(left) > 0 {
		t.Errorf("temporary files left in the daemon's data folder: %v", left)
	}
	var vj struct {
		Secrets        int64 `json:"secrets"`
		DeletedSecrets int64 `json:"deleted_secrets"`
		AuditRecords   int64 `json:"audit_records"`
	}
	if err := json.Unmarshal([]byte(root.ok("backup", "verify", backup, "-o", "json")), &vj); err != nil {
		t.Fatal(err)
	}
	if vj.Secrets != int64(len(static)-1+writers) || vj.DeletedSecrets != 1 || vj.AuditRecords == 0 {
		t.Errorf("backup verify -o json = %+v, want %d secrets, 1 deleted, audit records", vj, len(static)-1+writers)
	}
	// The backup is on A's record: action and size, never contents.
	recs := okJSON[client.AuditList](root, "audit", "list", "--limit", "100000")
	if !slices.ContainsFunc(recs.Records, func(r client.AuditRecord) bool {
		return r.Action == "backup.snapshot" && r.Result == "ok" && strings.Contains(r.Detail, "sha256")
	}) {
		t.Errorf("no backup.snapshot ok record in A's audit log")
	}

	// Restore: refused over A's live store (which keeps working), then
	// into a fresh folder.
	root.fail(exitFailure, []string{"exists", "never replaces a store"}, "backup", "restore", backup, "--data-dir", a.dataDir)
	root.ok("secret", "describe", "drill/app-0")
	bdir := filepath.Join(t.TempDir(), "b")
	rout := root.ok("backup", "restore", backup, "--data-dir", bdir)
	if !strings.Contains(rout, "root.key") {
		t.Errorf("restore into a folder without a root key printed %q, want a word about root.key", rout)
	}
	if fi, err := os.Stat(filepath.Join(bdir, "rotary.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored store: %v, %v; want mode 0600", fi, err)
	}

	// The wrong root key: the daemon refuses to start, naming it.
	if err := os.WriteFile(filepath.Join(bdir, "root.key"), []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	wrong := exec.CommandContext(wctx, rotaryBin, "server", "--dev", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--data-dir", bdir, "--dev-root-token", a.rootToken)
	wrong.Env = cleanEnv()
	wout, err := wrong.CombinedOutput()
	if err == nil || wrong.ProcessState == nil || wrong.ProcessState.ExitCode() == 0 || !strings.Contains(string(wout), "wrong root key") {
		t.Fatalf("a daemon on the backup with another root key: err %v, output:\n%s\nwant a refusal naming the wrong root key", err, wout)
	}

	// A's root key: daemon B serves the state of the backup's instant.
	key, err := os.ReadFile(filepath.Join(a.dataDir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bdir, "root.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startDev(t, onDataDir(bdir, a.rootToken))
	cb := goClient(t, b, a.rootToken) // A's root token: tokens came along
	got := readState(t, cb)
	for name, want := range static {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("B lacks %s", name)
		case g.Deleted != want.Deleted || !equalJSON(g.Stages, want.Stages) || !equalJSON(g.Values, want.Values):
			t.Errorf("B's %s = %+v, want A's %+v", name, g, want)
		}
	}
	for j := range writers {
		name := fmt.Sprintf("drill/busy-%d", j)
		g := got[name]
		var n int64 // the newest version (beyond 100, the oldest are pruned)
		for v := range g.Values {
			n = max(n, v)
		}
		if n < before[j] || n > after[j]+1 {
			// after+1: a put may commit before the backup ends and be
			// acknowledged after the CLI returned.
			t.Errorf("B's %s is at version %d, want between %d (acknowledged before the backup) and %d (after)", name, n, before[j], after[j]+1)
		}
		if kept := int64(len(g.Values)); kept != min(n, 100) {
			t.Errorf("B's %s has %d versions up to %d, want %d", name, kept, n, min(n, 100))
		}
		for v := n - int64(len(g.Values)) + 1; v <= n; v++ {
			if want := fmt.Sprintf("busy-%d-%d", j, v); g.Values[v] != want {
				t.Errorf("B's %s version %d = %q, want %q", name, v, g.Values[v], want)
			}
		}
		if !slices.Equal(g.Stages[n], []string{"current"}) {
			t.Errorf("B's %s: version %d (the newest) has stages %v, want current", name, n, g.Stages[n])
		}
	}
	broot := b.root(t)
	broot.ok("audit", "verify")
	// The secret scheduled for deletion comes back with its values.
	broot.ok("secret", "restore", "drill/deleted")
	if g := readState(t, cb)["drill/deleted"]; !equalJSON(g.Values, deletedValues) {
		t.Errorf("B's restored drill/deleted = %v, want %v", g.Values, deletedValues)
	}
	broot.ok("secret", "get", "drill/rotated")

	// Who may take a backup: an explicit grant, and nobody else, however
	// much else they hold; the refusal is on record.
	strong := createToken(root, `{"rules":[{"secrets":"*","actions":["admin"]},{"keys":"*","actions":["admin"]},{"system":"audit","actions":["admin"]},{"system":"tokens","actions":["admin"]},{"system":"policies","actions":["admin"]}]}`)
	a.as(t, strong).fail(exitDenied, []string{"permission denied", "backup"}, "backup", "--out", filepath.Join(dir, "denied.bak"))
	if _, err := os.Stat(filepath.Join(dir, "denied.bak")); !os.IsNotExist(err) {
		t.Errorf("a refused backup left a file: %v", err)
	}
	recs = okJSON[client.AuditList](root, "audit", "list", "--limit", "100000")
	if !slices.ContainsFunc(recs.Records, func(r client.AuditRecord) bool {
		return r.Action == "backup.snapshot" && r.Result == "denied"
	}) {
		t.Errorf("the refused backup is not in the audit log as backup.snapshot denied")
	}
	granted := createToken(root, `{"rules":[{"system":"backup","actions":["admin"]}]}`)
	a.as(t, granted).ok("backup", "--out", filepath.Join(dir, "granted.bak"))

	// An existing --out is kept without --force, replaced with it.
	orig, _ := os.ReadFile(backup)
	a.root(t).fail(exitUsage, []string{"--out", "exists", "--force"}, "backup", "--out", backup)
	if now, _ := os.ReadFile(backup); string(now) != string(orig) {
		t.Errorf("backup --out over an existing file without --force changed it")
	}
	root.ok("backup", "--out", backup, "--force")
	if now, _ := os.ReadFile(backup); string(now) == string(orig) {
		t.Errorf("backup --force did not replace the file")
	}

	// Only ciphertext: no value of any secret is in the file.
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range static {
		for v, val := range st.Values {
			if strings.Contains(string(data), val) {
				t.Errorf("the backup holds version %d of %s in the clear", v, name)
			}
		}
	}
	if strings.Contains(string(data), a.rootToken) {
		t.Errorf("the backup holds the root token in the clear")
	}

	// Damaged copies are named as such and never restored.
	truncated := filepath.Join(dir, "truncated.bak")
	if err := os.WriteFile(truncated, data[:len(data)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	root.fail(exitFailure, []string{truncated, "truncated"}, "backup", "verify", truncated)
	cdir := filepath.Join(t.TempDir(), "c")
	root.fail(exitFailure, []string{"truncated"}, "backup", "restore", truncated, "--data-dir", cdir)
	if _, err := os.Stat(filepath.Join(cdir, "rotary.db")); !os.IsNotExist(err) {
		t.Errorf("a truncated backup was restored: %v", err)
	}
	corrupt := slices.Clone(data)
	mid := len(corrupt) / 4096 / 2 * 4096
	for i := mid; i < mid+4096; i++ {
		corrupt[i] ^= 0x5a
	}
	corrupted := filepath.Join(dir, "corrupted.bak")
	if err := os.WriteFile(corrupted, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	root.fail(exitFailure, []string{corrupted, "integrity"}, "backup", "verify", corrupted)
	root.fail(exitUsage, []string{"no such file"}, "backup", "verify", filepath.Join(dir, "missing.bak"))
}

// TestBackupOnPostgres: a daemon on PostgreSQL does not copy its store; it
// answers with the pg_dump command for its database and schema, without
// the password, and the CLI says so and writes nothing.
func TestBackupOnPostgres(t *testing.T) {
	t.Parallel()
	s := startPostgres(t)
	out := filepath.Join(t.TempDir(), "pg.bak")
	errOut := s.root(t).fail(exitFailure, []string{"pg_dump", "--schema=" + s.schema, "--dbname=", "root key"}, "backup", "--out", out)
	t.Logf("%s", errOut)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("backup on PostgreSQL left %s: %v", out, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
