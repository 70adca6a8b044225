package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/events"
)

// The checks of openapi.json against the code: the router's routes
// (checkRoutes) and the Go types the handlers encode and decode
// (checkSchemas). openapi_live_test.go validates real answers.

// loadOpenAPI parses data and validates it as an OpenAPI 3 document.
func loadOpenAPI(t testing.TB, data []byte) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// routePatterns are the patterns New registers (registerRoutes), on a
// Server with only what registering needs. TestOpenAPILiveAnswers checks
// the router of a Server built by New too.
func routePatterns(t testing.TB) []string {
	t.Helper()
	s := &Server{mux: newRouteMux(), metrics: newMetrics(nil)}
	s.registerRoutes()
	return s.mux.Patterns()
}

// fallbackPattern answers every request no route matches (404, no record).
const fallbackPattern = "/"

// checkRoutes compares the router's patterns ("METHOD /path") with the
// document's paths and methods, both ways.
func checkRoutes(doc *openapi3.T, patterns []string) []string {
	var problems []string
	routed := map[string]bool{}
	for _, p := range patterns {
		if p == fallbackPattern {
			continue
		}
		method, path, ok := strings.Cut(p, " ")
		if !ok || !strings.HasPrefix(path, "/") {
			problems = append(problems, fmt.Sprintf("route %q has no method: every route names one", p))
			continue
		}
		path = strings.ReplaceAll(path, "...}", "}")
		routed[method+" "+path] = true
		item := doc.Paths.Value(path)
		if item == nil {
			problems = append(problems, fmt.Sprintf("route %s: path %s is not in openapi.json", p, path))
			continue
		}
		if item.GetOperation(method) == nil {
			problems = append(problems, fmt.Sprintf("route %s: openapi.json has no %s operation on %s", p, strings.ToLower(method), path))
		}
	}
	for _, path := range doc.Paths.Keys() {
		for method := range doc.Paths.Value(path).Operations() {
			if !routed[method+" "+path] {
				problems = append(problems, fmt.Sprintf("openapi.json documents %s %s, which the router does not serve", method, path))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// binding ties a component schema to the Go type the handlers encode
// (response) or decode (request) for it.
type binding struct {
	typ     reflect.Type
	request bool
}

func resp(v any) binding { return binding{typ: reflect.TypeOf(v)} }
func req(v any) binding  { return binding{typ: reflect.TypeOf(v), request: true} }

// schemaBindings lists every component schema of openapi.json with its Go
// type. A schema without a Go type (the few map answers) is in mapSchemas.
var schemaBindings = map[string]binding{
	"Error":                   resp(client.ErrorBody{}),
	"CreateSecretRequest":     req(client.CreateSecretRequest{}),
	"Value":                   req(client.Value{}),
	"PutSecretRequest":        req(client.PutSecretRequest{}),
	"SecretValue":             resp(client.SecretValue{}),
	"Version":                 resp(client.Version{}),
	"RotationInfo":            resp(client.RotationInfo{}),
	"Secret":                  resp(client.Secret{}),
	"SecretList":              resp(client.SecretList{}),
	"Key":                     resp(client.Key{}),
	"KeyList":                 resp(client.KeyList{}),
	"CreateKeyRequest":        req(client.CreateKeyRequest{}),
	"ScheduleDeletionRequest": req(client.ScheduleDeletionRequest{}),
	"RewrapRequest":           req(client.RewrapRequest{}),
	"RewrapProgress":          resp(client.RewrapProgress{}),
	"DataKeyRequest":          req(client.DataKeyRequest{}),
	"DataKey":                 resp(client.DataKey{}),
	"EncryptRequest":          req(client.EncryptRequest{}),
	"EncryptResponse":         resp(client.EncryptResponse{}),
	"DecryptRequest":          req(client.DecryptRequest{}),
	"DecryptResponse":         resp(client.DecryptResponse{}),
	"Policy":                  resp(client.Policy{}),
	"PolicyDocument":          resp(client.PolicyDocument{}),
	"PolicyRule":              resp(client.PolicyRule{}),
	"PolicyList":              resp(client.PolicyList{}),
	"CreateTokenRequest":      req(client.CreateTokenRequest{}),
	"Token":                   resp(client.Token{}),
	"TokenList":               resp(client.TokenList{}),
	"AuditRecord":             resp(client.AuditRecord{}),
	"AuditList":               resp(client.AuditList{}),
	"AuditVerify":             resp(client.AuditVerify{}),
	"AuditCheckpoint":         resp(client.AuditCheckpoint{}),
	"AuditVerifyRequest":      req(client.AuditVerifyRequest{}),
	"RotationSettings":        req(rotationSettingsRequest{}),
	"RotationShow":            resp(client.RotationShow{}),
	"RotationChange":          resp(client.RotationChange{}),
	"RotateResult":            resp(client.RotateResult{}),
	"Run":                     resp(client.Run{}),
	"RunEffect":               resp(client.RunEffect{}),
	"RunStep":                 resp(client.RunStep{}),
	"RunList":                 resp(client.RunList{}),
	"StatusRow":               resp(client.StatusRow{}),
	"Status":                  resp(client.Status{}),
	"Hook":                    resp(client.Hook{}),
	"AddHookRequest":          req(client.AddHookRequest{}),
	"AddHookResponse":         resp(client.AddHookResponse{}),
	"HookList":                resp(client.HookList{}),
	"RegisterPluginRequest":   req(client.RegisterPluginRequest{}),
	"Plugin":                  resp(client.Plugin{}),
	"PluginList":              resp(client.PluginList{}),
	"Event":                   resp(events.Event{}),
}

// mapSchemas are answers the handlers write as map[string]string, with
// their keys.
var mapSchemas = map[string][]string{
	"Deleted": {"deleted"}, // DELETE /v1/policies/{name}
	"Removed": {"removed"}, // DELETE /v1/hooks/{name}, /v1/plugins/{name}
	"Health":  {"status"},  // /healthz, /readyz
}

// goField is one JSON field of a Go struct.
type goField struct {
	typ       reflect.Type
	omitempty bool
}

// jsonFields returns the JSON fields of struct type t as encoding/json
// sees them: embedded structs are flattened, "-" and unexported fields
// skipped.
func jsonFields(t reflect.Type) map[string]goField {
	out := map[string]goField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = goField{typ: f.Type, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty")}
	}
	return out
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

const schemaRefPrefix = "#/components/schemas/"

// checkSchemas compares every bound component schema with its Go type:
// the same property names, the required list of a response equal to the
// fields always encoded, and each property's type (nested structs by a
// $ref to the schema bound to their type).
func checkSchemas(doc *openapi3.T) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	nameOf := map[reflect.Type]string{}
	for name, b := range schemaBindings {
		nameOf[b.typ] = name
	}
	for name := range doc.Components.Schemas {
		if _, ok := schemaBindings[name]; !ok && mapSchemas[name] == nil {
			add("schema %s: no Go type bound to it in schemaBindings", name)
		}
	}
	for name, keys := range mapSchemas {
		ref := doc.Components.Schemas[name]
		if ref == nil || ref.Value == nil {
			add("schema %s: missing", name)
			continue
		}
		got := slices.Sorted(maps.Keys(ref.Value.Properties))
		if !slices.Equal(got, slices.Sorted(slices.Values(keys))) {
			add("schema %s: properties %v, want %v", name, got, keys)
		}
	}
	for name, b := range schemaBindings {
		ref := doc.Components.Schemas[name]
		if ref == nil || ref.Value == nil {
			add("schema %s (%v): missing from openapi.json", name, b.typ)
			continue
		}
		s := ref.Value
		if !s.Type.Is("object") {
			add("schema %s: type %v, want object", name, s.Type)
		}
		if s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
			add("schema %s: additionalProperties must be false (the API sends and accepts no other field)", name)
		}
		fields := jsonFields(b.typ)
		for field, f := range fields {
			prop := s.Properties[field]
			if prop == nil {
				add("schema %s: field %q of %v is not documented", name, field, b.typ)
				continue
			}
			for _, p := range checkType(prop, f.typ, nameOf) {
				add("schema %s: property %q: %s", name, field, p)
			}
			if !b.request && f.typ.Kind() == reflect.Pointer && !f.omitempty && !nullable(prop) {
				add("schema %s: property %q can be null (%v without omitempty): mark it nullable", name, field, f.typ)
			}
		}
		for field := range s.Properties {
			if _, ok := fields[field]; !ok {
				add("schema %s: property %q is not a field of %v", name, field, b.typ)
			}
		}
		for _, field := range s.Required {
			if _, ok := fields[field]; !ok {
				add("schema %s: required %q is not a field of %v", name, field, b.typ)
			}
		}
		if !b.request {
			var always []string
			for field, f := range fields {
				if !f.omitempty {
					always = append(always, field)
				}
			}
			slices.Sort(always)
			if got := slices.Sorted(slices.Values(s.Required)); !slices.Equal(got, always) {
				add("schema %s: required %v, want the fields %v always encodes %v", name, got, b.typ, always)
			}
		}
	}
	sort.Strings(problems)
	return problems
}

func nullable(ref *openapi3.SchemaRef) bool { return ref.Value != nil && ref.Value.Nullable }

// checkType compares one property's schema with the Go type of its field.
func checkType(ref *openapi3.SchemaRef, t reflect.Type, nameOf map[reflect.Type]string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := ref.Value
	if s == nil {
		return []string{"unresolved schema"}
	}
	want := func(typ string) []string {
		if !s.Type.Is(typ) {
			return []string{fmt.Sprintf("type %v, want %s for Go %v", s.Type, typ, t)}
		}
		return nil
	}
	switch {
	case t == rawType || t.Kind() == reflect.Interface:
		return nil // any JSON
	case t == timeType:
		if p := want("string"); p != nil {
			return p
		}
		if s.Format != "date-time" {
			return []string{fmt.Sprintf("format %q, want date-time for Go time.Time", s.Format)}
		}
		return nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return want("string")
	case t.Kind() == reflect.String:
		return want("string")
	case t.Kind() == reflect.Bool:
		return want("boolean")
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return want("integer")
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return want("number")
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		if p := want("array"); p != nil {
			return p
		}
		if s.Items == nil {
			return []string{"array without items"}
		}
		return checkType(s.Items, t.Elem(), nameOf)
	case t.Kind() == reflect.Map:
		if p := want("object"); p != nil {
			return p
		}
		if ap := s.AdditionalProperties.Schema; ap != nil {
			return checkType(ap, t.Elem(), nameOf)
		}
		return nil
	case t.Kind() == reflect.Struct:
		name, ok := nameOf[t]
		if !ok {
			return []string{fmt.Sprintf("Go %v has no schema in schemaBindings", t)}
		}
		r := ref.Ref
		if r == "" && len(s.AllOf) == 1 { // {"allOf":[{"$ref":…}],"nullable":true}
			r = s.AllOf[0].Ref
		}
		if r != schemaRefPrefix+name {
			return []string{fmt.Sprintf("refers to %q, want %s%s (Go %v)", r, schemaRefPrefix, name, t)}
		}
		return nil
	}
	return []string{fmt.Sprintf("Go type %v is not handled by the check", t)}
}

// TestOpenAPIDocumentValid: the embedded document is valid OpenAPI 3
// (kin-openapi's validator), and what OpenAPI() returns is it.
func TestOpenAPIDocumentValid(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t, OpenAPI())
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	if len(doc.Security) != 1 || doc.Components.SecuritySchemes["bearer"] == nil ||
		doc.Components.SecuritySchemes["bearer"].Value.Scheme != "bearer" {
		t.Errorf("security = %v, want the bearer scheme for every operation", doc.Security)
	}
	// Every operation answers errors as {"error": "..."}: its 4xx and 5xx
	// answers refer to the Error schema.
	for _, path := range doc.Paths.Keys() {
		for method, op := range doc.Paths.Value(path).Operations() {
			for code, r := range op.Responses.Map() {
				if code[0] != '4' && code[0] != '5' || path == "/metrics" {
					continue
				}
				mt := r.Value.Content.Get("application/json")
				if mt == nil || mt.Schema.Ref != schemaRefPrefix+"Error" {
					t.Errorf("%s %s: answer %s is not the Error schema", method, path, code)
				}
			}
			public := op.Security != nil && len(*op.Security) == 0
			if public != (path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/v1/openapi.json") {
				t.Errorf("%s %s: public = %v; only health, readiness, metrics and this document need no token", method, path, public)
			}
			if !public && op.Responses.Value("401") == nil {
				t.Errorf("%s %s: no 401 answer documented", method, path)
			}
		}
	}
}

// TestOpenAPIRoutes: every route of the router is documented with its
// method, and every documented operation is a route.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t, OpenAPI())
	patterns := routePatterns(t)
	if len(patterns) < 40 || !slices.Contains(patterns, "GET /v1/openapi.json") || !slices.Contains(patterns, "GET /metrics") {
		t.Fatalf("router patterns = %v: the route list is incomplete", patterns)
	}
	for _, p := range checkRoutes(doc, patterns) {
		t.Error(p)
	}
}

// TestOpenAPISchemas: every JSON field of the types the handlers encode
// and decode is documented with its type, and nothing else is.
func TestOpenAPISchemas(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t, OpenAPI())
	for _, p := range checkSchemas(doc) {
		t.Error(p)
	}
}

