package auth

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

var containTests = []struct {
	h, g string
	want bool
}{
	{"*", "*", true},
	{"*", "app/*", true},
	{"*", "", true},
	{"app/*", "app/*", true},
	{"app/*", "app/db", true},
	{"app/*", "app/prod/*", true},
	{"app/*", "app/?", true},
	{"app/*", "app/**", true},
	{"app/*", "*", false},
	{"app/*", "ap*", false},
	{"app/*", "app", false},
	{"app/*", "apps/*", false},
	{"app/*", "?pp/db", false}, // ? may be any character, not only 'a'
	{"app/?", "app/x", true},
	{"app/?", "app/?", true},
	{"app/?", "app/*", false}, // * may be empty or long
	{"app/?", "app/xy", false},
	{"app/db", "app/db", true},
	{"app/db", "app/d?", false},
	{"app/db", "app/d*", false},
	{"a*b", "a*b", true},
	{"a*b", "ab", true},
	{"a*b", "a*xb", true},
	{"a*b", "a*", false},
	{"*a*", "*a*a*", true},
	{"*a", "*a*a", true},
	{"*a*", "*", false},
	{"?*", "*?", true}, // both: at least one character
	{"*?", "?*", true},
	{"??", "*", false},
	{"*/db", "app/*/db", true},
	{"*/db", "app/*", false},
	{"", "", true},
	{"", "*", false},
	{"a", "", false},
	{"*", "policies", true},
	{"policies", "*", false},
	{"p*", "policies", true},
}

func TestGlobContains(t *testing.T) {
	t.Parallel()
	for _, tt := range containTests {
		if got := GlobContains(tt.h, tt.g); got != tt.want {
			t.Errorf("GlobContains(%q, %q) = %v, want %v", tt.h, tt.g, got, tt.want)
		}
	}
}

// TestGlobContainsLarge checks the longest globs take bounded time.
func TestGlobContainsLarge(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("a*", MaxGlobLength/2)
	g := strings.Repeat("a?", MaxGlobLength/2-1) + "b*"
	if GlobContains(h, g) {
		t.Fatal("GlobContains(a*a*…, a?a?…b*) = true, want false")
	}
	if !GlobContains(h, strings.Repeat("a", MaxGlobLength)) {
		t.Fatal("GlobContains(a*a*…, aaa…) = false, want true")
	}
}

// instantiate returns a random name that glob g matches, drawing
// characters for the wildcards from alphabet.
func instantiate(r *rand.Rand, g, alphabet string) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '*':
			for n := r.IntN(4); n > 0; n-- {
				b.WriteByte(alphabet[r.IntN(len(alphabet))])
			}
		case '?':
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		default:
			b.WriteByte(g[i])
		}
	}
	return b.String()
}

// FuzzGlobContains checks soundness against Match: whenever GlobContains
// says h contains g, every name that g matches must match h. Names are
// drawn from g itself (each matches g by construction) over an alphabet
// holding h's and g's literals and one character of neither.
func FuzzGlobContains(f *testing.F) {
	for _, tt := range containTests {
		f.Add(tt.h, tt.g, uint64(1))
	}
	f.Fuzz(func(t *testing.T, h, g string, seed uint64) {
		if len(h) > 64 || len(g) > 64 {
			return
		}
		alphabet := "#" + strings.NewReplacer("*", "", "?", "").Replace(h+g)
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		contains := GlobContains(h, g)
		if GlobContains(h, h) != true {
			t.Fatalf("GlobContains(%q, itself) = false", h)
		}
		for range 200 {
			name := instantiate(r, g, alphabet)
			if !Match(g, name) {
				t.Fatalf("instantiate(%q) = %q, which the glob does not match", g, name)
			}
			if contains && !Match(h, name) {
				t.Fatalf("GlobContains(%q, %q) = true, but %q matches only the second", h, g, name)
			}
		}
	})
}

// TestGlobContainsRandom runs the fuzz property over a fixed random
// sample, so plain go test exercises it beyond the seed corpus.
func TestGlobContainsRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(8, 8))
	const chars = "ab/*?"
	randGlob := func() string {
		b := make([]byte, r.IntN(7))
		for i := range b {
			b[i] = chars[r.IntN(len(chars))]
		}
		return string(b)
	}
	yes := 0
	for range 20000 {
		h, g := randGlob(), randGlob()
		if !GlobContains(h, g) {
			continue
		}
		yes++
		for range 50 {
			if name := instantiate(r, g, "ab/#"); !Match(h, name) {
				t.Fatalf("GlobContains(%q, %q) = true, but %q matches only the second", h, g, name)
			}
		}
	}
	if yes < 1000 {
		t.Fatalf("only %d of 20000 random pairs contained: the sample proves little", yes)
	}
}

func pol(rules ...Rule) Policy { return Policy{Rules: rules} }

