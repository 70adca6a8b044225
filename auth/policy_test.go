package auth

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestAllowedMatrix(t *testing.T) {
	t.Parallel()
	resources := map[Kind]Resource{
		KindSecret: SecretResource("app/db"),
		KindKey:    KeyResource("alias/app"),
		KindSystem: SystemResource(SystemPolicies),
	}
	rule := func(kind Kind, a Action) Rule {
		switch kind {
		case KindSecret:
			return Rule{Secrets: "app/*", Actions: []Action{a}}
		case KindKey:
			return Rule{Keys: "alias/*", Actions: []Action{a}}
		default:
			return Rule{System: "policies", Actions: []Action{a}}
		}
	}
	for kind, granted := range actionsByKind {
		for _, g := range granted {
			pol := []Policy{{Rules: []Rule{rule(kind, g)}}}
			for rkind, res := range resources {
				for _, asked := range allActions {
					want := rkind == kind && (asked == g || g == ActionAdmin) && slices.Contains(actionsByKind[rkind], asked)
					if got := Allowed(pol, res, asked); got != want {
						t.Errorf("%s rule granting %s: Allowed(%v, %s) = %v, want %v", kind, g, res, asked, got, want)
					}
				}
			}
		}
	}
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	reader := Policy{Rules: []Rule{
		{Secrets: "app/*", Actions: []Action{ActionList, ActionDescribe, ActionRead}},
		{Secrets: "shared/config", Actions: []Action{ActionDescribe}},
		{Keys: "*", Actions: []Action{ActionEncrypt}},
	}}
	rotator := Policy{Rules: []Rule{{Secrets: "app/db/*", Actions: []Action{ActionRotate}}}}
	tests := []struct {
		name     string
		policies []Policy
		res      Resource
		action   Action
		want     bool
	}{
		{"no policies deny", nil, SecretResource("app/db"), ActionRead, false},
		{"empty policy denies", []Policy{{}}, SecretResource("app/db"), ActionRead, false},
		{"granted read", []Policy{reader}, SecretResource("app/db"), ActionRead, true},
		{"glob crosses slash", []Policy{reader}, SecretResource("app/db/primary"), ActionRead, true},
		{"outside glob", []Policy{reader}, SecretResource("other/db"), ActionRead, false},
		{"write not granted", []Policy{reader}, SecretResource("app/db"), ActionWrite, false},
		{"describe does not imply read", []Policy{reader}, SecretResource("shared/config"), ActionRead, false},
		{"describe does not imply list", []Policy{reader}, SecretResource("shared/config"), ActionList, false},
		{"key encrypt", []Policy{reader}, KeyResource("k-1"), ActionEncrypt, true},
		{"key decrypt not granted", []Policy{reader}, KeyResource("k-1"), ActionDecrypt, false},
		{"key rule gives nothing on secrets", []Policy{{Rules: []Rule{{Keys: "*", Actions: []Action{ActionAdmin}}}}}, SecretResource("app/db"), ActionRead, false},
		{"secret rule gives nothing on keys", []Policy{{Rules: []Rule{{Secrets: "*", Actions: []Action{ActionAdmin}}}}}, KeyResource("app/db"), ActionEncrypt, false},
		{"secret admin gives nothing on system", []Policy{{Rules: []Rule{{Secrets: "*", Actions: []Action{ActionAdmin}}}}}, SystemResource(SystemPolicies), ActionAdmin, false},
		{"policies union", []Policy{reader, rotator}, SecretResource("app/db/x"), ActionRotate, true},
		{"union still denies", []Policy{reader, rotator}, SecretResource("app/db/x"), ActionDelete, false},
		{"system glob", []Policy{{Rules: []Rule{{System: "audit", Actions: []Action{ActionAdmin}}}}}, SystemResource(SystemAudit), ActionAdmin, true},
		{"system other", []Policy{{Rules: []Rule{{System: "audit", Actions: []Action{ActionAdmin}}}}}, SystemResource(SystemTokens), ActionAdmin, false},
		{"encrypt never on a secret", []Policy{RootPolicy()}, SecretResource("app/db"), ActionEncrypt, false},
		{"read never on a key", []Policy{RootPolicy()}, KeyResource("k"), ActionRead, false},
		{"unknown action", []Policy{RootPolicy()}, SecretResource("app/db"), Action("reed"), false},
		{"unknown kind", []Policy{RootPolicy()}, Resource{Kind: "plugin", Name: "x"}, ActionAdmin, false},
		{"malformed rule ignored", []Policy{{Rules: []Rule{{Secrets: "*", Keys: "*", Actions: []Action{ActionAdmin}}}}}, SecretResource("a"), ActionRead, false},
		{"action invalid on its rule ignored", []Policy{{Rules: []Rule{{Keys: "*", Actions: []Action{ActionRead}}}}}, KeyResource("k"), ActionRead, false},
	}
	for _, tt := range tests {
		if got := Allowed(tt.policies, tt.res, tt.action); got != tt.want {
			t.Errorf("%s: Allowed(%v, %s) = %v, want %v", tt.name, tt.res, tt.action, got, tt.want)
		}
	}
}

