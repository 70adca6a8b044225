package api

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The query parameters and request headers each handler reads, found in
// the package's source, against the parameters openapi.json documents.

// ignoredHeaders are read by the middleware or the body decoder for every
// route: the security scheme and the request body's media type say them.
var ignoredHeaders = []string{"Authorization", "Content-Type"}

// funcInputs is what one function reads directly, and what it calls.
type funcInputs struct {
	query, header []string
	calls         []string
}

// routeInputs returns, per route pattern, the query parameters ("query
// NAME") and headers ("header NAME") its handler reads, itself or through
// the functions of the package it calls.
func routeInputs(t testing.TB) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]*funcInputs{} // "f" for funcs, "m:name" for methods
	handlers := map[string]string{}   // pattern -> key in funcs
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			key := fd.Name.Name
			if fd.Recv != nil {
				key = "m:" + key
			}
			funcs[key] = mergeInputs(funcs[key], scanInputs(fd.Body))
			// Registrations: s.handle("PATTERN", s.fn) and
			// s.handlePublic("PATTERN", func(...) {...}).
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "handle" && sel.Sel.Name != "handlePublic") {
					return true
				}
				pattern, ok := stringLit(call.Args[0])
				if !ok {
					return true
				}
				switch h := call.Args[1].(type) {
				case *ast.SelectorExpr:
					handlers[pattern] = "m:" + h.Sel.Name
				case *ast.FuncLit:
					handlers[pattern] = "lit:" + pattern
					funcs["lit:"+pattern] = scanInputs(h.Body)
				default:
					t.Errorf("route %s: handler %T not understood by the parameter check", pattern, h)
				}
				return true
			})
		}
	}
	out := map[string][]string{}
	for pattern, key := range handlers {
		seen := map[string]bool{}
		var reads []string
		var visit func(key string)
		visit = func(key string) {
			fi := funcs[key]
			if fi == nil || seen[key] {
				return
			}
			seen[key] = true
			for _, q := range fi.query {
				reads = append(reads, "query "+q)
			}
			for _, h := range fi.header {
				if !slices.Contains(ignoredHeaders, h) {
					reads = append(reads, "header "+h)
				}
			}
			for _, c := range fi.calls {
				visit(c)
			}
		}
		visit(key)
		slices.Sort(reads)
		out[pattern] = slices.Compact(reads)
	}
	return out
}

func mergeInputs(a, b *funcInputs) *funcInputs {
	if a == nil {
		return b
	}
	a.query = append(a.query, b.query...)
	a.header = append(a.header, b.header...)
	a.calls = append(a.calls, b.calls...)
	return a
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// isQueryCall reports whether e is X.Query() (r.URL.Query()).
func isQueryCall(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Query" && len(call.Args) == 0
}

// scanInputs finds the query parameters and headers a function body reads
// by name: X.Query().Get("n"), q.Get("n") with q := X.Query(),
// X.Query()["n"], queryBool(r, "n"), X.Header.Get("n"); and the calls it
// makes (f(...), x.m(...)).
func scanInputs(body *ast.BlockStmt) *funcInputs {
	fi := &funcInputs{}
	queryVars := map[string]bool{}
	ast.Inspect(body, func(n ast.Node) bool {
		if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == 1 && len(as.Rhs) == 1 && isQueryCall(as.Rhs[0]) {
			if id, ok := as.Lhs[0].(*ast.Ident); ok {
				queryVars[id.Name] = true
			}
		}
		return true
	})
	isQuery := func(e ast.Expr) bool {
		if id, ok := e.(*ast.Ident); ok {
			return queryVars[id.Name]
		}
		return isQueryCall(e)
	}
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IndexExpr:
			if name, ok := stringLit(n.Index); ok && isQuery(n.X) {
				fi.query = append(fi.query, name)
			}
		case *ast.CallExpr:
			switch fun := n.Fun.(type) {
			case *ast.Ident:
				fi.calls = append(fi.calls, fun.Name)
				if fun.Name == "queryBool" && len(n.Args) == 2 {
					if name, ok := stringLit(n.Args[1]); ok {
						fi.query = append(fi.query, name)
					}
				}
			case *ast.SelectorExpr:
				fi.calls = append(fi.calls, "m:"+fun.Sel.Name)
				if fun.Sel.Name != "Get" || len(n.Args) != 1 {
					break
				}
				name, ok := stringLit(n.Args[0])
				if !ok {
					break
				}
				if isQuery(fun.X) {
					fi.query = append(fi.query, name)
				} else if h, ok := fun.X.(*ast.SelectorExpr); ok && h.Sel.Name == "Header" {
					fi.header = append(fi.header, name)
				}
			}
		}
		return true
	})
	return fi
}

