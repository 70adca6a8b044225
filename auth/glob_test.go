package auth

import (
	"strings"
	"testing"
	"time"
)

var globTests = []struct {
	pattern, name string
	want          bool
}{
	{"*", "", true},
	{"*", "app/db", true},
	{"app/*", "app/db", true},
	{"app/*", "app/prod/db", true},
	{"app/*", "app/", true},
	{"app/*", "app", false},
	{"app/*", "apps/db", false},
	{"app/*/db", "app/prod/db", true},
	{"app/*/db", "app/prod/eu/db", true},
	{"app/*/db", "app/prod/dbx", false},
	{"*/db", "a/b/db", true},
	{"app/?", "app/a", true},
	{"app/?", "app/ab", false},
	{"app/?", "app/", false},
	{"a?c", "a/c", true},
	{"exact", "exact", true},
	{"exact", "exactly", false},
	{"exact", "exac", false},
	{"", "", true},
	{"", "a", false},
	{"**", "abc", true},
	{"a*b*c", "aXbYc", true},
	{"a*b*c", "abcabc", true},
	{"a*b*c", "acb", false},
	{"*a", "bbbba", true},
	{"*a", "bbbb", false},
	{"App/*", "app/db", false}, // case matters
	{"a.b", "axb", false},      // '.' is literal
	{"a+b", "a+b", true},
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range globTests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
		if got := matchReference(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchReference(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// TestMatchLinear feeds the classic exponential-backtracking case: many
// stars and a name that almost matches.
func TestMatchLinear(t *testing.T) {
	t.Parallel()
	pattern := strings.Repeat("a*", 250) + "b"
	name := strings.Repeat("a", 256)
	start := time.Now()
	if Match(pattern, name) {
		t.Fatal("Match(a*a*…b, aaa…) = true, want false")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Match took %v on a pathological pattern", d)
	}
}

// matchReference is the obvious dynamic-programming matcher, used to check
// Match.
func matchReference(pattern, name string) bool {
	// prev[j]: pattern[:i] matches name[:j].
	prev := make([]bool, len(name)+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		cur := make([]bool, len(name)+1)
		for j := 0; j <= len(name); j++ {
			switch pattern[i] {
			case '*':
				cur[j] = prev[j] || (j > 0 && cur[j-1])
			case '?':
				cur[j] = j > 0 && prev[j-1]
			default:
				cur[j] = j > 0 && prev[j-1] && name[j-1] == pattern[i]
			}
		}
		prev = cur
	}
	return prev[len(name)]
}

func FuzzGlob(f *testing.F) {
	for _, tt := range globTests {
		f.Add(tt.pattern, tt.name)
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > MaxGlobLength || len(name) > 1024 {
			return
		}
		got := Match(pattern, name)
		if want := matchReference(pattern, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", pattern, name, got, want)
		}
		if !Match(pattern, pattern) && !strings.ContainsRune(pattern, '?') && !strings.ContainsRune(pattern, '*') {
			t.Fatalf("Match(%q, itself) = false", pattern)
		}
	})
}
