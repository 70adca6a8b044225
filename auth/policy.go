package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Action is something a token may do to a resource.
type Action string

// Actions. See the package documentation for which apply where.
const (
	ActionList     Action = "list"
	ActionDescribe Action = "describe"
	ActionRead     Action = "read"
	ActionWrite    Action = "write"
	ActionRotate   Action = "rotate"
	ActionDelete   Action = "delete"
	ActionAdmin    Action = "admin"
	ActionEncrypt  Action = "encrypt"
	ActionDecrypt  Action = "decrypt"
)

var allActions = []Action{
	ActionList, ActionDescribe, ActionRead, ActionWrite, ActionRotate,
	ActionDelete, ActionAdmin, ActionEncrypt, ActionDecrypt,
}

// Kind is the kind of a resource.
type Kind string

// Resource kinds.
const (
	KindSecret Kind = "secret"
	KindKey    Kind = "key"
	KindSystem Kind = "system"
)

// System resources: the daemon's own configuration, guarded by admin on a
// rule {"system": GLOB}.
const (
	SystemPolicies = "policies"
	SystemTokens   = "tokens"
	SystemAudit    = "audit"
	SystemPlugins  = "plugins"
	SystemHooks    = "hooks"
	SystemKeys     = "keys"   // creating and listing keys, rewrapping a region
	SystemBackup   = "backup" // taking a snapshot of the whole store
)

var systemNames = []string{SystemPolicies, SystemTokens, SystemAudit, SystemPlugins, SystemHooks, SystemKeys, SystemBackup}

// SystemNames returns the names of the system resources.
func SystemNames() []string { return slices.Clone(systemNames) }

// actionsByKind lists the actions valid on each kind, admin included.
var actionsByKind = map[Kind][]Action{
	KindSecret: {ActionList, ActionDescribe, ActionRead, ActionWrite, ActionRotate, ActionDelete, ActionAdmin},
	KindKey:    {ActionList, ActionDescribe, ActionEncrypt, ActionDecrypt, ActionAdmin},
	KindSystem: {ActionAdmin},
}

// Resource is what an action is done to: a secret by name, a KMS key by id
// or alias, or a system resource (SystemPolicies, …).
type Resource struct {
	Kind Kind
	Name string
}

// SecretResource is the secret with the given name.
func SecretResource(name string) Resource { return Resource{Kind: KindSecret, Name: name} }

// KeyResource is the KMS key with the given id or alias.
func KeyResource(name string) Resource { return Resource{Kind: KindKey, Name: name} }

// SystemResource is one of the System* resources.
func SystemResource(name string) Resource { return Resource{Kind: KindSystem, Name: name} }

// Policy is a named set of rules (the name is kept by the store).
type Policy struct {
	Rules []Rule `json:"rules"`
}

// Rule allows Actions on the resources matched by exactly one of Secrets,
// Keys or System, each a glob (see Match).
type Rule struct {
	Secrets string   `json:"secrets,omitempty"`
	Keys    string   `json:"keys,omitempty"`
	System  string   `json:"system,omitempty"`
	Actions []Action `json:"actions"`
}

// Limits.
const (
	MaxPolicySize       = 64 << 10
	MaxPolicyNameLength = 128
	// RootPolicyName is the name under which the root token's built-in
	// policy is shown. It cannot be changed or deleted.
	RootPolicyName = "root"
)

// RootPolicy is the root token's policy: admin on every secret, every key
// and every system resource.
func RootPolicy() Policy {
	return Policy{Rules: []Rule{
		{Secrets: "*", Actions: []Action{ActionAdmin}},
		{Keys: "*", Actions: []Action{ActionAdmin}},
		{System: "*", Actions: []Action{ActionAdmin}},
	}}
}

// selector returns the rule's kind and glob, and false unless exactly one
// selector is set.
func (r Rule) selector() (Kind, string, bool) {
	var kind Kind
	var glob string
	n := 0
	if r.Secrets != "" {
		kind, glob, n = KindSecret, r.Secrets, n+1
	}
	if r.Keys != "" {
		kind, glob, n = KindKey, r.Keys, n+1
	}
	if r.System != "" {
		kind, glob, n = KindSystem, r.System, n+1
	}
	return kind, glob, n == 1
}

