package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/internal/testenv"
)

// PostgreSQL trusts every local connection on these machines. Every role
// the tests rotate is made a member of rotary_pwcheck, for which
// scripts/services.sh put scram-sha-256 rules at the top of pg_hba.conf,
// so PostgreSQL checks its password; each test also shows that a wrong
// password is refused.

func pgSuper(t testing.TB) *sql.DB {
	t.Helper()
	base, _ := postgresDSN()
	db, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	waitFor(t, 30*time.Second, "PostgreSQL", func() bool { return db.Ping() == nil })
	return db
}

// pgRole creates a login role that must give its password, with cleanup
// of it and of its alternating twin.
func pgRole(t testing.TB, db *sql.DB, name string, extra ...string) string {
	t.Helper()
	pw := "Pw-" + randHex(12)
	q := "CREATE ROLE " + pq.QuoteIdentifier(name) + " LOGIN PASSWORD " + pq.QuoteLiteral(pw) + " IN ROLE rotary_pwcheck " + strings.Join(extra, " ")
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("create role %s: %v", name, err)
	}
	t.Cleanup(func() {
		for _, r := range []string{name, name + "_b"} {
			_, _ = db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, r)
			_, _ = db.Exec("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(r))
		}
	})
	return pw
}

// pgAdminRole makes a role that may change other roles' passwords, end
// their sessions and hand out rotary_pwcheck to the alternating twin.
func pgAdminRole(t testing.TB, db *sql.DB) (string, string) {
	t.Helper()
	name := "e2e_adm_" + randHex(4)
	pw := "Adm-" + randHex(12)
	for _, q := range []string{
		"CREATE ROLE " + pq.QuoteIdentifier(name) + " LOGIN CREATEROLE PASSWORD " + pq.QuoteLiteral(pw) + " IN ROLE pg_signal_backend",
		"GRANT rotary_pwcheck TO " + pq.QuoteIdentifier(name) + " WITH ADMIN OPTION",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("admin role: %v", err)
		}
	}
	t.Cleanup(func() {
		_, _ = db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, name)
		_, _ = db.Exec("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(name))
	})
	return name, pw
}

func pgValue(user, pw string, port int) string {
	b, _ := json.Marshal(map[string]any{"engine": "postgres", "host": "127.0.0.1", "port": port,
		"username": user, "password": pw, "dbname": "test", "sslmode": "disable"})
	return string(b)
}

// pgLogin logs in over TCP with a password and returns current_user.
func pgLogin(user, pw string) (string, error) {
	c, err := pq.NewConnector(fmt.Sprintf("host=127.0.0.1 port=5432 dbname=test sslmode=disable connect_timeout=10 user=%s password=%s",
		quoteConnParam(user), quoteConnParam(pw)))
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var who string
	err = db.QueryRow("SELECT current_user").Scan(&who)
	return who, err
}

func quoteConnParam(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// pgSession holds a session open with a credential; alive reports whether
// it still answers.
func pgSession(t testing.TB, user, pw string) func() bool {
	t.Helper()
	c, err := pq.NewConnector(fmt.Sprintf("host=127.0.0.1 port=5432 dbname=test sslmode=disable user=%s password=%s",
		quoteConnParam(user), quoteConnParam(pw)))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := conn.ExecContext(ctx, "SELECT 1")
		return err == nil
	}
}

// pgCurrent reads the secret's current credential through the CLI.
func pgCurrent(c cli, name string) (user, pw string) {
	c.t.Helper()
	v := okJSON[client.SecretValue](c, "secret", "get", name)
	var m map[string]any
	if err := json.Unmarshal([]byte(v.Value), &m); err != nil {
		c.t.Fatalf("current value of %s is not JSON", name)
	}
	return m["username"].(string), m["password"].(string)
}

func mustLogin(t testing.TB, what, user, pw string) {
	t.Helper()
	who, err := pgLogin(user, pw)
	if err != nil {
		t.Fatalf("%s credential of %s refused: %v", what, user, err)
	}
	if who != user {
		t.Fatalf("%s credential logged in as %q, want %q", what, who, user)
	}
}

func mustRefuse(t testing.TB, what, user, pw string) {
	t.Helper()
	if who, err := pgLogin(user, pw); err == nil {
		t.Fatalf("%s credential of %s still logs in (as %q); want it refused", what, user, who)
	}
}

