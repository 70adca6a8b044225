package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// Fault-matrix rows (RELIABILITY.md) not covered elsewhere: the target
// unreachable during finish, the target restarted mid-rotation, and a
// daemon stopped (SIGSTOP) for longer than its lease among three.

// aclRedis is a redis-server of the test's own that keeps its ACL users in
// an aclfile, as a production Redis that survives restarts must: a
// restart reloads exactly what ACL SAVE wrote.
type aclRedis struct {
	*ownRedis
	root *goredis.Client
}

func startACLRedis(t *testing.T) *aclRedis {
	t.Helper()
	dir := t.TempDir()
	aclfile := filepath.Join(dir, "users.acl")
	if err := os.WriteFile(aclfile, []byte("user default on nopass ~* &* +@all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &aclRedis{ownRedis: startOwnRedis(t, "--aclfile", aclfile)}
	r.root = r.client()
	t.Cleanup(func() { r.root.Close() })
	return r
}

// user creates an ACL user with one password and saves the ACL.
func (r *aclRedis) user(t *testing.T, name, pw string, rules []string, port int) mrCred {
	t.Helper()
	sum := sha256.Sum256([]byte(pw))
	ctx := context.Background()
	if err := r.root.ACLSetUser(ctx, name, append([]string{"reset", "on", "#" + hex.EncodeToString(sum[:])}, rules...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %q: %v", name, err)
	}
	if err := r.root.Do(ctx, "ACL", "SAVE").Err(); err != nil {
		t.Fatalf("ACL SAVE: %v", err)
	}
	return mrCred{Engine: "redis", Host: "127.0.0.1", Port: port, Username: name, Password: pw}
}

// restart stops the server with SIGKILL (nothing flushed on the way out)
// and starts it again on the same port, from its aclfile.
func (r *aclRedis) restart(t *testing.T) {
	t.Helper()
	r.root.Close()
	r.kill()
	r.start()
	r.root = r.client()
}

// login authenticates on a fresh connection straight to the server (not
// through any proxy) and returns ACL WHOAMI.
func (r *aclRedis) login(v mrCred) (string, error) {
	rdb := goredis.NewClient(&goredis.Options{
		Addr: r.addr(), Username: v.Username, Password: v.Password,
		Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1, DialTimeout: 5 * time.Second,
	})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rdb.ACLWhoAmI(ctx).Result()
}

func (r *aclRedis) mustLogin(t *testing.T, what string, v mrCred) {
	t.Helper()
	who, err := r.login(v)
	if err != nil {
		t.Fatalf("%s: login as %q refused: %v", what, v.Username, err)
	}
	if who != v.Username {
		t.Fatalf("%s: ACL WHOAMI = %q, want %q", what, who, v.Username)
	}
}

func (r *aclRedis) mustRefuse(t *testing.T, what string, v mrCred) {
	t.Helper()
	who, err := r.login(v)
	if err == nil {
		t.Fatalf("%s: the password of %q still authenticates (ACL WHOAMI = %q)", what, v.Username, who)
	}
	if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("%s: login as %q failed with %v, want WRONGPASS", what, v.Username, err)
	}
}

// storedVersions returns every stored version of a redis credential.
func storedVersions(c cli, name string) map[int64]mrCred {
	c.t.Helper()
	out := map[int64]mrCred{}
	d := okJSON[client.Secret](c, "secret", "describe", name)
	for _, v := range d.Versions {
		val := okJSON[client.SecretValue](c, "secret", "get", name, "--version", strconv.FormatInt(v.Version, 10))
		var m mrCred
		if err := json.Unmarshal([]byte(val.Value), &m); err != nil {
			c.t.Fatalf("version %d of %s is not db-credentials JSON: %v", v.Version, name, err)
		}
		out[v.Version] = m
	}
	return out
}

// faultRedisSetup stores an app user and an admin user of r as secrets
// (values naming port, which may be a proxy's) and configures an admin
// strategy redis rotation.
func faultRedisSetup(t *testing.T, c cli, r *aclRedis, port int) (name string, v1 mrCred) {
	t.Helper()
	v1 = r.user(t, "flt_app_"+randHex(4), mrNewPassword(), mrRedisAppRules, port)
	adm := r.user(t, "flt_adm_"+randHex(4), mrNewPassword(), mrRedisAdminRules, port)
	name = uniq("flt-redis")
	mrCreateCred(c, name, v1)
	mrCreateCred(c, name+"-admin", adm)
	mrSetRotation(c, name, "redis", map[string]any{"strategy": "admin", "admin_secret": name + "-admin", "connect_timeout": "3s"})
	return name, v1
}

// faultOneRun checks the secret has exactly one run, succeeded, version 2,
// each step ok exactly once (a failed attempt of a step may come before
// its ok, never after).
func faultOneRun(t *testing.T, c cli, name string) {
	t.Helper()
	runs := okJSON[client.RunList](c, "rotation", "history", name)
	if len(runs.Runs) != 1 || runs.Runs[0].State != "succeeded" || runs.Runs[0].PendingVersion != 2 {
		t.Fatalf("runs %+v, want one succeeded run with pending version 2", runs.Runs)
	}
	var steps []string
	for _, s := range runs.Runs[0].Steps {
		steps = append(steps, s.Step+":"+s.Result)
	}
	joined := " " + strings.Join(steps, " ") + " "
	for _, st := range mrWantSteps {
		if n := strings.Count(joined, " "+st+":ok "); n != 1 {
			t.Errorf("history %v: %s:ok %d times, want once", steps, st, n)
		}
	}
	if v := okJSON[client.SecretValue](c, "secret", "get", name); v.Version != 2 {
		t.Errorf("current version %d, want 2", v.Version)
	}
}

// TestFaultRedisTargetUnreachableDuringFinish cuts a TCP proxy between the
// daemon and its Redis target at the finish step; the rotator's Finish
// (removing the old password) cannot reach the server. The promoted
// credential logs in throughout, the run fails cleanly with last_error at
// cleanup, and once the target is reachable again the same run resumes and
// removes the old password.
func TestFaultRedisTargetUnreachableDuringFinish(t *testing.T) {
	t.Parallel()
	release := filepath.Join(t.TempDir(), "go-on")
	s := startDev(t, withEnv("ROTARY_FAILPOINTS=finish-before=wait:"+release))
	c := s.root(t)
	r := startACLRedis(t)
	proxy := testenv.NewProxy(t, r.addr())
	name, v1 := faultRedisSetup(t, c, r, proxy.Port())
	c.ok("rotate", name)
	s.waitLog("FAILPOINT finish-before", 30*time.Second)
	proxy.SetDown(true)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var show client.RotationShow
	waitFor(t, 30*time.Second, "the failed cleanup to be recorded", func() bool {
		show = okJSON[client.RotationShow](c, "rotation", "show", name)
		return show.LastError != ""
	})
	if strings.Contains(show.LastError, v1.Password) {
		t.Fatal("last_error holds the old password")
	}
	runs := okJSON[client.RunList](c, "rotation", "history", name)
	if len(runs.Runs) != 1 || runs.Runs[0].State != "running" {
		t.Fatalf("after the cut: runs %+v, want one run still running", runs.Runs)
	}
	// Finish committed in the store; the promoted version logs in (the
	// server is up, only the path to it is cut), and so does the old one,
	// which Finish could not remove.
	v2, ver := mrCurrent(c, name)
	if ver != 2 {
		t.Fatalf("current version %d after finish, want 2", ver)
	}
	r.mustLogin(t, "the promoted version while the target is cut off", v2)
	r.mustLogin(t, "the old version, not yet removed", v1)

	proxy.SetDown(false)
	c.ok("rotate", name, "--wait")
	faultOneRun(t, c, name)
	r.mustLogin(t, "current after recovery", v2)
	r.mustRefuse(t, "old after recovery", v1)
	if show := okJSON[client.RotationShow](c, "rotation", "show", name); show.LastError != "" {
		t.Errorf("last_error after success = %q, want empty", show.LastError)
	}
}

// TestFaultRedisTargetRestartedMidRotation restarts the target Redis (kill
// -9, then start from its aclfile) while a rotation stands at a step.
// After the restart a stored version logs in (the store knows which), the
// rotation goes on and ends with the new password working and the old one
// refused, one run, each step once.
func TestFaultRedisTargetRestartedMidRotation(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"set-before", "test-before", "finish-after"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			release := filepath.Join(t.TempDir(), "go-on")
			s := startDev(t, withEnv("ROTARY_FAILPOINTS="+point+"=wait:"+release))
			c := s.root(t)
			r := startACLRedis(t)
			name, v1 := faultRedisSetup(t, c, r, r.port)
			c.ok("rotate", name)
			s.waitLog("FAILPOINT "+point, 30*time.Second)
			// The negative control: an ACL change that was not saved (made
			// here, after the rotator's last ACL SAVE) is gone after the
			// restart, so the restart is a real one.
			unsaved := mrCred{Username: "flt_unsaved_" + randHex(4), Password: mrNewPassword()}
			sum := sha256.Sum256([]byte(unsaved.Password))
			if err := r.root.ACLSetUser(context.Background(), unsaved.Username, "reset", "on", "#"+hex.EncodeToString(sum[:]), "+acl|whoami").Err(); err != nil {
				t.Fatal(err)
			}
			r.mustLogin(t, "an unsaved user before the restart", unsaved)

			r.restart(t)
			if _, err := r.login(unsaved); err == nil {
				t.Fatal("an ACL user that was never saved survived the restart: the restart did not reload the aclfile")
			}
			vs := storedVersions(c, name)
			switch point {
			case "set-before":
				r.mustLogin(t, "current after the restart", vs[1])
			case "test-before":
				// Set added the new password and saved it: both work.
				r.mustLogin(t, "current after the restart", vs[1])
				r.mustLogin(t, "pending (set and saved before the restart)", vs[2])
			case "finish-after":
				r.mustLogin(t, "the promoted version after the restart", vs[2])
			}
			if err := os.WriteFile(release, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the rotation to end", func() bool {
				runs := okJSON[client.RunList](c, "rotation", "history", name)
				return len(runs.Runs) == 1 && runs.Runs[0].State != "running"
			})
			faultOneRun(t, c, name)
			v2, _ := mrCurrent(c, name)
			r.mustLogin(t, "current", v2)
			r.mustRefuse(t, "old", v1)
			// And it stays so across one more restart.
			r.restart(t)
			r.mustLogin(t, "current after a second restart", v2)
			r.mustRefuse(t, "old after a second restart", v1)
		})
	}
}

