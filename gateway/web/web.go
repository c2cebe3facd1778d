// Package web is the browser chat the gateway serves at "/": a plain page
// (index.html, app.js, style.css, no build step) embedded in the binary that
// speaks the client protocol over the gateway's /ws with the JSON
// subprotocol (mpim.v1.json).
package web

import (
	"embed"
	"net/http"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every answer: scripts, styles and
// images only from the page's own origin (no inline script, so injected
// markup cannot run), WebSocket connections to the gateway.
const CSP = "default-src 'self'; connect-src 'self' ws: wss:"

var files = map[string]struct{ name, ctype string }{
	"/":           {"static/index.html", "text/html; charset=utf-8"},
	"/index.html": {"static/index.html", "text/html; charset=utf-8"},
	"/app.js":     {"static/app.js", "text/javascript; charset=utf-8"},
	"/devices.js": {"static/devices.js", "text/javascript; charset=utf-8"},
	"/style.css":  {"static/style.css", "text/css; charset=utf-8"},
}

// Handler serves the web chat. Paths other than the page's files are 404.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := static.ReadFile(f.name)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(body)
	})
}
