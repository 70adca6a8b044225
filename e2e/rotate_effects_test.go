package e2e

// What a rotation reports beyond rotating (the sessions it ended, the
// credentials it made useless), checked against what really happened on
// PostgreSQL, MariaDB and Redis; and what a rotation that cannot log in
// says (TestRotateLoginRefusedSaysWhatToDo).

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/rotators"
)

// fxWant is an effect a run must report.
type fxWant struct {
	kind, target string
	count        int
}

// checkEffects checks that the newest run of name reported exactly want
// (in any order), in the history's JSON and in its text table, and that
// the rotate command's output (out) says the same words.
func checkEffects(t *testing.T, c cli, name, out string, want ...fxWant) {
	t.Helper()
	runs := okJSON[client.RunList](c, "rotation", "history", name)
	if len(runs.Runs) == 0 {
		t.Fatalf("history of %s is empty", name)
	}
	got := runs.Runs[0].Effects
	var gotS, wantS []string
	for _, e := range got {
		gotS = append(gotS, fmt.Sprintf("%s %s %d", e.Kind, e.Target, e.Count))
	}
	for _, w := range want {
		wantS = append(wantS, fmt.Sprintf("%s %s %d", w.kind, w.target, w.count))
	}
	if !sameSet(gotS, wantS) {
		t.Fatalf("run %s (trigger %s) reported effects %q, want %q", runs.Runs[0].ID, runs.Runs[0].Trigger, gotS, wantS)
	}
	table := c.ok("rotation", "history", name)
	for _, e := range got {
		words := rotators.Effect(e).String()
		if !strings.Contains(out, words) {
			t.Errorf("rotate printed %q, want it to say %q", out, words)
		}
		if !strings.Contains(table, words) {
			t.Errorf("rotation history printed %q, want it to say %q", table, words)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// checkNoEffects is the negative control: a regular rotation ends no
// session and reports none, and its output says nothing of the kind.
func checkNoEffects(t *testing.T, c cli, name, out string) {
	t.Helper()
	runs := okJSON[client.RunList](c, "rotation", "history", name)
	if len(runs.Runs) == 0 || len(runs.Runs[0].Effects) != 0 {
		t.Fatalf("a regular rotation reported effects %+v, want none", runs.Runs)
	}
	if strings.Contains(out, "ended") || strings.Contains(out, "useless") {
		t.Errorf("a regular rotation printed %q, want no effects", out)
	}
}

func pgRoleTarget(role string) string { return "role " + fmt.Sprintf("%q", role) }

// TestRotateEffectsPostgres: an emergency rotation reports as many ended
// sessions as were open (and they are really gone), and names the
// credential it made useless (which really no longer logs in).
func TestRotateEffectsPostgres(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startDev(t)
	for _, strategy := range []string{"single-user", "alternating"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			c := s.root(t)
			user, pw0, name := pgRotation(t, c, db, "e2e_fx_", "pg-fx", strategy)

			// Negative control: sessions open during a regular rotation
			// stay open, and nothing is reported.
			before := pgSession(t, user, pw0)
			out := c.ok("rotate", name, "--wait")
			checkNoEffects(t, c, name, out)
			if !before() {
				t.Fatal("a regular rotation ended a session")
			}
			u1, pw1 := pgCurrent(c, name)

			// Emergency: N sessions of the compromised current credential
			// (and, alternating, M of the previous user that still works).
			const n, m = 3, 2
			var cur, prev []func() bool
			for range n {
				cur = append(cur, pgSession(t, u1, pw1))
			}
			if strategy == "alternating" {
				for range m {
					prev = append(prev, pgSession(t, user, pw0))
				}
			}
			out = c.ok("rotate", name, "--emergency", "--wait")
			u2, pw2 := pgCurrent(c, name)
			mustLogin(t, "after the emergency", u2, pw2)
			mustRefuse(t, "compromised", u1, pw1)
			for i, alive := range append(cur, prev...) {
				if alive() {
					t.Errorf("session %d is still open after the emergency", i)
				}
			}
			if strategy == "single-user" {
				checkEffects(t, c, name, out,
					fxWant{rotators.EffectCredentialRevoked, pgRoleTarget(user), 0},
					fxWant{rotators.EffectSessionsEnded, pgRoleTarget(user), n + 1}) // +1: the session of the control
			} else {
				mustRefuse(t, "original", user, pw0)
				checkEffects(t, c, name, out,
					fxWant{rotators.EffectCredentialRevoked, pgRoleTarget(u1), 0},
					fxWant{rotators.EffectSessionsEnded, pgRoleTarget(u1), n},
					fxWant{rotators.EffectSessionsEnded, pgRoleTarget(user), m + 1}) // +1: the session of the control
			}
			noLeaks(t, s, c, name, pw0, pw1, pw2)
		})
	}
}

// TestRotateEffectsMariaDB: the admin strategy ends the sessions of the
// rotated user with KILL and reports how many.
func TestRotateEffectsMariaDB(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	root := mrMySQLRoot(t)
	user := "mr_fx_" + randHex(4)
	v1 := mrMySQLUser(t, root, user, mrNewPassword(), nil)
	name := uniq("mr-fx") + "/mysql"
	mrCreateCred(c, name, v1)
	adm := mrMySQLUser(t, root, "mr_fxadm_"+randHex(4), mrNewPassword(), mrMySQLAdminGrants["admin"])
	mrCreateCred(c, name+"-admin", adm)
	mrSetRotation(c, name, "mysql", map[string]any{"strategy": "admin", "admin_secret": name + "-admin"})

	control := mrMySQLSession(t, v1, user)
	out := c.ok("rotate", name, "--wait")
	checkNoEffects(t, c, name, out)
	if !control.alive() {
		t.Fatal("a regular rotation ended a session")
	}
	v2, _ := mrCurrent(c, name)
	const n = 3
	var sess []*mrSQLSession
	for range n {
		sess = append(sess, mrMySQLSession(t, v2, user))
	}
	out = c.ok("rotate", name, "--emergency", "--wait")
	v3, _ := mrCurrent(c, name)
	mrMySQLMustLogin(t, "after the emergency", v3, user)
	mrMySQLMustRefuse(t, "compromised", v2)
	for i, x := range append(sess, control) {
		if x.alive() {
			t.Errorf("session %d is still open after the emergency", i)
		}
	}
	target := "user " + fmt.Sprintf("%q", user)
	checkEffects(t, c, name, out,
		fxWant{rotators.EffectCredentialRevoked, target, 0},
		fxWant{rotators.EffectSessionsEnded, target, n + 1})
}

// TestRotateEffectsRedis: CLIENT KILL USER's count is reported, the
// sessions are gone, and the old password is refused by AUTH.
func TestRotateEffectsRedis(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	rdb := mrRedisRoot(t)
	v1 := mrRedisUser(t, rdb, "mr_fx_"+randHex(4), mrNewPassword(), mrRedisAppRules)
	name := uniq("mr-fx") + "/redis"
	mrCreateCred(c, name, v1)
	adm := mrRedisUser(t, rdb, "mr_fxadm_"+randHex(4), mrNewPassword(), mrRedisAdminRules)
	mrCreateCred(c, name+"-admin", adm)
	mrSetRotation(c, name, "redis", map[string]any{"strategy": "admin", "admin_secret": name + "-admin"})

	control := mrRedisOpen(t, v1)
	out := c.ok("rotate", name, "--wait")
	checkNoEffects(t, c, name, out)
	if !control.alive() {
		t.Fatal("a regular rotation ended a session")
	}
	v2, _ := mrCurrent(c, name)
	const n = 3
	var sess []*mrRedisSession
	for range n {
		sess = append(sess, mrRedisOpen(t, v2))
	}
	out = c.ok("rotate", name, "--emergency", "--wait")
	v3, _ := mrCurrent(c, name)
	mrRedisMustLogin(t, "after the emergency", v3)
	mrRedisMustRefuse(t, "compromised", v2)
	for i, x := range append(sess, control) {
		if x.alive() {
			t.Errorf("session %d is still open after the emergency", i)
		}
	}
	target := "user " + fmt.Sprintf("%q", v1.Username)
	checkEffects(t, c, name, out,
		fxWant{rotators.EffectCredentialRevoked, target, 0},
		fxWant{rotators.EffectSessionsEnded, target, n + 1})
}

var nextTryRe = regexp.MustCompile(`next try at (\d\d:\d\d:\d\d) UTC \(in (\d+)m\)`)

// TestRotateLoginRefusedSaysWhatToDo changes the role's password behind
// rotary's back: the rotation fails with one line that says neither
// stored credential logs in, how to fix it and when it tries again; after
// `secret put` of the working credential the next rotation succeeds.
func TestRotateLoginRefusedSaysWhatToDo(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startPGServer(t, newPGFixture(t), "retry_backoff: 10m\n")
	c := s.root(t)
	user := "e2e_refused_" + randHex(4)
	pw0 := pgRole(t, db, user)
	name := "prod/" + user
	c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
	c.ok("rotation", "set", name, "--rotator", "postgres", "--schedule", "none")

	pwX := "Behind-" + randHex(12)
	if _, err := db.Exec("ALTER ROLE " + pq.QuoteIdentifier(user) + " PASSWORD " + pq.QuoteLiteral(pwX)); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "stored (changed behind rotary's back)", user, pw0)

	started := time.Now().UTC()
	want := fmt.Sprintf(`%s: neither the current nor the pending password of role %q logs in to 127.0.0.1:5432 (password authentication failed); `+
		`store the working one with "rotary secret put %s", next try at `, name, user, name)
	errOut := c.fail(exitFailure, []string{want}, "rotate", name, "--wait")
	line := strings.TrimSpace(strings.ReplaceAll(errOut, valueWarning+"\n", ""))
	for _, repeated := range []string{"postgres: ", "set: ", "rotate " + name, "pq: "} {
		if strings.Contains(line, repeated) {
			t.Errorf("the error %q holds the layer prefix %q", line, repeated)
		}
	}
	if strings.Count(line, name) != 2 {
		t.Errorf("the error %q names the secret %d times, want twice (whose rotation, and the command)", line, strings.Count(line, name))
	}
	mt := nextTryRe.FindStringSubmatch(line)
	if mt == nil {
		t.Fatalf("the error %q does not say when the next try is", line)
	}
	// retry_backoff 10m with ±20% jitter.
	if mins, _ := strconv.Atoi(mt[2]); mins < 8 || mins > 12 {
		t.Errorf("the error says the next try is in %dm, want 8 to 12 minutes", mins)
	}
	show := okJSON[client.RotationShow](c, "rotation", "show", name)
	if show.NextRotationAt == nil || show.NextRotationAt.UTC().Format("15:04:05") != mt[1] {
		t.Errorf("rotation show: next rotation %v, the error said %s UTC", show.NextRotationAt, mt[1])
	}
	if d := show.NextRotationAt.Sub(started); d < 7*time.Minute || d > 13*time.Minute {
		t.Errorf("rotation show: next rotation in %v, want about 10m", d)
	}
	if !strings.HasPrefix(show.LastError, "neither the current nor the pending password of role") ||
		!strings.Contains(show.LastError, `"rotary secret put `+name+`"`) {
		t.Errorf("rotation show: last_error %q, want the explanation and the command", show.LastError)
	}
	st := okJSON[client.Status](c, "status")
	for _, r := range st.Secrets {
		if r.Name == name && r.LastError != show.LastError {
			t.Errorf("status: error %q, rotation show: %q", r.LastError, show.LastError)
		}
	}

	// The fix the message names: store the working credential.
	c.withStdin([]byte(pgValue(user, pwX, 5432))).ok("secret", "put", name, "--value-stdin")
	out := c.ok("rotate", name, "--wait")
	if !strings.Contains(out, "rotated "+name) {
		t.Fatalf("rotate after the fix printed %q", out)
	}
	u, pw := pgCurrent(c, name)
	mustLogin(t, "rotated after the fix", u, pw)
	mustRefuse(t, "the one stored by hand", user, pwX)
	if show := okJSON[client.RotationShow](c, "rotation", "show", name); show.LastError != "" {
		t.Errorf("after a successful rotation last_error is %q", show.LastError)
	}
	noLeaks(t, s, c, name, pw0, pwX, pw)
}