// noLeaks checks that none of the passwords appear in the daemon's logs,
// the rotation history, the audit log or /metrics.
func noLeaks(t *testing.T, s *server, c cli, secret string, passwords ...string) {
	t.Helper()
	hist := c.ok("rotation", "history", secret, "-o", "json")
	audit := c.ok("audit", "list", "-o", "json", "--limit", "100000")
	resp, err := http.Get(s.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, pw := range passwords {
		for what, text := range map[string]string{"daemon logs": s.logs.String(), "history": hist, "audit": audit, "metrics": string(metrics)} {
			if strings.Contains(text, pw) {
				t.Errorf("a password appears in the %s", what)
			}
		}
	}
}

func TestRotatePostgres(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startDev(t)
	c := s.root(t)
	for _, strategy := range []string{"single-user", "admin", "alternating"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			c := s.root(t)
			user := "e2e_" + strings.ReplaceAll(strategy, "-", "") + "_" + randHex(4)
			pw0 := pgRole(t, db, user)
			mustLogin(t, "initial", user, pw0)
			mustRefuse(t, "wrong (negative control)", user, pw0+"x")
			name := "pg/" + user
			c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
			cfg := `{"strategy":"` + strategy + `"}`
			if strategy != "single-user" {
				adm, admPw := pgAdminRole(t, db)
				admName := "pg/admin-" + randHex(4)
				c.ok("secret", "create", admName, "--type", "db-credentials", "--value", pgValue(adm, admPw, 5432))
				cfg = `{"strategy":"` + strategy + `","admin_secret":"` + admName + `"}`
			}
			c.ok("rotation", "set", name, "--rotator", "postgres", "--config-json", cfg)
			out := c.ok("rotate", name, "--wait")
			if !strings.Contains(out, "version 2 is current") {
				t.Fatalf("rotate --wait printed %q", out)
			}
			u1, pw1 := pgCurrent(c, name)
			if pw1 == pw0 {
				t.Fatal("the password did not change")
			}
			mustLogin(t, "new", u1, pw1)
			if strategy == "alternating" {
				if u1 != user+"_b" {
					t.Fatalf("alternating: current user %q, want %q", u1, user+"_b")
				}
				mustLogin(t, "previous (alternating keeps it)", user, pw0)
			} else {
				mustRefuse(t, "old", user, pw0)
			}
			// Emergency: every older credential stops working and the open
			// session of the old credential is ended.
			alive := pgSession(t, u1, pw1)
			if !alive() {
				t.Fatal("session did not open")
			}
			c.ok("rotate", name, "--emergency", "--wait")
			u2, pw2 := pgCurrent(c, name)
			mustLogin(t, "after emergency", u2, pw2)
			mustRefuse(t, "previous after emergency", u1, pw1)
			mustRefuse(t, "original after emergency", user, pw0)
			waitFor(t, 20*time.Second, "the old session to be ended", func() bool { return !alive() })
			runs := okJSON[client.RunList](c, "rotation", "history", name)
			if len(runs.Runs) != 2 || runs.Runs[0].Trigger != "emergency" || runs.Runs[1].Trigger != "manual" {
				t.Fatalf("history = %+v", runs.Runs)
			}
			for _, r := range runs.Runs {
				var steps []string
				for _, st := range r.Steps {
					steps = append(steps, st.Step+":"+st.Result)
				}
				if r.State != "succeeded" || strings.Join(steps, " ") != "create:ok set:ok test:ok finish:ok cleanup:ok" {
					t.Errorf("run %s: %s, steps %v", r.ID, r.State, steps)
				}
			}
			noLeaks(t, s, c, name, pw0, pw1, pw2)
		})
	}
	t.Run("keep-sessions", func(t *testing.T) {
		t.Parallel()
		user := "e2e_keep_" + randHex(4)
		pw0 := pgRole(t, db, user)
		name := "pg/" + user
		c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
		c.ok("rotation", "set", name, "--rotator", "postgres")
		alive := pgSession(t, user, pw0)
		c.ok("rotate", name, "--emergency", "--keep-sessions", "--wait")
		mustRefuse(t, "old", user, pw0)
		if !alive() {
			t.Errorf("--keep-sessions: the open session was ended")
		}
	})
}

// TestRotationCrashInEachStep kills the daemon with SIGKILL inside each
// step of a PostgreSQL rotation, restarts it, and shows the rotation
// completes with a working current credential and the old one refused.
func TestRotationCrashInEachStep(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	for _, point := range []string{"create-after-store", "set-before", "set-after", "test-before", "test-after", "finish-before", "finish-after"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			s := startDev(t, withEnv("ROTARY_FAILPOINTS="+point))
			c := s.root(t)
			user := "e2e_crash_" + randHex(4)
			pw0 := pgRole(t, db, user)
			name := "pg/" + user
			c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
			c.ok("rotation", "set", name, "--rotator", "postgres")
			c.ok("rotate", name) // starts in the background
			s.waitLog("FAILPOINT "+point, 60*time.Second)
			s.kill9()
			// Restart without the failpoint: the daemon resumes the run.
			s.env = slicesWithout(s.env, "ROTARY_FAILPOINTS=")
			s.start()
			waitFor(t, 60*time.Second, "the resumed rotation to end", func() bool {
				runs := okJSON[client.RunList](c, "rotation", "history", name)
				return len(runs.Runs) == 1 && runs.Runs[0].State != "running"
			})
			runs := okJSON[client.RunList](c, "rotation", "history", name)
			if runs.Runs[0].State != "succeeded" {
				t.Fatalf("after the crash at %s the run ended %s: %s", point, runs.Runs[0].State, runs.Runs[0].Error)
			}
			u, pw := pgCurrent(c, name)
			mustLogin(t, "current after recovery", u, pw)
			mustRefuse(t, "old after recovery", user, pw0)
			d := okJSON[client.Secret](c, "secret", "describe", name)
			if len(d.Versions) != 2 {
				t.Errorf("versions after recovery = %d, want 2 (no duplicate pending versions)", len(d.Versions))
			}
		})
	}
}

