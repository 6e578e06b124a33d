package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/servertest"
)

// TestServeRefusesAccidentalDevelopmentMode: development mode never opens by accident. A key flag
// or variable given but empty, a short secret, a JWKS without an audience or over plain http, and
// no key on an address that is not loopback each stop serve at start with one line and exit 2,
// leaving no file behind.
func TestServeRefusesAccidentalDevelopmentMode(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"empty secret flag", nil, []string{"--jwt-secret", ""}, "--jwt-secret (or ROOMLOG_JWT_SECRET) is given but empty"},
		{"empty secret variable", []string{"ROOMLOG_JWT_SECRET="}, nil, "--jwt-secret (or ROOMLOG_JWT_SECRET) is given but empty"},
		{"blank public key variable", []string{"ROOMLOG_JWT_PUBLIC_KEY= "}, nil, "--jwt-public-key (or ROOMLOG_JWT_PUBLIC_KEY) is given but empty"},
		{"empty jwks", nil, []string{"--jwks="}, "--jwks (or ROOMLOG_JWKS) is given but empty"},
		{"short secret", nil, []string{"--jwt-secret", "a"}, "--jwt-secret is 1 bytes; at least 32 are needed"},
		{"jwks without audience", nil, []string{"--jwks", jwks}, "--jwks needs --jwt-audience"},
		{"jwks over http", nil, []string{"--jwks", "http://keys.example/jwks.json", "--jwt-audience", "roomlog"}, "fetch keys over https"},
		{"no key on all interfaces", nil, []string{"--addr", "0.0.0.0:7070"}, "development mode serves this machine only"},
		{"no key on an empty host", nil, []string{"--addr", ":7070"}, "is not a loopback address"},
		{"bad token ttl", nil, []string{"--max-token-ttl", "0s"}, "--max-token-ttl must be positive"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(dir, strings.Repeat("x", i+1)+".db")
			code, _, stderr := roomlog(t, tc.env, append([]string{"serve", "--data", data}, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and one line with %q", code, stderr, tc.want)
			}
			for _, path := range []string{data, devSecretPath(data), devTokenPath(data)} {
				if _, err := os.Stat(path); err == nil {
					t.Errorf("a refused start left %s behind", filepath.Base(path))
				}
			}
		})
	}
}

// TestDevFlagAllowsOtherAddresses: --dev is the one way to development mode off loopback, and
// loopback names of every kind need no flag.
func TestDevFlagAllowsOtherAddresses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--addr", "0.0.0.0:7070"}, false},
		{[]string{"--addr", "0.0.0.0:7070", "--dev"}, true},
		{[]string{"--addr", "192.0.2.1:7070", "--dev"}, true},
		{[]string{"--addr", "127.0.0.1:7070"}, true},
		{[]string{"--addr", "127.1.2.3:7070"}, true},
		{[]string{"--addr", "[::1]:7070"}, true},
		{[]string{"--addr", "localhost:7070"}, true},
		{[]string{"--addr", "0.0.0.0:7070", "--jwt-secret", servertest.Secret}, true},
	} {
		c, f := newServeCommand()
		if _, ok := c.parse(tc.args); !ok {
			t.Fatalf("%v: flags refused", tc.args)
		}
		_, err := f.config()
		if (err == nil) != tc.ok {
			t.Errorf("%v: config error %v, want ok=%v", tc.args, err, tc.ok)
		}
	}
}

