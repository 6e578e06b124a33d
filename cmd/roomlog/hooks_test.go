package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/internal/servertest"
)

const hookSecret = "hook-secret-of-the-application-32b!"

// TestServeJoinHook runs a real roomlog serve with --hook-url pointing at an application on
// loopback that verifies each request's signature and decides by room: a token without any room
// claim joins and writes where the application says so, reads only where it says read-only, is
// refused with the application's reason where it says no, and gets unavailable (nothing joined)
// where the application fails; rooms outside --hook-rooms keep the token's claims; a decision with
// a ttl is reused; /metrics counts the decisions.
func TestServeJoinHook(t *testing.T) {
	var calls, forged atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if hooks.Verify([]byte(hookSecret), r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute) != nil {
			forged.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req hooks.JoinRequest
		json.Unmarshal(body, &req)
		switch req.Room {
		case "doc:shared":
			io.WriteString(w, `{"allow":true,"write":true,"ttl_ms":60000}`)
		case "doc:readonly":
			io.WriteString(w, `{"allow":true}`)
		case "doc:broken":
			http.Error(w, "database down", http.StatusInternalServerError)
		default:
			io.WriteString(w, `{"allow":false,"reason":"not shared with you"}`)
		}
	}))
	defer app.Close()
	p := startProc(t, filepath.Join(t.TempDir(), "hooks.db"), "--hook-url", app.URL, "--hook-secret", hookSecret, "--hook-rooms", "doc:*", "--hook-timeout", "1s")
	tok := servertest.Token(t, auth.TokenSpec{Subject: "alice", Rooms: []string{"chat:*"}})
	ws := wsConnect(t, p.addr, tok, "phone")
	defer ws.Close()
	ask := func(frame map[string]any) map[string]any { t.Helper(); return roundTrip(t, ws, frame) }
	expect := func(what string, fr map[string]any, typ, code string) {
		t.Helper()
		if fr["type"] != typ || (code != "" && fr["code"] != code) {
			t.Fatalf("%s: %v, want %s %s", what, fr, typ, code)
		}
	}
	expect("join shared", ask(map[string]any{"type": "join", "ref": "j1", "room": "doc:shared"}), "joined", "")
	expect("publish shared", publishKeyed(t, ws, "doc:shared", "k1"), "ack", "")
	expect("publish shared again", publishKeyed(t, ws, "doc:shared", "k2"), "ack", "")
	expect("join read-only", ask(map[string]any{"type": "join", "ref": "j2", "room": "doc:readonly"}), "joined", "")
	expect("publish read-only", publishKeyed(t, ws, "doc:readonly", "k3"), "error", "forbidden")
	refused := ask(map[string]any{"type": "join", "ref": "j3", "room": "doc:secret"})
	expect("join secret", refused, "error", "forbidden")
	if refused["message"] != "not shared with you" {
		t.Errorf("the refusal says %q, want the application's reason", refused["message"])
	}
	expect("join broken", ask(map[string]any{"type": "join", "ref": "j4", "room": "doc:broken"}), "error", "unavailable")
	expect("join chat (claims)", ask(map[string]any{"type": "join", "ref": "j5", "room": "chat:1"}), "joined", "")
	expect("join other (claims)", ask(map[string]any{"type": "join", "ref": "j6", "room": "other"}), "error", "forbidden")
	// doc:shared was asked once (its ttl covers both publishes), doc:readonly twice (no ttl: join
	// and publish), the others once each.
	if n := calls.Load(); n != 5 || forged.Load() != 0 {
		t.Errorf("%d hook calls (%d forged), want 5 (0)", n, forged.Load())
	}
	metrics := servertest.Token(t, auth.TokenSpec{Subject: "ops", Admin: true})
	_, body := servertest.Request(t, "GET", "http://"+p.addr+"/metrics", metrics, "")
	for _, want := range []string{
		`roomlog_hook_decisions_total{action="join",outcome="allow",source="asked"} 3`,
		`roomlog_hook_decisions_total{action="join",outcome="allow",source="reused"} 2`,
		`roomlog_hook_decisions_total{action="join",outcome="deny",source="asked"} 1`,
		`roomlog_hook_decisions_total{action="join",outcome="unavailable",source="asked"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestServeHookFlagsRefused: hook flags that cannot work are a usage error, not a server that
// lets everyone in.
func TestServeHookFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--hook-url", "http://127.0.0.1:9/"}, "secret must be at least"},
		{[]string{"--hook-url", "ftp://x/", "--hook-secret", hookSecret}, "want an http or https URL"},
		{[]string{"--hook-secret", hookSecret}, "--hook-secret needs --hook-url or --webhook"},
		{[]string{"--hook-publish"}, "--hook-publish needs --hook-url"},
		{[]string{"--hook-url", "http://127.0.0.1:9/", "--hook-secret", hookSecret, "--hook-rooms", "d*c"}, "--hook-rooms"},
		{[]string{"--hook-url", "http://127.0.0.1:9/", "--hook-secret", hookSecret, "--hook-timeout", "0s"}, "--hook-timeout must be positive"},
	} {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "x.db"), "--jwt-secret", servertest.Secret}, c.args...)
		code, _, stderr := roomlog(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, %q; want 2 and one line saying %q", c.args, code, stderr, c.want)
		}
	}
}
