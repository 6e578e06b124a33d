package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/auth"
)

const editorTestSecret = "editor-test-secret-of-32-characters!"

func TestEditorRoutes(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	dev := httptest.NewServer(withEditor(api, []byte(editorTestSecret)))
	defer dev.Close()
	prod := httptest.NewServer(withEditor(api, nil))
	defer prod.Close()

	get := func(url string) (int, string, http.Header) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Header
	}
	if code, body, _ := get(prod.URL + "/"); code != 200 || !strings.Contains(body, "<title>roomlog editor</title>") || !strings.Contains(body, "/assets/editor.js") {
		t.Fatalf("GET /: %d %.200s", code, body)
	}
	if code, body, _ := get(prod.URL + "/audit"); code != 200 || !strings.Contains(body, "<title>roomlog audit</title>") || !strings.Contains(body, "/assets/audit.js") {
		t.Fatalf("GET /audit: %d %.200s", code, body)
	}
	for _, path := range []string{"/", "/assets/editor.js", "/assets/style.css", "/sw.js", "/index.html", "/audit", "/assets/audit.js"} {
		code, _, h := get(prod.URL + path)
		if code != 200 {
			t.Errorf("GET %s: %d", path, code)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: CSP %q, X-Frame-Options %q", path, csp, h.Get("X-Frame-Options"))
		}
	}
	for _, path := range []string{"/assets/missing.js", "/v1/ws", "/healthz", "/elsewhere", "/audit.html", "/audit/x"} {
		if code, _, _ := get(prod.URL + path); code != http.StatusTeapot {
			t.Errorf("GET %s answered %d, not by the API", path, code)
		}
	}

	post := func(url, body string) (int, map[string]any) {
		t.Helper()
		res, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			t.Fatalf("POST %s: %d, not JSON: %v", url, res.StatusCode, err)
		}
		return res.StatusCode, v
	}
	if code, v := post(prod.URL+"/dev/token", ""); code != 404 || v["error"].(map[string]any)["code"] != "not_found" {
		t.Fatalf("/dev/token outside development mode: %d %v", code, v)
	}
	code, v := post(dev.URL+"/dev/token", "")
	if code != 200 || !strings.HasPrefix(v["user"].(string), "guest-") {
		t.Fatalf("/dev/token: %d %v", code, v)
	}
	verifier, err := auth.NewVerifier(auth.Config{Secret: []byte(editorTestSecret)})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifier.Verify(v["token"].(string))
	if err != nil || claims.Subject != v["user"] {
		t.Fatalf("the dev token does not verify as its user: %v %v", claims, err)
	}
	if _, again := post(dev.URL+"/dev/token", `{"user":"ada"}`); again["user"] != "ada" {
		t.Fatalf("a window keeps its name: %v", again)
	}
	for _, bad := range []string{`{"user":"no spaces please"}`, `[1]`, `{"user":"` + strings.Repeat("x", 40) + `"}`} {
		if code, v := post(dev.URL+"/dev/token", bad); code != 400 || v["error"].(map[string]any)["code"] != "bad_frame" {
			t.Errorf("POST %s: %d %v", bad, code, v)
		}
	}
	if code, _, hdr := get(dev.URL + "/dev/token"); code != 405 || hdr.Get("Allow") != "POST" {
		t.Errorf("GET /dev/token: %d, Allow %q", code, hdr.Get("Allow"))
	}
	// Only this machine gets development tokens, even in development mode.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/dev/token", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	withEditor(api, []byte(editorTestSecret)).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("/dev/token from another machine: %d %s", rec.Code, rec.Body)
	}
}