// TestRotateAdminRefusedSaysWhatToDo: when the admin credential no
// longer logs in, the message names the admin role and the admin secret
// to put; after that put the same rotation completes.
func TestRotateAdminRefusedSaysWhatToDo(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startPGServer(t, newPGFixture(t), "retry_backoff: 10m\n")
	c := s.root(t)
	user := "e2e_admref_" + randHex(4)
	pw0 := pgRole(t, db, user)
	name := "prod/" + user
	c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
	adm, admPw := pgAdminRole(t, db)
	admName := "prod/admin-" + randHex(4)
	c.ok("secret", "create", admName, "--type", "db-credentials", "--value", pgValue(adm, admPw, 5432))
	c.ok("rotation", "set", name, "--rotator", "postgres", "--schedule", "none",
		"--config-json", `{"strategy":"admin","admin_secret":"`+admName+`"}`)

	admX := "Behind-" + randHex(12)
	if _, err := db.Exec("ALTER ROLE " + pq.QuoteIdentifier(adm) + " PASSWORD " + pq.QuoteLiteral(admX)); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "stored admin (changed behind rotary's back)", adm, admPw)
	want := fmt.Sprintf(`%s: the admin password of role %q does not log in to 127.0.0.1:5432 (password authentication failed); `+
		`store the working one in the admin secret with "rotary secret put %s", next try at `, name, adm, admName)
	errOut := c.fail(exitFailure, []string{want}, "rotate", name, "--wait")
	if !nextTryRe.MatchString(errOut) || strings.Contains(errOut, "postgres: ") || strings.Contains(errOut, "set: ") {
		t.Errorf("the error %q has layer prefixes or no next try", errOut)
	}
	mustLogin(t, "the role (untouched)", user, pw0)

	c.withStdin([]byte(pgValue(adm, admX, 5432))).ok("secret", "put", admName, "--value-stdin")
	if out := c.ok("rotate", name, "--wait"); !strings.Contains(out, "rotated "+name) {
		t.Fatalf("rotate after the fix printed %q", out)
	}
	u, pw := pgCurrent(c, name)
	mustLogin(t, "rotated after the fix", u, pw)
	mustRefuse(t, "old", user, pw0)
	noLeaks(t, s, c, name, pw0, admPw, admX, pw)
}
