package postgres

import (
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Verifiers PostgreSQL 15 computed itself (CREATE ROLE … PASSWORD
// '<plaintext>', then pg_authid.rolpassword).
var scramVectors = []struct{ password, verifier string }{
	{"pencil", "SCRAM-SHA-256$4096:Gjfx1yQLdV1g4nBBaCQF4Q==$y0gjXFUhuWq63xti0Wgdm28E/TTvYbl566eXTouZRmQ=:7c2WXl7SuZmXPGWBGx0fka571mOC/AZyzzEPEVU5CoM="},
	{`It's a \ p@ss-_.~W0rd!`, "SCRAM-SHA-256$4096:f4F6WLi97q7In5WzitlVcw==$2T9MXOtq9t/QxQWy5FN5GuhbnbYKrDCIynFbWCok3zQ=:HEmc2SbuFm9iqWnV0ZzYbKIbE9Ueljv0+Km7y17wwvM="},
}

func TestScramVerifierVectors(t *testing.T) {
	for _, v := range scramVectors {
		iter, salt, err := parseVerifier(v.verifier)
		if err != nil {
			t.Fatalf("parseVerifier(%q): %v", v.verifier, err)
		}
		got, err := scramVerifierWithSalt(sensitive.Bytes(v.password), salt, iter)
		if err != nil {
			t.Fatalf("scramVerifierWithSalt: %v", err)
		}
		if got != v.verifier {
			t.Errorf("verifier of %q:\n got  %s\n want %s", v.password, got, v.verifier)
		}
	}
}

func TestScramVerifierShape(t *testing.T) {
	a, err := ScramVerifier(sensitive.Bytes("pencil"), 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ScramVerifier(sensitive.Bytes("pencil"), 0)
	if a == b {
		t.Errorf("two verifiers of one password are equal; want a fresh salt each time")
	}
	iter, salt, err := parseVerifier(a)
	if err != nil || iter != DefaultIterations || len(salt) != saltLen {
		t.Errorf("ScramVerifier = %q: iterations %d, salt %d bytes, %v; want %d and %d", a, iter, len(salt), err, DefaultIterations, saltLen)
	}
	if strings.Contains(a, "pencil") {
		t.Errorf("the verifier contains the password")
	}
	c, _ := ScramVerifier(sensitive.Bytes("pencil"), 10000)
	if iter, _, _ := parseVerifier(c); iter != 10000 {
		t.Errorf("ScramVerifier(…, 10000) has %d iterations", iter)
	}
}

func TestScramVerifierRefuses(t *testing.T) {
	for _, p := range []string{"", "nul\x00byte", "ünïcødé-password"} {
		if v, err := ScramVerifier(sensitive.Bytes(p), 0); err == nil {
			t.Errorf("ScramVerifier(%q) = %q; want an error", p, v)
		} else if p != "" && strings.Contains(err.Error(), p) {
			t.Errorf("ScramVerifier error quotes the password: %v", err)
		}
	}
}

// TestScramVerifierMatchesPostgres: PostgreSQL hashes random passwords
// itself; the same salt and iterations give the same verifier here.
func TestScramVerifierMatchesPostgres(t *testing.T) {
	db := testenv.WaitPostgres(t)
	for range 3 {
		role := testenv.Unique("rt_scram_")
		pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{Symbols: ptr(rotators.Symbols)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("CREATE ROLE " + pq.QuoteIdentifier(role) + " PASSWORD " + pq.QuoteLiteral(string(pw.Reveal()))); err != nil {
			t.Fatalf("create role: %v", err)
		}
		t.Cleanup(func() { _, _ = db.Exec("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(role)) })
		var stored string
		if err := db.QueryRow(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored); err != nil {
			t.Fatalf("read rolpassword: %v", err)
		}
		iter, salt, err := parseVerifier(stored)
		if err != nil {
			t.Fatalf("PostgreSQL stored %q: %v", stored, err)
		}
		got, err := scramVerifierWithSalt(pw, salt, iter)
		if err != nil {
			t.Fatal(err)
		}
		if got != stored {
			t.Errorf("verifier mismatch:\n got  %s\n want %s (PostgreSQL)", got, stored)
		}
	}
}

// TestScramVerifierLogsIn: a verifier this package computed, with the
// default and with a raised iteration count, lets the role log in with the
// password and refuses a wrong one; PostgreSQL stores it unchanged.
func TestScramVerifierLogsIn(t *testing.T) {
	h := newHarness(t)
	for _, iter := range []int{0, 8192} {
		role := testenv.Unique("rt_scramlogin_")
		value := h.NewAccount(t, role)
		pw, _ := rotators.GeneratePassword(rotators.PasswordPolicy{})
		verifier, err := ScramVerifier(pw, iter)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.db.Exec(alterPasswordSQL(role, verifier)); err != nil {
			t.Fatalf("ALTER ROLE: %v", err)
		}
		var stored string
		if err := h.db.QueryRow(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != verifier {
			t.Errorf("PostgreSQL stored %q, want the verifier as sent %q", stored, verifier)
		}
		newValue, _ := rotators.WithCredentials(value, role, pw)
		if got, err := h.Login(t.Context(), newValue); err != nil || got != role {
			t.Errorf("iterations %d: login with the new password = %q, %v; want %q", iter, got, err, role)
		}
		if _, err := h.Login(t.Context(), value); err == nil {
			t.Errorf("iterations %d: the old password still logs in", iter)
		}
	}
}

func ptr[T any](v T) *T { return &v }
