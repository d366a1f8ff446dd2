// Package console is the bus's web console: the pages that support staff,
// auditors and operators open in a browser to see what happened (events, a
// correlation's timeline, a stream) and what the relay and the consumers
// are doing (relay state, parked events, dead letters, replay).
//
// It is static files (HTML, CSS and ES modules, no build step) embedded in
// the binary, so it works offline; they read the HTTP API (package httpapi)
// from the browser, with the token the user types in, and never anything
// else. httpapi serves this package's Handler at / when its Config.Console
// is set; the service sets it.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// ContentSecurityPolicy is the console's CSP: scripts, styles and
// connections from this server only, no inline script or style, no frames.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the console: the page at / and its files under /console/.
// Every answer carries the security headers (CSP, no sniffing, no
// referrer, no framing).
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is part of the build
	}
	fileServer := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		switch {
		case r.URL.Path == "/":
			// Always the current page after an upgrade.
			h.Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, "index.html")
		case strings.HasPrefix(r.URL.Path, "/console/") && r.URL.Path != "/console/":
			h.Set("Cache-Control", "no-cache")
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/console")
			fileServer.ServeHTTP(w, r2)
		default:
			http.NotFound(w, r)
		}
	})
}