// documentedInputs returns the query parameters and headers an operation
// documents ("query NAME", "header NAME").
func documentedInputs(op *openapi3.Operation) []string {
	var out []string
	for _, p := range op.Parameters {
		if p.Value != nil && (p.Value.In == "query" || p.Value.In == "header") {
			out = append(out, p.Value.In+" "+p.Value.Name)
		}
	}
	slices.Sort(out)
	return out
}

// checkParams compares what each route's handler reads with what its
// operation documents, both ways.
func checkParams(doc *openapi3.T, inputs map[string][]string) []string {
	var problems []string
	for pattern, reads := range inputs {
		method, path, _ := strings.Cut(pattern, " ")
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			continue // checkRoutes reports it
		}
		documented := documentedInputs(item.GetOperation(method))
		for _, r := range reads {
			if !slices.Contains(documented, r) {
				problems = append(problems, fmt.Sprintf("%s reads %s parameter, which openapi.json does not document", pattern, r))
			}
		}
		for _, d := range documented {
			if !slices.Contains(reads, d) {
				problems = append(problems, fmt.Sprintf("openapi.json documents %s parameter of %s, which its handler does not read", d, pattern))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// TestOpenAPIParameters: every query parameter and header a handler reads
// is documented on its operation, and every documented one is read.
func TestOpenAPIParameters(t *testing.T) {
	t.Parallel()
	inputs := routeInputs(t)
	// The scan must see the reads it is meant to see.
	for pattern, want := range map[string][]string{
		"POST /v1/secrets/{name}/rotate": {"query emergency", "query keep_sessions", "query wait"},
		"GET /v1/events":                 {"header Last-Event-ID", "query after", "query secrets"},
		"GET /v1/keys":                   {"query after", "query limit", "query region"},
	} {
		if !slices.Equal(inputs[pattern], want) {
			t.Errorf("the source scan found %s reads %q, want %q", pattern, inputs[pattern], want)
		}
	}
	if len(inputs) < 40 {
		t.Errorf("the source scan found %d route registrations, want every route", len(inputs))
	}
	for _, p := range checkParams(loadOpenAPI(t, OpenAPI()), inputs) {
		t.Error(p)
	}
	// Negative control: a parameter removed from or added to a copy of the
	// document is reported.
	doc := editDoc(t, func(d map[string]any) {
		op := obj(d, "paths", "/v1/secrets/{name}/rotate", "post")
		var kept []any
		for _, p := range op["parameters"].([]any) {
			if p.(map[string]any)["name"] != "keep_sessions" {
				kept = append(kept, p)
			}
		}
		op["parameters"] = kept
		st := obj(d, "paths", "/v1/status", "get")
		st["parameters"] = append(st["parameters"].([]any), map[string]any{"name": "region", "in": "query", "schema": map[string]any{"type": "string"}})
	})
	p := checkParams(doc, inputs)
	if !containsAll(p, "POST /v1/secrets/{name}/rotate reads query keep_sessions") || !containsAll(p, "query region parameter of GET /v1/status") {
		t.Errorf("checkParams on an edited document = %q, want the missing keep_sessions and the extra region named", p)
	}
}