func TestCovers(t *testing.T) {
	t.Parallel()
	appAdmin := pol(Rule{Secrets: "app/*", Actions: []Action{ActionAdmin}}, Rule{System: "policies", Actions: []Action{ActionAdmin}})
	appRead := pol(Rule{Secrets: "app/*", Actions: []Action{ActionRead, ActionList}})
	appWrite := pol(Rule{Secrets: "app/*", Actions: []Action{ActionWrite}})
	keysEnc := pol(Rule{Keys: "alias/app-*", Actions: []Action{ActionEncrypt}})
	tests := []struct {
		name    string
		held    []Policy
		p       Policy
		wantErr string // "" when covered
	}{
		{"root covers everything", []Policy{RootPolicy()}, RootPolicy(), ""},
		{"same policy", []Policy{appRead}, appRead, ""},
		{"narrower glob", []Policy{appRead}, pol(Rule{Secrets: "app/prod/*", Actions: []Action{ActionRead}}), ""},
		{"admin covers every action", []Policy{appAdmin}, pol(Rule{Secrets: "app/db", Actions: []Action{ActionRead, ActionWrite, ActionRotate, ActionDelete, ActionAdmin}}), ""},
		{"actions across policies", []Policy{appRead, appWrite}, pol(Rule{Secrets: "app/x", Actions: []Action{ActionRead, ActionWrite}}), ""},
		{"system names", []Policy{appAdmin}, pol(Rule{System: "policies", Actions: []Action{ActionAdmin}}), ""},
		{"key glob", []Policy{keysEnc}, pol(Rule{Keys: "alias/app-db", Actions: []Action{ActionEncrypt}}), ""},

		{"nothing held", nil, appRead, `rule 0 grants "read" on secrets "app/*"`},
		{"wider glob", []Policy{appAdmin}, pol(Rule{Secrets: "*", Actions: []Action{ActionAdmin}}), `rule 0 grants "admin" on secrets "*"`},
		{"sibling glob", []Policy{appAdmin}, pol(Rule{Secrets: "apps/*", Actions: []Action{ActionRead}}), `on secrets "apps/*"`},
		{"admin not implied", []Policy{appRead}, pol(Rule{Secrets: "app/*", Actions: []Action{ActionAdmin}}), `grants "admin"`},
		{"second action", []Policy{appRead}, pol(Rule{Secrets: "app/*", Actions: []Action{ActionRead, ActionDelete}}), `grants "delete"`},
		{"second rule", []Policy{appAdmin}, pol(Rule{Secrets: "app/*", Actions: []Action{ActionRead}}, Rule{System: "tokens", Actions: []Action{ActionAdmin}}), `rule 1 grants "admin" on system "tokens"`},
		{"system star", []Policy{appAdmin}, pol(Rule{System: "*", Actions: []Action{ActionAdmin}}), `on system "*"`},
		{"secret rule never covers a key", []Policy{appAdmin}, pol(Rule{Keys: "app/*", Actions: []Action{ActionEncrypt}}), `on keys "app/*"`},
		{"key rule never covers a secret", []Policy{pol(Rule{Keys: "*", Actions: []Action{ActionAdmin}})}, pol(Rule{Secrets: "x", Actions: []Action{ActionList}}), `on secrets "x"`},
		{"union of globs not used", []Policy{pol(Rule{Secrets: "a", Actions: []Action{ActionRead}}, Rule{Secrets: "a?*", Actions: []Action{ActionRead}})}, pol(Rule{Secrets: "a*", Actions: []Action{ActionRead}}), `on secrets "a*"`},
	}
	for _, tt := range tests {
		err := Covers(tt.held, tt.p)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: Covers = %v, want nil", tt.name, err)
			}
			continue
		}
		var ue *UncoveredError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Covers = %v, want an *UncoveredError containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestCoversSound checks Covers against Allowed: when Covers says yes,
// every resource a sample name of each rule reaches is allowed by held.
func TestCoversSound(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	globs := []string{"*", "app/*", "app/db", "app/?", "a*", "*/db", "app/prod/*", "b*", "?pp/*"}
	acts := actionsByKind[KindSecret]
	randPolicy := func() Policy {
		var p Policy
		for n := 1 + r.IntN(3); n > 0; n-- {
			p.Rules = append(p.Rules, Rule{Secrets: globs[r.IntN(len(globs))], Actions: []Action{acts[r.IntN(len(acts))]}})
		}
		return p
	}
	covered := 0
	for range 5000 {
		held, p := []Policy{randPolicy(), randPolicy()}, randPolicy()
		if Covers(held, p) != nil {
			continue
		}
		covered++
		for _, rule := range p.Rules {
			for range 20 {
				name := instantiate(r, rule.Secrets, "apdbrot/#")
				for _, a := range acts {
					if p.Allows(SecretResource(name), a) && !Allowed(held, SecretResource(name), a) {
						t.Fatalf("Covers(%+v, %+v) = nil, but %s on %q is allowed only by the new policy", held, p, a, name)
					}
				}
			}
		}
	}
	if covered < 100 {
		t.Fatalf("only %d random policies were covered: the sample proves little", covered)
	}
}

func TestCoversTooComplex(t *testing.T) {
	t.Parallel()
	var held, p Policy
	for range 200 {
		held.Rules = append(held.Rules, Rule{Secrets: strings.Repeat("a*", MaxGlobLength/2-1) + "zz", Actions: []Action{ActionRead}})
		p.Rules = append(p.Rules, Rule{Secrets: strings.Repeat("a", MaxGlobLength), Actions: []Action{ActionRead}})
	}
	err := Covers([]Policy{held}, p)
	if !errors.Is(err, ErrCoverTooComplex) {
		t.Fatalf("Covers(huge) = %v, want ErrCoverTooComplex", err)
	}
}