func TestRootPolicy(t *testing.T) {
	t.Parallel()
	root := []Policy{RootPolicy()}
	if err := RootPolicy().Validate(); err != nil {
		t.Fatalf("RootPolicy().Validate() = %v", err)
	}
	for kind, actions := range actionsByKind {
		names := []string{"app/db", "x", "alias/default"}
		if kind == KindSystem {
			names = systemNames
		}
		for _, n := range names {
			for _, a := range actions {
				if !Allowed(root, Resource{Kind: kind, Name: n}, a) {
					t.Errorf("root: Allowed(%s %q, %s) = false, want true", kind, n, a)
				}
			}
		}
	}
}

var policyVectors = []struct {
	name    string
	doc     string
	wantErr string // "" when valid
}{
	{"contract example", `{"rules":[{"secrets":"app/*","actions":["list","describe","read"]},{"keys":"*","actions":["encrypt","decrypt"]}]}`, ""},
	{"system rule", `{"rules":[{"system":"*","actions":["admin"]}]}`, ""},
	{"admin on keys", `{"rules":[{"keys":"alias/*","actions":["admin"]}]}`, ""},
	{"whitespace around", " \n{\"rules\":[{\"secrets\":\"a\",\"actions\":[\"read\"]}]}\n ", ""},
	{"unknown action", `{"rules":[{"secrets":"a","actions":["read"]},{"secrets":"b","actions":["list"]},{"secrets":"c","actions":["reed"]}]}`, `rule 2: unknown action "reed"`},
	{"unknown top field", `{"rules":[{"secrets":"a","actions":["read"]}],"version":1}`, `unknown field "version"`},
	{"field case matters", `{"Rules":[{"secrets":"a","actions":["read"]}]}`, `unknown field "Rules"`},
	{"unknown rule field", `{"rules":[{"secrets":"a","actions":["read"],"effect":"allow"}]}`, `rule 0: unknown field "effect"`},
	{"both secrets and keys", `{"rules":[{"secrets":"a","keys":"b","actions":["read"]}]}`, `rule 0: has both "secrets" and "keys"`},
	{"neither", `{"rules":[{"actions":["read"]}]}`, `rule 0: needs one of "secrets", "keys" or "system"`},
	{"empty actions", `{"rules":[{"secrets":"a","actions":[]}]}`, `rule 0: field "actions": empty`},
	{"missing actions", `{"rules":[{"secrets":"a"}]}`, `rule 0: field "actions": empty`},
	{"trailing garbage", `{"rules":[{"secrets":"a","actions":["read"]}]} x`, `trailing data after the policy`},
	{"second document", `{"rules":[{"secrets":"a","actions":["read"]}]}{}`, `trailing data after the policy`},
	{"actions is a string", `{"rules":[{"secrets":"a","actions":"read"}]}`, `rule 0: field "actions": must be a list of strings, got a string`},
	{"action is a number", `{"rules":[{"secrets":"a","actions":["read",7]}]}`, `rule 0: field "actions": element 1 must be a string, got a number`},
	{"secrets is a list", `{"rules":[{"secrets":["a"],"actions":["read"]}]}`, `rule 0: field "secrets": must be a string, got a list`},
	{"rules is an object", `{"rules":{"secrets":"a"}}`, `field "rules": must be a list of rules, got an object`},
	{"rule is a string", `{"rules":["a"]}`, `rule 0: must be an object, got a string`},
	{"not an object", `[1]`, `policy must be a JSON object, got a list`},
	{"null", `null`, `policy must be a JSON object, got null`},
	{"empty input", ``, `invalid JSON: unexpected end of input`},
	{"truncated", `{"rules":[{"secrets":"a"`, `invalid JSON: unexpected end of input`},
	{"syntax error", `{"rules":[{"secrets":"a",,}]}`, `invalid JSON at byte`},
	{"no rules", `{"rules":[]}`, `policy has no rules`},
	{"empty object", `{}`, `policy has no rules`},
	{"duplicate field", `{"rules":[{"secrets":"a","secrets":"b","actions":["read"]}]}`, `rule 0: field "secrets" given twice`},
	{"duplicate rules", `{"rules":[{"secrets":"a","actions":["read"]}],"rules":[]}`, `field "rules" given twice`},
	{"encrypt on secrets", `{"rules":[{"secrets":"a","actions":["encrypt"]}]}`, `rule 0: action "encrypt" is not valid on a "secrets" rule`},
	{"read on keys", `{"rules":[{"keys":"a","actions":["read"]}]}`, `rule 0: action "read" is not valid on a "keys" rule`},
	{"read on system", `{"rules":[{"system":"audit","actions":["read"]}]}`, `rule 0: action "read" is not valid on a "system" rule`},
	{"system typo", `{"rules":[{"system":"polcies","actions":["admin"]}]}`, `rule 0: field "system": "polcies" matches no system resource`},
	{"empty glob", `{"rules":[{"secrets":"","actions":["read"]}]}`, `rule 0: field "secrets": empty glob`},
	{"bad glob char", `{"rules":[{"secrets":"app/ *","actions":["read"]}]}`, `rule 0: field "secrets": character ' ' at position 5 can never match a secret name`},
	{"action case matters", `{"rules":[{"secrets":"a","actions":["Read"]}]}`, `rule 0: unknown action "Read"`},
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	for _, tt := range policyVectors {
		p, err := ParsePolicy([]byte(tt.doc))
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: ParsePolicy(%s) err = %v, want nil", tt.name, tt.doc, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: ParsePolicy(%s) = %+v, want error containing %q", tt.name, tt.doc, p, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: ParsePolicy(%s) err = %q, want it to contain %q", tt.name, tt.doc, err, tt.wantErr)
		}
	}
}

