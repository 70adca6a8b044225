package e2e

// Issue 8, class 1: a rotation only ever touches the account it was bound
// to by `rotary rotation set`. A token that may write and rotate a
// db-credentials secret (but holds neither admin on it nor read on the
// admin secret) puts a value naming another account, then rotates: the
// rotation must be refused with an error naming the field, the other
// account must be untouched on the real server, and the legitimate
// rotation must still work.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/client"
)

// bindingAttacker makes a token that may describe, write and rotate the
// secret name and nothing else.
func bindingAttacker(c cli, name string) cli {
	c.t.Helper()
	tok := createToken(c, `{"rules":[{"secrets":"`+name+`","actions":["describe","write","rotate"]}]}`)
	return cli{t: c.t, addr: c.addr, token: tok}
}

// checkRefusedRotation runs the attacker's rotate and checks the refusal,
// the rotation's last_error, the audit record, and that the secret kept
// its versions (no pending version was made).
func checkRefusedRotation(t *testing.T, root, attacker cli, name, wantErr string, versionsBefore int) {
	t.Helper()
	_, stderr, code := attacker.run("rotate", name, "--wait")
	if code == 0 || !strings.Contains(stderr, wantErr) {
		t.Fatalf("the attacker's rotate exited %d with %q\nwant a failure containing %s", code, stderr, wantErr)
	}
	show := okJSON[client.RotationShow](root, "rotation", "show", name)
	if !strings.Contains(show.LastError, wantErr) {
		t.Errorf("last_error = %q, want it to name the field: %s", show.LastError, wantErr)
	}
	d := okJSON[client.Secret](root, "secret", "describe", name)
	if len(d.Versions) != versionsBefore {
		t.Errorf("the secret has %d versions after the refused rotation, want %d (no pending version)", len(d.Versions), versionsBefore)
	}
	audit := okJSON[client.AuditList](root, "audit", "list", "--secret", name)
	found := false
	for _, r := range audit.Records {
		if r.Action == "secret.rotate" && r.Result == "failed" && strings.Contains(r.Detail, "target mismatch") {
			found = true
		}
	}
	if !found {
		t.Errorf("no failed secret.rotate audit record names the target mismatch: %+v", audit.Records)
	}
}

