package e2e

import (
	"strings"
	"testing"
)

// TestRotationSetSaysWhatAlternatingCreates: rotation set with the
// alternating strategy says which role the first rotation creates on the
// server (the default name user_b, or alternate_username), and that
// rotation does create it; single-user and a schedule-only change print
// no such line.
func TestRotationSetSaysWhatAlternatingCreates(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startDev(t)
	c := s.root(t)
	adm, admPw := pgAdminRole(t, db)
	admName := "pg/admin-" + randHex(4)
	c.ok("secret", "create", admName, "--type", "db-credentials", "--value", pgValue(adm, admPw, 5432))

	single := "e2e_altnote_" + randHex(4)
	spw := pgRole(t, db, single)
	c.ok("secret", "create", "pg/"+single, "--type", "db-credentials", "--value", pgValue(single, spw, 5432))
	out := c.ok("rotation", "set", "pg/"+single, "--rotator", "postgres", "--config-json", `{"strategy":"single-user"}`)
	if strings.Contains(out, "alternating:") {
		t.Fatalf("single-user: rotation set printed an alternating note:\n%s", out)
	}

	user := "e2e_altnote_" + randHex(4)
	pw := pgRole(t, db, user)
	name := "pg/" + user
	c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw, 5432))
	out = c.ok("rotation", "set", name, "--rotator", "postgres", "--config-json", `{"strategy":"alternating","admin_secret":"`+admName+`"}`)
	want := `alternating: rotations take turns between "` + user + `" and "` + user + `_b". The first rotation creates` + "\n" + `  role "` + user + `_b" on the server if it does not exist`
	if !strings.Contains(out, want) || !strings.Contains(out, "with the admin secret "+admName+": LOGIN") {
		t.Fatalf("rotation set alternating printed:\n%s\nwant %q", out, want)
	}
	if out := c.ok("rotation", "set", name, "--schedule", "@daily"); strings.Contains(out, "alternating:") {
		t.Fatalf("a schedule-only change repeated the note:\n%s", out)
	}
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, user+"_b").Scan(&exists); err != nil || exists {
		t.Fatalf("role %s_b before the first rotation: exists=%v, %v; want it missing", user, exists, err)
	}
	c.ok("rotate", name, "--wait")
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, user+"_b").Scan(&exists); err != nil || !exists {
		t.Fatalf("role %s_b after the first rotation: exists=%v, %v; the note said the rotation creates it", user, exists, err)
	}
	u, _ := pgCurrent(c, name)
	if u != user+"_b" {
		t.Fatalf("current user %q, want %s_b", u, user)
	}

	// alternate_username names the second role (not rotated here: nothing to drop).
	user2 := "e2e_altnote_" + randHex(4)
	pw2 := pgRole(t, db, user2)
	name2 := "pg/" + user2
	c.ok("secret", "create", name2, "--type", "db-credentials", "--value", pgValue(user2, pw2, 5432))
	out = c.ok("rotation", "set", name2, "--rotator", "postgres", "--config-json",
		`{"strategy":"alternating","admin_secret":"`+admName+`","alternate_username":"`+user2+`_two"}`)
	if !strings.Contains(out, `and "`+user2+`_two". The first rotation creates`+"\n"+`  role "`+user2+`_two" on the server`) {
		t.Fatalf("rotation set with alternate_username printed:\n%s", out)
	}
}

// TestRotationSetAlternatingNoteMySQL: for MySQL/MariaDB the note names
// the user and the grants the first rotation copies. Saving the settings
// connects to nothing, so the values need no real accounts.
func TestRotationSetAlternatingNoteMySQL(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	value := func(user string) string {
		return `{"engine":"mysql","host":"127.0.0.1","port":3306,"username":"` + user + `","password":"Pw-123456789","dbname":"test"}`
	}
	c.ok("secret", "create", "my/admin", "--type", "db-credentials", "--value", value("rotary_admin"))
	c.ok("secret", "create", "my/app", "--type", "db-credentials", "--value", value("app"))
	out := c.ok("rotation", "set", "my/app", "--rotator", "mysql", "--config-json", `{"strategy":"alternating","admin_secret":"my/admin"}`)
	want := `alternating: rotations take turns between "app" and "app_b". The first rotation creates` + "\n" +
		`  user "app_b" on app's account host if it does not exist, with the admin secret my/admin,` + "\n" +
		`  and gives it every grant SHOW GRANTS lists for app`
	if !strings.Contains(out, want) {
		t.Fatalf("rotation set alternating (mysql) printed:\n%s\nwant %q", out, want)
	}
	c.ok("secret", "create", "my/other", "--type", "db-credentials", "--value", value("other"))
	if out := c.ok("rotation", "set", "my/other", "--rotator", "mysql", "--config-json", `{"strategy":"admin","admin_secret":"my/admin"}`); strings.Contains(out, "alternating:") {
		t.Fatalf("strategy admin printed the alternating note:\n%s", out)
	}
}
