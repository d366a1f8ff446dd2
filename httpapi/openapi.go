package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/edupulse/eventbus/auth"
)

// openAPIDocument is the OpenAPI 3.1 document of the API, served at
// GET /v1/openapi.json. openapi_test.go keeps it true: it validates real
// answers of every route against it, and checks that it names exactly the
// routes the server registers.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document of the API (JSON).
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

// Endpoint is one route of the API, as GET /v1 lists it.
type Endpoint struct {
	Method string `json:"method"`
	// Path is in OpenAPI's form: {subject}, not the mux's {subject...}.
	Path string `json:"path"`
	// Scope is what the token must grant: publish, read or admin; public
	// for a route that needs no token.
	Scope string `json:"scope"`
	// Summary is the operation's summary in the OpenAPI document.
	Summary string `json:"summary"`
}

// ScopePublic names the scope of a route that needs no token.
const ScopePublic = "public"

// endpointOf describes the route registered for pattern ("METHOD /path")
// with scope (0 for an open route).
func endpointOf(pattern string, scope auth.Scope) Endpoint {
	method, path, _ := strings.Cut(pattern, " ")
	e := Endpoint{Method: method, Path: strings.ReplaceAll(path, "...}", "}"), Scope: ScopePublic}
	if scope != 0 {
		e.Scope = scope.String()
	}
	e.Summary = openAPISummaries()[e.Method+" "+e.Path]
	return e
}

// openAPISummaries maps "METHOD /path" to the operation's summary in the
// document. The document is embedded, so it parses; a route missing from
// it gets no summary, which the tests catch.
var openAPISummaries = sync.OnceValue(func() map[string]string {
	var doc struct {
		Paths map[string]map[string]struct {
			Summary string `json:"summary"`
		} `json:"paths"`
	}
	_ = json.Unmarshal(openAPIDocument, &doc)
	out := make(map[string]string)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			out[strings.ToUpper(method)+" "+path] = op.Summary
		}
	}
	return out
})

// routeDocs registers the two routes that describe the API. Both are
// public: they hold no data, and clients and tools (code generators, API
// explorers) read them before they have a token, as they probe /healthz.
func (a *api) routeDocs() {
	a.route("GET /v1/openapi.json", 0, a.serveOpenAPI)
	a.route("GET /v1", 0, a.listEndpoints)
}

func (a *api) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, openAPIDocument)
}

// listEndpoints answers GET /v1: every route the server registered, in the
// order it registered them.
func (a *api) listEndpoints(w http.ResponseWriter, r *http.Request) {
	a.writeValue(w, r, http.StatusOK, struct {
		Endpoints []Endpoint `json:"endpoints"`
	}{a.routes})
}

// routeConsole serves the web console at / and its files under /console/.
// Both are public: the page holds no data, and asks for a token before it
// reads any (DESIGN "Audit console").
func (a *api) routeConsole(h http.Handler) {
	for _, pattern := range []string{"GET /{$}", "GET /console/"} {
		_, path, _ := strings.Cut(pattern, " ")
		a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			infoFrom(r.Context()).route = path
			h.ServeHTTP(w, r)
		})
	}
}