func TestBindingRefusesAnotherPostgresRole(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startDev(t)
	root := s.root(t)

	app := "e2e_bind_app_" + randHex(4)
	victim := "e2e_bind_victim_" + randHex(4)
	appPw := pgRole(t, db, app)
	victimPw := pgRole(t, db, victim)
	mustRefuse(t, "victim, wrong password (PostgreSQL checks it)", victim, victimPw+"x")
	adm, admPw := pgAdminRole(t, db)

	name := "pg/" + app
	admName := "pg/admin-" + randHex(4)
	root.withStdin([]byte(pgValue(app, appPw, 5432))).ok("secret", "create", name, "--type", "db-credentials", "--value-stdin")
	root.withStdin([]byte(pgValue(adm, admPw, 5432))).ok("secret", "create", admName, "--type", "db-credentials", "--value-stdin")
	cfg := `{"strategy":"admin","admin_secret":"` + admName + `"}`
	root.ok("rotation", "set", name, "--rotator", "postgres", "--schedule", "none", "--config-json", cfg)

	show := okJSON[client.RotationShow](root, "rotation", "show", name)
	if want := `engine="postgres" host="127.0.0.1" port="5432" dbname="test" username="` + app + `" sslmode="disable"`; show.BoundTo != want {
		t.Errorf("rotation show: bound_to = %q, want %q", show.BoundTo, want)
	}
	attacker := bindingAttacker(root, name)
	// The attacker may not read the admin secret, nor rebind the rotation.
	attacker.fail(exitDenied, []string{"permission denied"}, "rotation", "set", name, "--rotator", "postgres", "--config-json", cfg)

	// The attack: a value naming the victim role (with a password the
	// attacker made up), then a rotation.
	attacker.withStdin([]byte(pgValue(victim, "made-up-"+randHex(8), 5432))).ok("secret", "put", name, "--value-stdin")
	checkRefusedRotation(t, root, attacker, name,
		`target mismatch: field "username" is "`+victim+`" in the current version, the rotation is bound to "`+app+`"`, 2)
	mustLogin(t, "victim, after the refused rotation", victim, victimPw)
	mustRefuse(t, "victim, wrong password after the refused rotation", victim, victimPw+"x")
	// Nor does an operator who saves the settings again (another schedule)
	// move the binding to the victim without saying so.
	root.fail(exitFailure, []string{"conflict", `field "username" is "` + victim + `"`, "--rebind"},
		"rotation", "set", name, "--rotator", "postgres", "--schedule", "rate(1 day)", "--config-json", cfg)

	// Another host is refused the same way, and nothing is sent to it.
	attacker.withStdin([]byte(`{"engine":"postgres","host":"127.0.0.2","port":5432,"dbname":"test","username":"`+app+`","password":"x-`+randHex(4)+`","sslmode":"disable"}`)).
		ok("secret", "put", name, "--value-stdin")
	checkRefusedRotation(t, root, attacker, name,
		`target mismatch: field "host" is "127.0.0.2" in the current version, the rotation is bound to "127.0.0.1"`, 3)

	// Negative control: the bound account's credential put back, the
	// rotation works end to end. (Disabled first, so that the scheduler's
	// retry of the failed run does not race the manual rotation.)
	root.ok("rotation", "disable", name)
	root.withStdin([]byte(pgValue(app, appPw, 5432))).ok("secret", "put", name, "--value-stdin")
	out := attacker.ok("rotate", name, "--wait")
	if !strings.Contains(out, "is current") {
		t.Fatalf("rotate --wait printed %q", out)
	}
	u, pw := pgCurrent(root, name)
	if u != app || pw == appPw {
		t.Fatalf("after the rotation: user %q, password changed %v", u, pw != appPw)
	}
	mustLogin(t, "rotated", app, pw)
	mustRefuse(t, "old", app, appPw)
	mustLogin(t, "victim, after the legitimate rotation", victim, victimPw)
	noLeaks(t, s, root, name, appPw, pw, victimPw, admPw)
}

// TestBindingRefusesAnotherRedisUser: the admin strategy would add a
// password of the attacker's choice to another ACL user. The victim's
// passwords must stay exactly what they were.
func TestBindingRefusesAnotherRedisUser(t *testing.T) {
	t.Parallel()
	rdb := mrRedisRoot(t)
	s := startDev(t)
	root := s.root(t)

	sfx := randHex(4)
	app := mrRedisUser(t, rdb, "e2e_bind_app_"+sfx, mrNewPassword(), mrRedisAppRules)
	victim := mrRedisUser(t, rdb, "e2e_bind_victim_"+sfx, mrNewPassword(), mrRedisAppRules)
	adm := mrRedisUser(t, rdb, "e2e_bind_adm_"+sfx, mrNewPassword(), mrRedisAdminRules)
	mrRedisMustRefuse(t, "victim, wrong password (Redis checks it)", mrCred{Username: victim.Username, Password: victim.Password + "x"})

	name := "redis/" + app.Username
	admName := "redis/admin-" + sfx
	mrCreateCred(root, name, app)
	mrCreateCred(root, admName, adm)
	mrSetRotation(root, name, "redis", map[string]any{"strategy": "admin", "admin_secret": admName})
	_, v := mrCurrent(root, name)

	attacker := bindingAttacker(root, name)
	evil := victim
	evil.Password = "attacker-chosen-" + randHex(8)
	attacker.withStdin([]byte(evil.json())).ok("secret", "put", name, "--value-stdin")
	checkRefusedRotation(t, root, attacker, name,
		`target mismatch: field "username" is "`+victim.Username+`" in the current version, the rotation is bound to "`+app.Username+`"`, 2)

	// The victim still has exactly its own password: none added.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum := sha256.Sum256([]byte(victim.Password))
	if got := bindRedisPasswords(ctx, t, rdb, victim.Username); len(got) != 1 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("the victim's passwords changed: %d hashes, want only its own", len(got))
	}
	mrRedisMustLogin(t, "victim, after the refused rotation", victim)
	mrRedisMustRefuse(t, "the attacker's password for the victim", evil)
	// (The password-less default user is not used as the victim here: were
	// the check broken, the attack would give the shared server's default
	// user a password. rotators/redis's target test covers that "" names
	// "default".)

	// Negative control: the bound user's credential put back rotates.
	// (Disabled first, so that the scheduler's retry of the failed run
	// does not race the manual rotation.)
	root.ok("rotation", "disable", name)
	root.withStdin([]byte(app.json())).ok("secret", "put", name, "--value-stdin")
	_, v = mrCurrent(root, name)
	next, _ := mrRotate(root, name, app, v)
	mrRedisMustLogin(t, "rotated", next)
	mrRedisMustRefuse(t, "old after finish", app)
	mrRedisMustLogin(t, "victim, after the legitimate rotation", victim)
}

