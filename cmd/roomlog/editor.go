package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"regexp"
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

// withEditor serves the editor page at / (its files under /assets/, its service worker at /sw.js)
// and, in development mode
// only (devSecret set), tokens for it at /dev/token. Every other path goes to api.
func withEditor(api http.Handler, devSecret []byte) http.Handler {
	files := http.FileServerFS(web.Editor())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dev/token":
			serveDevToken(w, r, devSecret)
		case r.URL.Path == "/" || r.URL.Path == "/index.html" || r.URL.Path == "/sw.js":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				api.ServeHTTP(w, r) // the API's 405 in its JSON shape
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			if r.URL.Path == "/index.html" {
				r2 := *r
				u := *r.URL
				u.Path = "/"
				r2.URL = &u
				r = &r2
			}
			files.ServeHTTP(w, r)
		case len(r.URL.Path) > len("/assets/") && r.URL.Path[:len("/assets/")] == "/assets/":
			if _, err := fs.Stat(web.Editor(), r.URL.Path[1:]); err != nil {
				api.ServeHTTP(w, r) // the API's 404 in its JSON shape
				return
			}
			files.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
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
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		devTokenError(w, http.StatusForbidden, wire.CodeForbidden, "/dev/token answers requests from this machine only")
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
	tok, err := auth.NewToken(secret, auth.TokenSpec{Subject: req.User, Rooms: []string{"*"}, TTL: devTokenTTL})
	if err != nil {
		devTokenError(w, http.StatusInternalServerError, wire.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(devTokenReply{Token: tok, User: req.User, ExpiresAt: time.Now().Add(devTokenTTL).UTC()})
}

// devTokenError answers in the HTTP API's error shape.
func devTokenError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}