// TestFaultThreeDaemonsOneStoppedPastTheLease: daemons A, B, C on one
// PostgreSQL schema. A claims rotations of real PostgreSQL roles and
// stands before their set step; it is then stopped (SIGSTOP) for longer
// than the lease. B and C take the runs over and finish each exactly
// once. A is continued (SIGCONT): it commits nothing for the runs it lost
// and never touches the target, says so in its log, and serves requests
// and rotates again by itself.
func TestFaultThreeDaemonsOneStoppedPastTheLease(t *testing.T) {
	t.Parallel()
	const (
		n     = 3
		lease = 2 * time.Second // renewed every 1/3 s; margin 2/3 s
	)
	db := pgSuper(t)
	fx := newPGFixture(t)
	extra := fmt.Sprintf("rotation_lease: %s\n", lease)
	release := filepath.Join(t.TempDir(), "go-on")
	later := []string{"set-after", "test-before", "finish-before", "finish-after"}
	fps := "set-before=wait:" + release
	for _, p := range later {
		fps += "," + p + "=wait:" + release
	}
	a := startPGServer(t, fx, extra, schConfigSet("rotation_concurrency", "8"), withEnv("ROTARY_FAILPOINTS="+fps))
	b := startPGServer(t, fx, extra)
	cD := startPGServer(t, fx, extra)
	// The HTTP API rather than the CLI: a CLI call costs a process start.
	api := func(s *server) *client.Client {
		cl, err := client.New(s.addr, client.WithToken(s.rootToken))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	apiA, apiB := api(a), api(b)
	ctx := context.Background()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	current := func(cl *client.Client, name string) (int64, string) {
		t.Helper()
		v, err := cl.GetSecret(ctx, name, 0, "")
		must("get "+name, err)
		var m map[string]any
		must("decode "+name, json.Unmarshal([]byte(v.Value), &m))
		pw, _ := m["password"].(string)
		return v.Version, pw
	}

	type role struct{ user, pw1, name string }
	roles := make([]role, n)
	for i := range roles {
		u := "e2e_stop_" + randHex(4)
		roles[i] = role{user: u, pw1: pgRole(t, db, u), name: "pg/" + u}
		_, err := apiA.CreateSecret(ctx, client.CreateSecretRequest{Name: roles[i].name, Type: "db-credentials",
			Value: client.NewValue([]byte(pgValue(u, roles[i].pw1, 5432)))})
		must("create "+roles[i].name, err)
		_, err = apiA.SetRotation(ctx, roles[i].name, client.RotationSettings{Rotator: "postgres", Schedule: "none"})
		must("rotation set "+roles[i].name, err)
	}
	for _, r := range roles {
		_, err := apiA.Rotate(ctx, r.name, client.RotateOptions{})
		must("rotate "+r.name, err)
	}
	waitFor(t, 30*time.Second, "A to stand before set in each rotation", func() bool {
		return strings.Count(a.logs.String(), "FAILPOINT set-before") >= n
	})
	a.signal(syscall.SIGSTOP)
	stopped := time.Now()
	continued := false
	t.Cleanup(func() {
		if !continued {
			a.signal(syscall.SIGCONT)
		}
	})
	// Released while A is stopped: A goes on the moment it is continued.
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// B and C take every run over once A's leases expire and finish it.
	waitFor(t, 30*time.Second, "B and C to finish A's runs", func() bool {
		for _, r := range roles {
			runs, err := apiB.RotationHistory(ctx, r.name, 0)
			must("history", err)
			if len(runs) != 1 || runs[0].State != "succeeded" {
				return false
			}
		}
		return true
	})
	t.Logf("B and C finished A's %d runs %v after A was stopped", n, time.Since(stopped).Round(time.Millisecond))
	resumed := map[string]string{}
	for _, d := range []*server{b, cD} {
		for _, m := range schResumeRE.FindAllStringSubmatch(d.logs.String(), -1) {
			if prev, dup := resumed[m[2]]; dup {
				t.Errorf("run %s (%s) was resumed twice", m[2], prev)
			}
			resumed[m[2]] = m[1]
		}
	}
	if len(resumed) != n {
		t.Errorf("B and C resumed %d runs, want %d: %v", len(resumed), n, resumed)
	}
	// One more rotation of each on B, so that a late set of A's pending
	// value would show on the target.
	pw3 := make([]string, n)
	for i, r := range roles {
		_, err := apiB.Rotate(ctx, r.name, client.RotateOptions{Wait: true})
		must("rotate --wait on B", err)
		_, pw3[i] = current(apiB, r.name)
	}
	// A has been stopped well past its lease (each of its runs waited for
	// the lease to expire before B or C took it); continue it.
	if d := time.Since(stopped); d < 2*lease {
		t.Fatalf("A was stopped only %v, want past 2 leases (%v)", d, 2*lease)
	}
	t.Logf("A continued after %v stopped", time.Since(stopped).Round(time.Millisecond))
	before := len(a.logs.String())
	a.signal(syscall.SIGCONT)
	continued = true
	const fenced = "rotation stopped without recording: this daemon no longer holds the lease"
	waitFor(t, 30*time.Second, "A to stop each lost run (or, were it not fenced, to go on)", func() bool {
		logs := a.logs.String()[before:]
		return strings.Count(logs, fenced) >= n ||
			slices.ContainsFunc(later, func(p string) bool { return strings.Contains(logs, "FAILPOINT "+p) })
	})
	logsA := a.logs.String()[before:]
	for _, p := range later {
		if strings.Contains(logsA, "FAILPOINT "+p) {
			t.Errorf("A went on after losing its lease: it reached %s", p)
		}
	}
	if !strings.Contains(logsA, "rotation lease may have lapsed") && !strings.Contains(logsA, "lost the rotation lease") {
		t.Errorf("A's log does not say its lease lapsed or was lost")
	}
	if got := strings.Count(logsA, fenced); got != n {
		t.Errorf("A's log says %d times that it stopped without recording, want %d", got, n)
	}

	for i, r := range roles {
		mustLogin(t, "version 3 after A came back", r.user, pw3[i])
		mustRefuse(t, "version 1 after A came back", r.user, r.pw1)
		if v, _ := current(apiB, r.name); v != 3 {
			t.Errorf("%s: current version %d, want 3", r.name, v)
		}
		d, err := apiB.DescribeSecret(ctx, r.name)
		must("describe", err)
		if len(d.Versions) != 3 {
			t.Errorf("%s: %d versions, want 3", r.name, len(d.Versions))
		}
		runs, err := apiB.RotationHistory(ctx, r.name, 0)
		must("history", err)
		if len(runs) != 2 {
			t.Fatalf("%s: runs %+v, want 2 (A's, finished by B or C, and B's)", r.name, runs)
		}
		for _, run := range runs {
			if run.State != "succeeded" {
				t.Errorf("%s: run %s is %s", r.name, run.ID, run.State)
			}
			var steps []string
			for _, s := range run.Steps {
				steps = append(steps, s.Step+":"+s.Result)
			}
			joined := " " + strings.Join(steps, " ") + " "
			for _, st := range mrWantSteps {
				if c := strings.Count(joined, " "+st+":ok "); c != 1 {
					t.Errorf("%s run %s: history %v has %s:ok %d times, want once", r.name, run.ID, steps, st, c)
				}
			}
		}
		show, err := apiB.ShowRotation(ctx, r.name)
		must("show", err)
		if show.LastError != "" {
			t.Errorf("%s: last_error %q; A must record nothing after losing the lease", r.name, show.LastError)
		}
	}

	// A recovers by itself: it answers and drives a rotation to the end.
	if _, err := apiA.ListSecrets(ctx, "pg/"); err != nil {
		t.Fatalf("A after SIGCONT: list: %v", err)
	}
	_, err := apiA.Rotate(ctx, roles[0].name, client.RotateOptions{Wait: true})
	must("rotate --wait on A after SIGCONT", err)
	v4, pw4 := current(apiA, roles[0].name)
	if v4 != 4 {
		t.Errorf("after A's rotation the current version is %d, want 4", v4)
	}
	mustLogin(t, "version 4, rotated by A after it came back", roles[0].user, pw4)
	mustRefuse(t, "version 3", roles[0].user, pw3[0])
}

// TestFaultSQLiteDiskFull puts the dev daemon's data dir on a small tmpfs
// and fills it while a rotation stands before its create step commits
// (a failpoint); the rotation goes on and its next commit meets the full
// disk. The rotation fails cleanly: once space is back every stored version is
// readable, the database is intact, each run ended once with one version
// per succeeded run, and the daemon rotates again by itself. While the disk
// is full the daemon stays up (/healthz); authenticated reads are refused,
// as SECURITY.md promises that no request is answered before its audit
// record is durable.
func TestFaultSQLiteDiskFull(t *testing.T) {
	t.Parallel()
	mnt := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	data := filepath.Join(mnt, "data")
	release := filepath.Join(t.TempDir(), "go-on")
	s := startDev(t, withEnv("ROTARY_FAILPOINTS=create-before-store=wait:"+release), func(s *server) {
		i := slices.Index(s.args, "--data-dir")
		s.args[i+1], s.dataDir = data, data
	})
	cl, err := client.New(s.addr, client.WithToken(s.rootToken))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name := uniq("flt-full")
	if _, err := cl.CreateSecret(ctx, client.CreateSecretRequest{Name: name, Type: "password", Value: client.NewValue([]byte("initial-" + randHex(8)))}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetRotation(ctx, name, client.RotationSettings{Rotator: "random", Schedule: "none"}); err != nil {
		t.Fatal(err)
	}
	// The store writes ahead (WAL) and checkpoints often; a commit after a
	// checkpoint may reuse log space the file already has and need none.
	// Empty the log, then hold a read snapshot so that it cannot restart:
	// from here every commit appends, on fresh space.
	conn, err := s.sqliteDB(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var busy, logFrames, done int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil || busy != 0 {
		t.Fatalf("truncate the store's log: busy %d, %v", busy, err)
	}
	var n int
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM meta").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Rotate(ctx, name, client.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitLog("FAILPOINT create-before-store", 30*time.Second)

	// Fill the file system.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()

	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The rotation's failure on the full disk is logged (recording it in
	// the store may fail too).
	hit := func() bool {
		for _, l := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(l, "disk is full") && (strings.Contains(l, `msg="rotation failed"`) || strings.Contains(l, `msg="record rotation failure"`)) {
				return true
			}
		}
		return false
	}
	waitFor(t, 30*time.Second, "the rotation to fail on the full disk (or, were the disk not full, to end)", func() bool {
		return hit() || strings.Contains(s.logs.String(), `msg=rotated`)
	})
	if !hit() {
		t.Fatal("the rotation did not fail on the full disk: it went on without needing space")
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.httpDo(t, "GET", "/healthz", "", "", nil); st != 200 {
		t.Errorf("/healthz on a full disk: %d, want 200", st)
	}
	if _, err := cl.GetSecret(ctx, name, 0, ""); err == nil {
		t.Errorf("a read was answered while its audit record could not be written")
	}
	s.waitLog("audit append failed; refusing to answer", 10*time.Second)
	var ok string
	if err := s.sqliteDB(t).QueryRow("PRAGMA quick_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("on the full disk: PRAGMA quick_check = %q, %v", ok, err)
	}

	// Space comes back: reads are served, the daemon rotates again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a rotation to succeed once space is back", func() bool {
		_, err := cl.Rotate(ctx, name, client.RotateOptions{Wait: true})
		return err == nil
	})
	if err := s.sqliteDB(t).QueryRow("PRAGMA quick_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("after space came back: PRAGMA quick_check = %q, %v", ok, err)
	}
	d, err := cl.DescribeSecret(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range d.Versions {
		if _, err := cl.GetSecret(ctx, name, v.Version, ""); err != nil {
			t.Fatalf("version %d is listed but cannot be read: %v", v.Version, err)
		}
	}
	cur, err := cl.GetSecret(ctx, name, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	runs, err := cl.RotationHistory(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	succeeded := 0
	for _, r := range runs {
		switch r.State {
		case "succeeded":
			succeeded++
		case "running":
			t.Errorf("run %s is still running after a rotation succeeded", r.ID)
		}
		var steps []string
		for _, st := range r.Steps {
			steps = append(steps, st.Step+":"+st.Result)
		}
		joined := " " + strings.Join(steps, " ") + " "
		for _, st := range mrWantSteps {
			if c := strings.Count(joined, " "+st+":ok "); c > 1 {
				t.Errorf("run %s: history %v has %s:ok %d times", r.ID, steps, st, c)
			}
		}
	}
	if int(cur.Version) != succeeded+1 || len(d.Versions) > succeeded+1 {
		t.Errorf("current version %d, %d versions listed, after %d succeeded runs: want one version per run", cur.Version, len(d.Versions), succeeded)
	}
	t.Logf("%d runs, %d succeeded, current version %d", len(runs), succeeded, cur.Version)
}
