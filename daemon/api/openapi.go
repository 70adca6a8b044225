package api

import (
	_ "embed"
	"net/http"
	"slices"
)

// openapiDoc is the OpenAPI 3 document of every route, served at
// GET /v1/openapi.json. It is written by hand; openapi_test.go fails when
// it drifts from the router (a route or method missing on either side),
// from the query parameters and headers the handlers read, or from the Go
// types the handlers encode and decode (a field missing on either side),
// and validates real requests and answers against it.
//
//go:embed openapi.json
var openapiDoc []byte

// OpenAPI returns the OpenAPI 3 document of the HTTP API (JSON).
func OpenAPI() []byte { return slices.Clone(openapiDoc) }

// registerRoutes registers every route on s.mux.
func (s *Server) registerRoutes() {
	s.routes()
	s.openapiRoutes()
}

// openapiRoutes serves the document. It needs no token, like /healthz:
// it describes the API and holds nothing else.
func (s *Server) openapiRoutes() {
	s.handlePublic("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(openapiDoc)
	})
}

// routeMux is the router: an http.ServeMux that remembers every pattern
// registered on it, in order, so that the routes can be enumerated (the
// OpenAPI test compares them with the document).
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern and records the pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers f for pattern and records the pattern.
func (m *routeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Patterns returns the registered patterns in registration order.
func (m *routeMux) Patterns() []string { return slices.Clone(m.patterns) }