func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// TestRotationTargetUnreachable takes the database away during set and
// during test; the rotation fails cleanly with last_error, the store keeps
// a working credential, and once the database is back the same run is
// resumed and completes.
func TestRotationTargetUnreachable(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	for _, during := range []string{"set", "test"} {
		t.Run(during, func(t *testing.T) {
			t.Parallel()
			release := filepath.Join(t.TempDir(), "go-on")
			s := startDev(t, withEnv("ROTARY_FAILPOINTS="+during+"-before=wait:"+release))
			c := s.root(t)
			proxy := testenv.NewProxy(t, "127.0.0.1:5432")
			user := "e2e_down_" + randHex(4)
			pw0 := pgRole(t, db, user)
			name := "pg/" + user
			c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, proxy.Port()))
			c.ok("rotation", "set", name, "--rotator", "postgres", "--config-json", `{"connect_timeout":"3s"}`)
			c.ok("rotate", name)
			s.waitLog("FAILPOINT "+during+"-before", 60*time.Second)
			proxy.SetDown(true)
			if err := os.WriteFile(release, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var show client.RotationShow
			waitFor(t, 90*time.Second, "the failed attempt to be recorded", func() bool {
				show = okJSON[client.RotationShow](c, "rotation", "show", name)
				return show.LastError != ""
			})
			runs := okJSON[client.RunList](c, "rotation", "history", name)
			if len(runs.Runs) != 1 || runs.Runs[0].State != "running" {
				t.Fatalf("after the target went away: runs %+v, want one run still running (resumable)", runs.Runs)
			}
			// The store still knows a working credential: the current one
			// (set never reached the database) or, when set ran before the
			// test failed, the pending one.
			d := okJSON[client.Secret](c, "secret", "describe", name)
			working := 0
			for _, v := range d.Versions {
				val := okJSON[client.SecretValue](c, "secret", "get", name, "--version", strconv.FormatInt(v.Version, 10))
				var m map[string]any
				_ = json.Unmarshal([]byte(val.Value), &m)
				if _, err := pgLogin(m["username"].(string), m["password"].(string)); err == nil {
					working++
				}
			}
			if working != 1 {
				t.Fatalf("while the target was away %d stored versions work, want exactly 1", working)
			}
			// The target comes back; the scheduler resumes the same run (dev
			// mode retries after a second) and it completes. A request to
			// rotate joins the run while it runs; asked for once it has
			// ended, it would start a second one, so none is made here.
			proxy.SetDown(false)
			waitFor(t, 90*time.Second, "the run to be resumed and to succeed", func() bool {
				h := okJSON[client.RunList](c, "rotation", "history", name)
				if len(h.Runs) != 1 {
					t.Fatalf("after the target came back: runs %+v, want the one run resumed, no second", h.Runs)
				}
				return h.Runs[0].State == "succeeded"
			})
			runs = okJSON[client.RunList](c, "rotation", "history", name)
			if len(runs.Runs) != 1 || runs.Runs[0].State != "succeeded" {
				t.Fatalf("after the target came back: %+v, want the one run succeeded", runs.Runs)
			}
			u, pw := pgCurrent(c, name)
			mustLogin(t, "new", u, pw)
			mustRefuse(t, "old", user, pw0)
			if show := okJSON[client.RotationShow](c, "rotation", "show", name); show.LastError != "" {
				t.Errorf("last_error after success = %q, want empty", show.LastError)
			}
		})
	}
}

// pgRotation makes a PostgreSQL role whose password PostgreSQL checks
// (shown with a wrong one), its db-credentials secret under prefix, and a
// manual postgres rotation of it with strategy (alternating gets an admin
// role and secret of its own, under folder too). The role's name starts
// with rolePrefix, the secret's is folder/ROLE. It returns the role, its
// first password and the secret's name.
func pgRotation(t *testing.T, c cli, db *sql.DB, rolePrefix, folder, strategy string) (user, pw0, name string) {
	t.Helper()
	user = rolePrefix + strings.ReplaceAll(strategy, "-", "") + "_" + randHex(4)
	pw0 = pgRole(t, db, user)
	mustRefuse(t, "wrong (negative control)", user, pw0+"x")
	name = folder + "/" + user
	c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
	cfg := `{"strategy":"` + strategy + `"}`
	if strategy == "alternating" {
		adm, admPw := pgAdminRole(t, db)
		admName := folder + "/admin-" + randHex(4)
		c.ok("secret", "create", admName, "--type", "db-credentials", "--value", pgValue(adm, admPw, 5432))
		cfg = `{"strategy":"alternating","admin_secret":"` + admName + `"}`
	}
	c.ok("rotation", "set", name, "--rotator", "postgres", "--schedule", "none", "--config-json", cfg)
	return user, pw0, name
}