// Allowed reports whether any of the policies allows action on res.
// Anything not allowed is denied.
func Allowed(policies []Policy, res Resource, action Action) bool {
	for _, p := range policies {
		if p.Allows(res, action) {
			return true
		}
	}
	return false
}

// AllowedAny reports whether any of the policies allows action on at least
// one resource of kind: the check for listing, whose results are then
// filtered one by one with Allowed.
func AllowedAny(policies []Policy, kind Kind, action Action) bool {
	if !slices.Contains(actionsByKind[kind], action) {
		return false
	}
	for _, p := range policies {
		for _, r := range p.Rules {
			k, _, ok := r.selector()
			if ok && k == kind && (slices.Contains(r.Actions, action) || slices.Contains(r.Actions, ActionAdmin)) {
				return true
			}
		}
	}
	return false
}

// Allows reports whether a rule of p allows action on res: a rule of res's
// kind whose glob matches res.Name and which lists action or admin. An
// action that does not apply to res's kind is never allowed, and neither is
// anything granted by a malformed rule.
func (p Policy) Allows(res Resource, action Action) bool {
	if !slices.Contains(actionsByKind[res.Kind], action) {
		return false
	}
	for _, r := range p.Rules {
		kind, glob, ok := r.selector()
		if !ok || kind != res.Kind || !Match(glob, res.Name) {
			continue
		}
		if slices.Contains(r.Actions, action) || slices.Contains(r.Actions, ActionAdmin) {
			return true
		}
	}
	return false
}

// Validate checks a policy built in code the way ParsePolicy checks a
// document: at least one rule; each with exactly one valid glob, at least
// one action, every action known and valid on the rule's kind.
func (p Policy) Validate() error {
	if len(p.Rules) == 0 {
		return errors.New(`policy has no rules (want {"rules": [...]})`)
	}
	for i, r := range p.Rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
	}
	return nil
}

func (r Rule) validate() error {
	var set []string
	for _, s := range []struct{ field, glob string }{{"secrets", r.Secrets}, {"keys", r.Keys}, {"system", r.System}} {
		if s.glob != "" {
			set = append(set, fmt.Sprintf("%q", s.field))
		}
	}
	switch len(set) {
	case 0:
		return errors.New(`needs one of "secrets", "keys" or "system"`)
	case 1:
	default:
		return fmt.Errorf("has both %s; a rule selects one kind of resource", strings.Join(set, " and "))
	}
	kind, glob, _ := r.selector()
	field := fieldOf(kind)
	if err := validGlob(field, glob); err != nil {
		return err
	}
	if kind == KindSystem && !slices.ContainsFunc(systemNames, func(n string) bool { return Match(glob, n) }) {
		return fmt.Errorf("field %q: %q matches no system resource (%s)", field, glob, strings.Join(systemNames, ", "))
	}
	if len(r.Actions) == 0 {
		return errors.New(`field "actions": empty; list at least one action`)
	}
	valid := actionsByKind[kind]
	for _, a := range r.Actions {
		if !slices.Contains(allActions, a) {
			return fmt.Errorf("unknown action %q (known: %s)", string(a), joinActions(allActions))
		}
		if !slices.Contains(valid, a) {
			return fmt.Errorf("action %q is not valid on a %q rule (valid: %s)", string(a), field, joinActions(valid))
		}
	}
	return nil
}

func fieldOf(k Kind) string {
	switch k {
	case KindSecret:
		return "secrets"
	case KindKey:
		return "keys"
	default:
		return "system"
	}
}

func joinActions(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// ValidatePolicyName checks a policy name: 1 to 128 letters, digits and
// "-_.", and not "." or "..", which would not survive a URL path.
func ValidatePolicyName(name string) error {
	if name == "" {
		return errors.New("policy name is empty")
	}
	if len(name) > MaxPolicyNameLength {
		return fmt.Errorf("invalid policy name: %d characters, the limit is %d", len(name), MaxPolicyNameLength)
	}
	pos := 0
	for _, c := range name {
		pos++
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("invalid policy name %q: character %q at position %d is not allowed (use letters, digits and -_.)", name, c, pos)
		}
	}
	if name == "." || name == ".." {
		return fmt.Errorf("invalid policy name %q: a name must not be only dots", name)
	}
	return nil
}