// TestBindingRefusesAnotherMariaDBUser: with the alternating strategy the
// admin would set (or create) whatever user the value names; only the two
// users of the bound pair pass.
func TestBindingRefusesAnotherMariaDBUser(t *testing.T) {
	t.Parallel()
	db := mrMySQLRoot(t)
	s := startDev(t)
	root := s.root(t)

	sfx := randHex(4)
	appUser := "e2e_bind_app_" + sfx
	app := mrMySQLUser(t, db, appUser, mrNewPassword(), nil, appUser+"_b")
	victim := mrMySQLUser(t, db, "e2e_bind_victim_"+sfx, mrNewPassword(), nil)
	adm := mrMySQLUser(t, db, "e2e_bind_adm_"+sfx, mrNewPassword(), mrMySQLAdminGrants["alternating"])
	mrMySQLMustRefuse(t, "victim, wrong password (MariaDB checks it)", mrCred{Username: victim.Username, Password: victim.Password + "x"})

	name := "mysql/" + app.Username
	admName := "mysql/admin-" + sfx
	mrCreateCred(root, name, app)
	mrCreateCred(root, admName, adm)
	mrSetRotation(root, name, "mysql", map[string]any{"strategy": "alternating", "admin_secret": admName})

	attacker := bindingAttacker(root, name)
	evil := victim
	evil.Password = "attacker-chosen-" + randHex(8)
	attacker.withStdin([]byte(evil.json())).ok("secret", "put", name, "--value-stdin")
	checkRefusedRotation(t, root, attacker, name,
		`target mismatch: field "username" is "`+victim.Username+`" in the current version, the rotation is bound to "`+appUser+`" or "`+appUser+`_b"`, 2)
	mrMySQLMustLogin(t, "victim, after the refused rotation", victim, victim.Username)
	mrMySQLMustRefuse(t, "the attacker's password for the victim", evil)

	// Negative control: the bound pair rotates, to the other user.
	root.ok("rotation", "disable", name)
	root.withStdin([]byte(app.json())).ok("secret", "put", name, "--value-stdin")
	_, v := mrCurrent(root, name)
	next, _ := mrRotate(root, name, app, v)
	if next.Username != appUser+"_b" {
		t.Fatalf("alternating rotation: current user %q, want %q", next.Username, appUser+"_b")
	}
	mrMySQLMustLogin(t, "rotated", next, next.Username)
	mrMySQLMustLogin(t, "victim, after the legitimate rotation", victim, victim.Username)
}

