package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	parts, err := parseTemplate("t", []byte("a=$secret{x/y}\nb=$secret{kv#user}$secret{z}\n$ plain {}"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range parts {
		if p.name != "" {
			got = append(got, p.name+"#"+p.field+"@"+string(rune('0'+p.line)))
		}
	}
	if want := []string{"x/y#@1", "kv#user@2", "z#@2"}; !slices.Equal(got, want) {
		t.Fatalf("references %v, want %v", got, want)
	}
	for _, tc := range []struct{ in, want string }{
		{"a\nb=$secret{x", "line 2"},
		{"$secret{x\n}", "closing"},
		{"$secret{}", "empty"},
		{"$secret{x#}", "field"},
	} {
		if _, err := parseTemplate("t", []byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseTemplate(%q) = %v, want an error mentioning %q", tc.in, err, tc.want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		`nginx -s reload`:            {"nginx", "-s", "reload"},
		`sh -c 'kill -HUP $(cat p)'`: {"sh", "-c", "kill -HUP $(cat p)"},
		`a "b c" d\ e ''`:            {"a", "b c", "d e", ""},
		`  x  `:                      {"x"},
		`"it's" 'say "hi"'`:          {"it's", `say "hi"`},
	} {
		got, err := splitWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := splitWords(`a 'b`); err == nil {
		t.Error("an unclosed quote was accepted")
	}
}

func TestParseEnvRefs(t *testing.T) {
	t.Parallel()
	refs, err := parseEnvRefs([]string{"A=x/y", "B_2=kv#user"})
	if err != nil || len(refs) != 2 || refs[1] != (envRef{"B_2", "kv", "user"}) {
		t.Fatalf("parseEnvRefs = %+v, %v", refs, err)
	}
	for _, bad := range [][]string{{"A"}, {"=x"}, {"1A=x"}, {"A-B=x"}, {"A=x", "A=y"}, {"A="}, {"A=x#"}} {
		if _, err := parseEnvRefs(bad); err == nil {
			t.Errorf("parseEnvRefs(%q) accepted", bad)
		}
	}
	env := childEnv([]string{"PATH=/bin", "ROTARY_TOKEN=t", "A=old", "ROTARY_ADDR=x"}, refs, []string{"v1", "v2"})
	if want := []string{"PATH=/bin", "ROTARY_ADDR=x", "A=v1", "B_2=v2"}; !slices.Equal(env, want) {
		t.Fatalf("childEnv = %q, want %q", env, want)
	}
}

func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "f")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(out, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(out)
	b, _ := os.ReadFile(out)
	if string(b) != "new" || st.Mode().Perm() != 0o600 {
		t.Fatalf("got %q %v", b, st.Mode().Perm())
	}
	// A folder that cannot be written: the old file stays.
	if err := writeAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing folder worked")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind %v", ents)
	}
}