// ParsePolicy parses and validates a policy document:
//
//	{"rules": [{"secrets": "app/*", "actions": ["read"]}, ...]}
//
// The parser is strict: field names are exact (case matters), unknown or
// repeated fields, wrong types and trailing data are refused, and then the
// policy must pass Validate. Errors name the rule (numbered from 0) and the
// field.
func ParsePolicy(data []byte) (Policy, error) {
	if len(data) > MaxPolicySize {
		return Policy{}, fmt.Errorf("policy is %d bytes, the limit is %d", len(data), MaxPolicySize)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var p Policy
	tok, err := token(d)
	if err != nil {
		return Policy{}, err
	}
	if tok != json.Delim('{') {
		return Policy{}, fmt.Errorf("policy must be a JSON object, got %s", describe(tok))
	}
	seen := false
	for d.More() {
		key, err := objectKey(d)
		if err != nil {
			return Policy{}, err
		}
		if key != "rules" {
			return Policy{}, fmt.Errorf(`unknown field %q (a policy has only "rules")`, key)
		}
		if seen {
			return Policy{}, errors.New(`field "rules" given twice`)
		}
		seen = true
		if p.Rules, err = parseRules(d); err != nil {
			return Policy{}, err
		}
	}
	if _, err := token(d); err != nil { // the closing '}'
		return Policy{}, err
	}
	if _, err := d.Token(); err != io.EOF {
		return Policy{}, fmt.Errorf("trailing data after the policy at byte %d", d.InputOffset())
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func parseRules(d *json.Decoder) ([]Rule, error) {
	tok, err := token(d)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf(`field "rules": must be a list of rules, got %s`, describe(tok))
	}
	rules := []Rule{}
	for i := 0; d.More(); i++ {
		r, err := parseRule(d)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
		rules = append(rules, r)
	}
	if _, err := token(d); err != nil { // the closing ']'
		return nil, err
	}
	return rules, nil
}

func parseRule(d *json.Decoder) (Rule, error) {
	var r Rule
	tok, err := token(d)
	if err != nil {
		return r, err
	}
	if tok != json.Delim('{') {
		return r, fmt.Errorf("must be an object, got %s", describe(tok))
	}
	seen := map[string]bool{}
	for d.More() {
		key, err := objectKey(d)
		if err != nil {
			return r, err
		}
		if seen[key] {
			return r, fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "secrets", "keys", "system":
			tok, err := token(d)
			if err != nil {
				return r, err
			}
			s, ok := tok.(string)
			if !ok {
				return r, fmt.Errorf("field %q: must be a string, got %s", key, describe(tok))
			}
			if err := validGlob(key, s); err != nil {
				return r, err
			}
			switch key {
			case "secrets":
				r.Secrets = s
			case "keys":
				r.Keys = s
			default:
				r.System = s
			}
		case "actions":
			if r.Actions, err = parseActions(d); err != nil {
				return r, err
			}
		default:
			return r, fmt.Errorf(`unknown field %q (want "secrets", "keys" or "system", and "actions")`, key)
		}
	}
	if _, err := token(d); err != nil { // the closing '}'
		return r, err
	}
	return r, nil
}

func parseActions(d *json.Decoder) ([]Action, error) {
	tok, err := token(d)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf(`field "actions": must be a list of strings, got %s`, describe(tok))
	}
	as := []Action{}
	for i := 0; d.More(); i++ {
		tok, err := token(d)
		if err != nil {
			return nil, err
		}
		s, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf(`field "actions": element %d must be a string, got %s`, i, describe(tok))
		}
		as = append(as, Action(s))
	}
	if _, err := token(d); err != nil { // the closing ']'
		return nil, err
	}
	return as, nil
}

// objectKey reads the next key inside an object.
func objectKey(d *json.Decoder) (string, error) {
	tok, err := token(d)
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok { // the decoder guarantees keys are strings
		return "", fmt.Errorf("invalid JSON at byte %d: expected a field name", d.InputOffset())
	}
	return key, nil
}

// token reads one JSON token and turns the decoder's errors into messages
// that say where the document is broken.
func token(d *json.Decoder) (json.Token, error) {
	tok, err := d.Token()
	if err == nil {
		return tok, nil
	}
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return nil, fmt.Errorf("invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, errors.New("invalid JSON: unexpected end of input")
	default:
		return nil, fmt.Errorf("invalid JSON at byte %d: %s", d.InputOffset(), err.Error())
	}
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		if v == '[' {
			return "a list"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}