// TestDevModeAnswersThisMachineOnly is DNS rebinding against a real server in development mode:
// a page under a foreign name that resolves to 127.0.0.1 sends its own name in Host (and its own
// origin). It gets no token, no WebSocket, no events and no page; requests for loopback names
// still work. /dev/token also refuses forwarded requests (a reverse proxy on this machine) and
// foreign origins. The ready-made token is in a 0600 file, not in the log.
func TestDevModeAnswersThisMachineOnly(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dev.db")
	p := startServe(t, "--data", data)
	base := "http://" + p.addr
	_, port, _ := strings.Cut(p.addr, ":")
	foreign := "rebind.attacker.example:" + port

	do := func(method, path, host string, header map[string]string, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Host = host
		for k, v := range header {
			req.Header.Set(k, v)
		}
		return servertest.Do(t, req)
	}
	// The attacker's page, as the browser sends it after rebinding.
	attacker := map[string]string{"Origin": "http://" + foreign, "Content-Type": "application/json"}
	if code, body := do("POST", "/dev/token", foreign, attacker, `{"user":"mallory"}`); code != 403 || strings.Contains(body, "token\":") {
		t.Fatalf("/dev/token for a foreign Host: %d %s", code, body)
	}
	for _, path := range []string{"/", "/assets/editor.js", "/v1/rooms/doc:secret/events", "/healthz"} {
		if code, _ := do("GET", path, foreign, attacker, ""); code != 403 {
			t.Errorf("GET %s for a foreign Host: %d, want 403", path, code)
		}
	}
	hdr := http.Header{"Origin": {"http://" + foreign}, "Host": {foreign}}
	d := websocket.Dialer{}
	if ws, res, err := d.Dial("ws://"+p.addr+"/v1/ws", hdr); err == nil {
		ws.Close()
		t.Fatalf("the WebSocket opened for a foreign Host")
	} else if res == nil || res.StatusCode != 403 {
		t.Fatalf("the WebSocket for a foreign Host: %v %v", res, err)
	}

	// Through a proxy, or from another page: refused too.
	for name, h := range map[string]map[string]string{
		"forwarded":       {"X-Forwarded-For": "203.0.113.9"},
		"forwarded (RFC)": {"Forwarded": "for=203.0.113.9"},
		"foreign origin":  {"Origin": "http://evil.example"},
		"other port":      {"Origin": "http://127.0.0.1:1"},
	} {
		if code, body := do("POST", "/dev/token", p.addr, h, ""); code != 403 {
			t.Errorf("/dev/token %s: %d %s", name, code, body)
		}
	}

	// The server's own page, under its loopback names, works.
	for _, host := range []string{p.addr, "localhost:" + port} {
		code, body := do("POST", "/dev/token", host, map[string]string{"Origin": "http://" + host}, "")
		var v devTokenReply
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Token == "" {
			t.Fatalf("/dev/token from the page at %s: %d %s", host, code, body)
		}
		if code, _ := do("GET", "/", host, nil, ""); code != 200 {
			t.Errorf("GET / at %s: %d", host, code)
		}
	}
	ws, res, err := d.Dial("ws://localhost:"+port+"/v1/ws", http.Header{"Origin": {"http://localhost:" + port}})
	if err != nil {
		t.Fatalf("the WebSocket for localhost: %v %v", res, err)
	}
	ws.Close()

	// The demo token: in a 0600 file the log names, never in the log.
	st, err := os.Stat(devTokenPath(data))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("development token file: %v %v", st, err)
	}
	tok, _ := os.ReadFile(devTokenPath(data))
	secret, _ := os.ReadFile(devSecretPath(data))
	v, _ := auth.NewVerifier(auth.Config{Secret: []byte(strings.TrimSpace(string(secret)))})
	if c, err := v.Verify(strings.TrimSpace(string(tok))); err != nil || c.Subject != "demo" || !c.Admin {
		t.Fatalf("the token file holds no admin token: %v %v", c, err)
	}
	if jwt := regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.`); jwt.MatchString(p.log()) {
		t.Fatalf("the log holds a token:\n%s", p.log())
	}
	if !strings.Contains(p.log(), "token_file="+devTokenPath(data)) {
		t.Fatalf("the log does not say where the token is:\n%s", p.log())
	}
}

// TestServeTokenHygiene: against a real server, a token valid for a century and one issued in
// the future are refused at hello; --max-token-ttl moves the bound.
func TestServeTokenHygiene(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "ttl.db"), "--max-token-ttl", "2h")
	hello := func(tok string) map[string]any {
		t.Helper()
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/v1/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.WriteJSON(map[string]any{"type": "hello", "token": tok})
		var f map[string]any
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	sign := func(iat, exp time.Time) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "rooms": []string{"*"}, "iat": iat.Unix(), "exp": exp.Unix()}).SignedString([]byte(servertest.Secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	for name, tok := range map[string]string{
		"a century":           sign(now, now.AddDate(100, 0, 0)),
		"three hours":         sign(now, now.Add(3*time.Hour)),
		"issued in ten years": sign(now.AddDate(10, 0, 0), now.AddDate(10, 0, 0).Add(time.Hour)),
	} {
		if f := hello(tok); f["type"] != "bye" || f["code"] != "unauthenticated" {
			t.Errorf("%s: %v", name, f)
		}
	}
	if f := hello(sign(now, now.Add(2*time.Hour))); f["type"] != "welcome" {
		t.Errorf("a token within --max-token-ttl: %v", f)
	}
}
