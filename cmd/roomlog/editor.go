package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/web"
	"github.com/roomlog/roomlog/wire"
)

// devTokenTTL is the life of a token from /dev/token; the editor page asks for a new one before
// it expires (the client's refresh).
const devTokenTTL = time.Hour

// devUserPattern is what a user name asked of /dev/token may be.
var devUserPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// withEditor serves the editor page at / (its files under /assets/, its service worker at /sw.js),
// the audit page at /audit, and, in development mode
// only (devSecret set), tokens for it at /dev/token. Every other path goes to api.
func withEditor(api http.Handler, devSecret []byte) http.Handler {
	files := http.FileServerFS(web.Editor())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if devSecret != nil && !loopbackHost(requestHost(r)) {
			// DNS rebinding: a web page whose name now resolves to 127.0.0.1 reaches this server
			// with its own name in Host. Development mode answers loopback names only.
			devTokenError(w, http.StatusForbidden, wire.CodeForbidden, "development mode answers requests for this machine only: Host "+r.Host+" is not a loopback name or address")
			return
		}
		switch {
		case r.URL.Path == "/dev/token":
			serveDevToken(w, r, devSecret)
		case r.URL.Path == "/" || r.URL.Path == "/index.html" || r.URL.Path == "/sw.js" || r.URL.Path == "/audit":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				api.ServeHTTP(w, r) // the API's 405 in its JSON shape
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			setPageHeaders(w.Header())
			// The file server answers /index.html with a redirect to /; both pages are asked for
			// by the names the file server serves them under.
			if file := map[string]string{"/index.html": "/", "/audit": "/audit.html"}[r.URL.Path]; file != "" {
				r2 := *r
				u := *r.URL
				u.Path = file
				r2.URL = &u
				r = &r2
			}
			files.ServeHTTP(w, r)
		case len(r.URL.Path) > len("/assets/") && r.URL.Path[:len("/assets/")] == "/assets/":
			if _, err := fs.Stat(web.Editor(), r.URL.Path[1:]); err != nil {
				api.ServeHTTP(w, r) // the API's 404 in its JSON shape
				return
			}
			setPageHeaders(w.Header())
			files.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// pageCSP lets the editor page run scripts of its own origin only (no inline script, no eval),
// talk to its own server only, and be framed by no one. Styles may be inline: CodeMirror writes
// its own style sheets at run time.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"

// setPageHeaders sets the headers every file of the editor page is served with.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

type devTokenReply struct {
	Token     string    `json:"token"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

// serveDevToken mints a token for the editor page: POST /dev/token, optionally with
// {"user":"name"} (a window keeps its name across reloads and refreshes); without one, a new
// guest user, so that each window is a person of its own. Refused unless the server is in
// development mode, and refused to anyone but this machine.
func serveDevToken(w http.ResponseWriter, r *http.Request, secret []byte) {
	if secret == nil {
		devTokenError(w, http.StatusNotFound, wire.CodeNotFound, "/dev/token is served in development mode only (roomlog serve without --jwt-secret, --jwt-public-key or --jwks)")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		devTokenError(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "POST /dev/token")
		return
	}
	if msg := devTokenRefusal(r); msg != "" {
		devTokenError(w, http.StatusForbidden, wire.CodeForbidden, msg)
		return
	}
	var req struct {
		User string `json:"user"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&req); err != nil {
			devTokenError(w, http.StatusBadRequest, wire.CodeBadFrame, "the body must be {\"user\":\"name\"} or empty")
			return
		}
	}
	if req.User == "" {
		b := make([]byte, 3)
		rand.Read(b)
		req.User = "guest-" + hex.EncodeToString(b)
	} else if !devUserPattern.MatchString(req.User) {
		devTokenError(w, http.StatusBadRequest, wire.CodeBadFrame, "user must be 1-32 of A-Z a-z 0-9 _ -")
		return
	}
	tok, err := auth.NewToken(secret, auth.TokenSpec{Subject: req.User, Rooms: []string{"*"}, SnapshotRooms: []string{"*"}, TTL: devTokenTTL})
	if err != nil {
		devTokenError(w, http.StatusInternalServerError, wire.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(devTokenReply{Token: tok, User: req.User, ExpiresAt: time.Now().Add(devTokenTTL).UTC()})
}

// devTokenRefusal says why a request for a development token is refused, "" when it is not: it
// must come from this machine, for a loopback Host, not through a proxy (behind a reverse proxy on
// the same machine every request comes from loopback, the world's included), and from the
// server's own page when a browser sends it.
func devTokenRefusal(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		return "/dev/token answers requests from this machine only"
	}
	if !loopbackHost(requestHost(r)) {
		return "/dev/token answers requests for a loopback Host only"
	}
	for name := range r.Header {
		if name == "Forwarded" || strings.HasPrefix(name, "X-Forwarded-") {
			return "/dev/token refuses requests that came through a proxy (" + name + ")"
		}
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, r.Host) || !loopbackHost(u.Hostname()) {
			return "/dev/token answers the server's own pages only, not Origin " + origin
		}
	}
	return ""
}

// requestHost is the request's Host without its port.
func requestHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.Host); err == nil {
		return host
	}
	return r.Host
}

// devTokenError answers in the HTTP API's error shape.
func devTokenError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}
