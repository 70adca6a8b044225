package postgres

import (
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

const testVerifier = "SCRAM-SHA-256$4096:Gjfx1yQLdV1g4nBBaCQF4Q==$y0gjXFUhuWq63xti0Wgdm28E/TTvYbl566eXTouZRmQ=:7c2WXl7SuZmXPGWBGx0fka571mOC/AZyzzEPEVU5CoM="

func TestAlterPasswordSQL(t *testing.T) {
	for _, tc := range []struct{ role, want string }{
		{"app", `ALTER ROLE "app" PASSWORD '` + testVerifier + `'`},
		{`o'brien`, `ALTER ROLE "o'brien" PASSWORD '` + testVerifier + `'`},
		{`dq"uote`, `ALTER ROLE "dq""uote" PASSWORD '` + testVerifier + `'`},
		{`x" PASSWORD 'p'; DROP ROLE postgres; --`, `ALTER ROLE "x"" PASSWORD 'p'; DROP ROLE postgres; --" PASSWORD '` + testVerifier + `'`},
		{`back\slash`, `ALTER ROLE "back\slash" PASSWORD '` + testVerifier + `'`},
		{`semi;colon--`, `ALTER ROLE "semi;colon--" PASSWORD '` + testVerifier + `'`},
		{`pct%_x`, `ALTER ROLE "pct%_x" PASSWORD '` + testVerifier + `'`},
		{`ünïcødé`, `ALTER ROLE "ünïcødé" PASSWORD '` + testVerifier + `'`},
	} {
		if got := alterPasswordSQL(tc.role, testVerifier); got != tc.want {
			t.Errorf("alterPasswordSQL(%q):\n got  %s\n want %s", tc.role, got, tc.want)
		}
	}
}

func TestCreateRoleSQL(t *testing.T) {
	got := createRoleSQL(`o'b"x`, testVerifier, roleAttrs{Inherit: false, ConnLimit: 3, ValidUntil: `2099-01-01 00:00:00+00' SUPERUSER --`})
	want := `CREATE ROLE "o'b""x" LOGIN NOINHERIT CONNECTION LIMIT 3 VALID UNTIL '2099-01-01 00:00:00+00'' SUPERUSER --' PASSWORD '` + testVerifier + `'`
	if got != want {
		t.Errorf("createRoleSQL:\n got  %s\n want %s", got, want)
	}
	got = createRoleSQL("b", testVerifier, roleAttrs{Inherit: true, ConnLimit: -1})
	want = `CREATE ROLE "b" LOGIN PASSWORD '` + testVerifier + `'`
	if got != want {
		t.Errorf("createRoleSQL (defaults):\n got  %s\n want %s", got, want)
	}
}

func TestGrantSQL(t *testing.T) {
	for _, tc := range []struct {
		m    membership
		want string
	}{
		{membership{Group: "g"}, `GRANT "g" TO "m""x"`},
		{membership{Group: `g"; DROP`, Admin: true}, `GRANT "g""; DROP" TO "m""x" WITH ADMIN OPTION`},
		{membership{Group: "g", Admin: true, Inherit: false, Set: true, Options: true}, `GRANT "g" TO "m""x" WITH ADMIN true, INHERIT false, SET true`},
	} {
		if got := grantSQL(tc.m, `m"x`); got != tc.want {
			t.Errorf("grantSQL(%+v):\n got  %s\n want %s", tc.m, got, tc.want)
		}
	}
}

func TestMissingMemberships(t *testing.T) {
	first := []membership{{Group: "a"}, {Group: "b", Admin: true}, {Group: "c"}}
	second := []membership{{Group: "a", Admin: true}, {Group: "b"}, {Group: "z"}}
	got := missingMemberships(first, second)
	if len(got) != 2 || got[0].Group != "b" || !got[0].Admin || got[1].Group != "c" {
		t.Errorf("missingMemberships = %+v; want b (admin) and c", got)
	}
	if got := missingMemberships(first, first); len(got) != 0 {
		t.Errorf("missingMemberships of equal sets = %+v; want none", got)
	}
	// PostgreSQL 16: options compared too; one group listed per grantor.
	f16 := []membership{{Group: "a", Inherit: true, Set: true, Options: true}}
	s16 := []membership{{Group: "a", Inherit: false, Set: true, Options: true}}
	if got := missingMemberships(f16, s16); len(got) != 1 {
		t.Errorf("missingMemberships with a different INHERIT = %+v; want a", got)
	}
	s16 = append(s16, membership{Group: "a", Inherit: true, Set: false, Options: true})
	if got := missingMemberships(f16, s16); len(got) != 0 {
		t.Errorf("missingMemberships with two grants that together match = %+v; want none", got)
	}
}

func TestCheckRoleName(t *testing.T) {
	for _, name := range rotatortest.DefaultHostileNames {
		if err := checkRoleName(name); err != nil {
			t.Errorf("checkRoleName(%q) = %v; want it accepted", name, err)
		}
	}
	for _, name := range []string{"", "app\x00x", "\xff\xfe", strings.Repeat("é", 32)} {
		if err := checkRoleName(name); err == nil {
			t.Errorf("checkRoleName(%q) accepted", name)
		}
	}
	if err := checkRoleName(strings.Repeat("x", 63)); err != nil {
		t.Errorf("checkRoleName(63 bytes) = %v", err)
	}
}

// TestPQConfig: each field of the value is one field of the driver
// config, verbatim; none can add a parameter such as options or a
// password, and nothing comes from the environment.
func TestPQConfig(t *testing.T) {
	t.Setenv("PGOPTIONS", "-c role=postgres")
	t.Setenv("PGHOSTADDR", "192.0.2.1")
	c := rotators.DBCredentials{Host: `127.0.0.1`, Port: 5432, Username: `u' options='-c role=postgres`, Password: "p w=x",
		DBName: `d'b\ x password=stolen sslmode=disable options='-c role=postgres'`}
	cfg := pqConfig(c, "disable")
	if cfg.Database != c.DBName || cfg.Host != c.Host || cfg.Port != 5432 || cfg.User != c.Username || cfg.Password != c.Password ||
		cfg.Options != "" || cfg.Hostaddr.IsValid() || len(cfg.Multi) != 0 || string(cfg.SSLMode) != "disable" || cfg.Passfile != "" {
		t.Errorf("pqConfig: %+v", cfg)
	}
	if cfg := pqConfig(rotators.DBCredentials{Host: "[::1]", Port: 1}, "disable"); cfg.Host != "::1" || cfg.Database != "postgres" {
		t.Errorf("pqConfig([::1], no dbname): host %q dbname %q", cfg.Host, cfg.Database)
	}
	for _, tc := range []struct{ host, mode, want string }{
		{"127.0.0.1", "", "disable"}, {"localhost", "", "disable"}, {"::1", "", "disable"}, {"[::1]", "", "disable"},
		{"db.internal", "", "verify-full"}, {"10.0.0.1", "", "verify-full"}, {"127.0.0.1", "require", "require"},
	} {
		if got, err := (rotators.DBCredentials{Host: tc.host, SSLMode: tc.mode}).Mode(); err != nil || got != tc.want {
			t.Errorf("Mode(host %s, sslmode %q) = %s, %v; want %s", tc.host, tc.mode, got, err, tc.want)
		}
	}
}

// TestHostileSQLOnServer: every statement built for a hostile name is
// parsed by PostgreSQL as acting on exactly that role (in a transaction
// rolled back).
func TestHostileSQLOnServer(t *testing.T) {
	db := testenv.WaitPostgres(t)
	names := append([]string{`x" PASSWORD 'p'; DROP ROLE postgres; --`, `E'\x'`, `$$`, "tab\tnewline\n"}, rotatortest.DefaultHostileNames...)
	for _, name := range names {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(createRoleSQL(name, testVerifier, roleAttrs{Inherit: true, ConnLimit: 2, ValidUntil: "infinity"})); err != nil {
			t.Errorf("createRoleSQL(%q): %v", name, err)
		} else if _, err := tx.Exec(alterPasswordSQL(name, testVerifier)); err != nil {
			t.Errorf("alterPasswordSQL(%q): %v", name, err)
		} else if _, err := tx.Exec(grantSQL(membership{Group: "rotary_pwcheck", Admin: false}, name)); err != nil {
			t.Errorf("grantSQL(%q): %v", name, err)
		} else {
			var got, pw string
			var limit int
			if err := tx.QueryRow(`SELECT rolname, rolpassword, rolconnlimit FROM pg_authid WHERE rolname = $1`, name).Scan(&got, &pw, &limit); err != nil || got != name || pw != testVerifier || limit != 2 {
				t.Errorf("role %q: got %q, %q, %d, %v", name, got, pw, limit, err)
			}
		}
		_ = tx.Rollback()
	}
}