// TestTestQueryNeedsAdmin: test_query runs a statement as the rotated
// account on every test step; a token with rotate (not admin) may not
// set it. The refusal is a 403 naming the option, audited as denied, and
// the stored settings do not change.
func TestTestQueryNeedsAdmin(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	root := s.root(t)
	name := uniq("tq") + "/db"
	value := `{"engine":"postgres","host":"127.0.0.1","port":5432,"username":"app","password":"pw-` + randHex(6) + `","dbname":"test"}`
	root.withStdin([]byte(value)).ok("secret", "create", name, "--type", "db-credentials", "--value-stdin")
	root.ok("rotation", "set", name, "--rotator", "postgres", "--schedule", "none")

	rotTok := createToken(root, `{"rules":[{"secrets":"`+name+`","actions":["describe","rotate"]}]}`)
	body := []byte(`{"rotator":"postgres","schedule":"none","config":{"test_query":"ALTER ROLE app SUPERUSER"}}`)
	code, resp := s.httpDo(t, "PUT", "/v1/secrets/"+url.PathEscape(name)+"/rotation", rotTok, "application/json", body)
	var e client.ErrorBody
	_ = json.Unmarshal(resp, &e)
	if code != 403 || !strings.Contains(e.Error, "test_query") || !strings.Contains(e.Error, "admin") {
		t.Fatalf("PUT rotation with test_query as a rotate token = %d %s, want 403 naming test_query and admin", code, resp)
	}
	show := okJSON[client.RotationShow](root, "rotation", "show", name)
	if _, ok := show.Config["test_query"]; ok {
		t.Errorf("the refused test_query was stored: %v", show.Config)
	}
	audit := okJSON[client.AuditList](root, "audit", "list", "--secret", name)
	denied := false
	for _, r := range audit.Records {
		if r.Action == "rotation.set" && r.Result == "denied" {
			denied = true
		}
	}
	if !denied {
		t.Errorf("no denied rotation.set audit record: %+v", audit.Records)
	}
	// Without test_query the same token may change the settings (negative
	// control), and a token with admin may set it.
	code, resp = s.httpDo(t, "PUT", "/v1/secrets/"+url.PathEscape(name)+"/rotation", rotTok, "application/json",
		[]byte(`{"rotator":"postgres","schedule":"none","config":{"connect_timeout":"5s"}}`))
	if code != 200 {
		t.Fatalf("PUT rotation without test_query = %d %s", code, resp)
	}
	adminTok := createToken(root, `{"rules":[{"secrets":"`+name+`","actions":["describe","rotate","admin"]}]}`)
	code, resp = s.httpDo(t, "PUT", "/v1/secrets/"+url.PathEscape(name)+"/rotation", adminTok, "application/json",
		[]byte(`{"rotator":"postgres","schedule":"none","config":{"test_query":"SELECT 1"}}`))
	if code != 200 {
		t.Fatalf("PUT rotation with test_query as an admin token = %d %s", code, resp)
	}
	show = okJSON[client.RotationShow](root, "rotation", "show", name)
	if show.Config["test_query"] != "SELECT 1" {
		t.Errorf("test_query set by admin not stored: %v", show.Config)
	}
}

// bindRedisPasswords returns the password hashes of an ACL user (ACL
// GETUSER, RESP2: a flat list of field names and values).
func bindRedisPasswords(ctx context.Context, t *testing.T, rdb *goredis.Client, user string) []string {
	t.Helper()
	res, err := rdb.Do(ctx, "ACL", "GETUSER", user).Slice()
	if err != nil {
		t.Fatalf("ACL GETUSER %s: %v", user, err)
	}
	for i := 0; i+1 < len(res); i += 2 {
		if res[i] == "passwords" {
			list, _ := res[i+1].([]any)
			out := make([]string, 0, len(list))
			for _, p := range list {
				out = append(out, p.(string))
			}
			return out
		}
	}
	t.Fatalf("ACL GETUSER %s: no passwords field", user)
	return nil
}
