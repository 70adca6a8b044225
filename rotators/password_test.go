package rotators

import (
	"strings"
	"testing"
)

func TestGeneratePassword(t *testing.T) {
	no := false
	sym := "!@#"
	for _, tc := range []struct {
		name string
		p    PasswordPolicy
		len  int
	}{
		{"default", PasswordPolicy{}, DefaultPasswordLength},
		{"long", PasswordPolicy{Length: 100}, 100},
		{"exclude", PasswordPolicy{Length: 20, ExcludeCharacters: "abcdefABCDEF012345-_"}, 20},
		{"no classes", PasswordPolicy{Length: 12, RequireEachClass: &no}, 12},
		{"symbols", PasswordPolicy{Length: 16, Symbols: &sym}, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 200 {
				v, err := GeneratePassword(tc.p)
				if err != nil {
					t.Fatal(err)
				}
				s := string(v.Reveal())
				if len(s) != tc.len {
					t.Fatalf("len = %d, want %d", len(s), tc.len)
				}
				if strings.ContainsAny(s, tc.p.ExcludeCharacters) && tc.p.ExcludeCharacters != "" {
					t.Fatalf("contains an excluded character")
				}
				if tc.p.requireEach() {
					symbols := URISafeSymbols
					if tc.p.Symbols != nil {
						symbols = *tc.p.Symbols
					}
					for _, class := range []string{Lower, Upper, Digits, symbols} {
						avail := strings.Map(func(r rune) rune {
							if strings.ContainsRune(tc.p.ExcludeCharacters, r) {
								return -1
							}
							return r
						}, class)
						if avail != "" && !strings.ContainsAny(s, avail) {
							t.Fatalf("no character of class %q", class)
						}
					}
				}
			}
		})
	}
}

// TestGeneratePasswordUniform: every character of the alphabet turns up at
// about the same rate (a gross modulo bias would show).
func TestGeneratePasswordUniform(t *testing.T) {
	no := false
	counts := map[byte]int{}
	const n = 2000
	for range n {
		v, err := GeneratePassword(PasswordPolicy{Length: 64, RequireEachClass: &no})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range v.Reveal() {
			counts[c]++
		}
	}
	alphabet := Lower + Upper + Digits + URISafeSymbols
	want := float64(n*64) / float64(len(alphabet))
	for i := range len(alphabet) {
		got := float64(counts[alphabet[i]])
		if got < want*0.85 || got > want*1.15 {
			t.Errorf("character %q: %v draws, want about %v", alphabet[i], got, want)
		}
	}
	if len(counts) != len(alphabet) {
		t.Errorf("%d distinct characters, want %d", len(counts), len(alphabet))
	}
}

func TestPasswordPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		p    PasswordPolicy
		want string
	}{
		{PasswordPolicy{Length: 8}, "password.length 8"},
		{PasswordPolicy{Length: 1000}, "password.length 1000"},
		{PasswordPolicy{ExcludeCharacters: Lower + Upper + Digits + URISafeSymbols}, "excludes every character"},
		{PasswordPolicy{ExcludeCharacters: Lower + Upper + "012345678"}, "leaves only"},
	} {
		if err := tc.p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.p, err, tc.want)
		}
	}
}