// editDoc returns a copy of the document changed by edit (on its generic
// JSON form).
func editDoc(t *testing.T, edit func(doc map[string]any)) *openapi3.T {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(OpenAPI(), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// Loaded, not validated: the checkers, not the validator, must see
	// the drift (and validating each copy is slow under -race).
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func cloneJSON(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func obj(v any, keys ...string) map[string]any {
	m := v.(map[string]any)
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func schemaProps(doc map[string]any, name string) map[string]any {
	return obj(doc, "components", "schemas", name, "properties")
}

// TestOpenAPICheckersCatchDrift is the negative control: a route, a
// method or a field removed from (or added to) a copy of the document,
// or a route added to the router, is reported by name.
func TestOpenAPICheckersCatchDrift(t *testing.T) {
	t.Parallel()
	patterns := routePatterns(t)
	if p := checkRoutes(loadOpenAPI(t, OpenAPI()), append(slices.Clone(patterns), "POST /v1/frobnicate/{name}")); !containsAll(p, "POST /v1/frobnicate/{name}") {
		t.Errorf("a route missing from the document: problems %q, want it named", p)
	}
	if p := checkRoutes(loadOpenAPI(t, OpenAPI()), append(slices.Clone(patterns), "/v1/nomethod")); !containsAll(p, "/v1/nomethod", "no method") {
		t.Errorf("a route without a method: problems %q, want it named", p)
	}
	routeCases := []struct {
		name string
		edit func(map[string]any)
		want []string
	}{
		{"path removed", func(d map[string]any) { delete(obj(d, "paths"), "/v1/status") }, []string{"GET /v1/status", "not in openapi.json"}},
		{"method removed", func(d map[string]any) { delete(obj(d, "paths", "/v1/secrets/{name}"), "delete") }, []string{"DELETE /v1/secrets/{name}", "no delete operation"}},
		{"path added", func(d map[string]any) {
			op := cloneJSON(obj(d, "paths", "/v1/secrets/{name}/restore", "post"))
			op["operationId"] = "frobnicate"
			obj(d, "paths")["/v1/secrets/{name}/frobnicate"] = map[string]any{"post": op}
		}, []string{"POST /v1/secrets/{name}/frobnicate", "does not serve"}},
		{"method added", func(d map[string]any) {
			op := cloneJSON(obj(d, "paths", "/v1/status", "get"))
			op["operationId"] = "deleteStatus"
			obj(d, "paths", "/v1/status")["delete"] = op
		}, []string{"DELETE /v1/status", "does not serve"}},
	}
	for _, tc := range routeCases {
		doc := editDoc(t, tc.edit)
		if p := checkRoutes(doc, patterns); !containsAll(p, tc.want...) {
			t.Errorf("%s: checkRoutes = %q, want a problem naming %q", tc.name, p, tc.want)
		}
	}
	schemaCases := []struct {
		name string
		edit func(map[string]any)
		want []string
	}{
		{"response field removed", func(d map[string]any) { delete(schemaProps(d, "Secret"), "key_id") }, []string{"schema Secret", `"key_id"`, "not documented"}},
		{"nested field removed", func(d map[string]any) { delete(schemaProps(d, "RunStep"), "result") }, []string{"schema RunStep", `"result"`, "not documented"}},
		{"embedded field removed", func(d map[string]any) { delete(schemaProps(d, "RotationShow"), "bound_to") }, []string{"schema RotationShow", `"bound_to"`}},
		{"request field removed", func(d map[string]any) { delete(schemaProps(d, "CreateSecretRequest"), "tags") }, []string{"schema CreateSecretRequest", `"tags"`}},
		{"field added", func(d map[string]any) {
			schemaProps(d, "Key")["colour"] = map[string]any{"type": "string"}
		}, []string{"schema Key", `"colour"`, "not a field"}},
		{"wrong type", func(d map[string]any) {
			schemaProps(d, "SecretValue")["version"] = map[string]any{"type": "string"}
		}, []string{"schema SecretValue", `"version"`, "want integer"}},
		{"wrong nested ref", func(d map[string]any) {
			obj(schemaProps(d, "SecretList"), "secrets")["items"] = map[string]any{"$ref": "#/components/schemas/Key"}
		}, []string{"schema SecretList", `"secrets"`, "want #/components/schemas/Secret"}},
		{"not nullable", func(d map[string]any) { delete(obj(schemaProps(d, "StatusRow"), "last_rotated_at"), "nullable") }, []string{"schema StatusRow", `"last_rotated_at"`, "nullable"}},
		{"required dropped", func(d map[string]any) {
			obj(d, "components", "schemas", "Token")["required"] = []any{"id", "policies"}
		}, []string{"schema Token", "required", "created_at"}},
		{"schema removed", func(d map[string]any) {
			delete(obj(d, "components", "schemas"), "Event")
		}, []string{"schema Event", "missing"}},
	}
	for _, tc := range schemaCases {
		doc := editDoc(t, tc.edit)
		if p := checkSchemas(doc); !containsAll(p, tc.want...) {
			t.Errorf("%s: checkSchemas = %q, want a problem naming %q", tc.name, p, tc.want)
		}
	}
}

// containsAll reports whether one of problems contains every part.
func containsAll(problems []string, parts ...string) bool {
	for _, p := range problems {
		ok := true
		for _, part := range parts {
			ok = ok && strings.Contains(p, part)
		}
		if ok {
			return true
		}
	}
	return false
}