func TestParsePolicyResult(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]byte(policyVectors[0].doc))
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{Rules: []Rule{
		{Secrets: "app/*", Actions: []Action{ActionList, ActionDescribe, ActionRead}},
		{Keys: "*", Actions: []Action{ActionEncrypt, ActionDecrypt}},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("ParsePolicy = %+v, want %+v", p, want)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != policyVectors[0].doc {
		t.Fatalf("json.Marshal(policy) = %s, want %s", out, policyVectors[0].doc)
	}
}

func TestParsePolicyTooLarge(t *testing.T) {
	t.Parallel()
	doc := `{"rules":[{"secrets":"a","actions":["read"` + strings.Repeat(`,"read"`, MaxPolicySize/7) + `]}]}`
	if _, err := ParsePolicy([]byte(doc)); err == nil || !strings.Contains(err.Error(), "the limit is 65536") {
		t.Fatalf("ParsePolicy(%d bytes) err = %v, want size limit", len(doc), err)
	}
}

func TestValidatePolicyName(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, wantErr string }{
		{"readers", ""},
		{"app-1.read_only", ""},
		{strings.Repeat("a", 128), ""},
		{"", "policy name is empty"},
		{strings.Repeat("a", 129), "129 characters, the limit is 128"},
		{"a b", `invalid policy name "a b": character ' ' at position 2 is not allowed`},
		{"a/b", `character '/' at position 2`},
		{"é", `character 'é' at position 1`},
		{"..", "only dots"},
	}
	for _, tt := range tests {
		err := ValidatePolicyName(tt.name)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidatePolicyName(%q) = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, v := range policyVectors {
		f.Add([]byte(v.doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := ParsePolicy(doc)
		if err != nil {
			if p.Rules != nil {
				t.Fatalf("ParsePolicy returned rules with error %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePolicy accepted a policy that Validate refuses: %v", err)
		}
		// A parsed policy survives a round trip unchanged.
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := ParsePolicy(out)
		if err != nil {
			t.Fatalf("ParsePolicy(Marshal(p)) = %v for %s", err, out)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the policy: %+v != %+v", p, p2)
		}
		for _, r := range p.Rules {
			_, glob, _ := r.selector()
			_ = Allowed([]Policy{p}, SecretResource(glob), ActionRead)
		}
	})
}
