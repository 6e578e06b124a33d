package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/servertest"
)

// helloAnswer says hello with tok on a new connection and returns the first frame answering it.
func helloAnswer(t *testing.T, addr, tok string) map[string]any {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteJSON(map[string]any{"type": "hello", "token": tok, "session": "s"})
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f map[string]any
	if err := ws.ReadJSON(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestServeRevokeTokens: an administrator revokes one token by its jti and a user's tokens
// issued before now: the live connections they authenticated get bye token_revoked and close, a
// hello with them is refused with token_revoked, other tokens go on, and GET /v1/tokens/revoked
// lists both. After a restart the revocations still hold (they are in the data file). Clients
// cannot reach the system room they are kept in; bad requests change nothing.
func TestServeRevokeTokens(t *testing.T) {
	data := filepath.Join(t.TempDir(), "revoke.db")
	p := startProc(t, data)
	leaked := servertest.Token(t, auth.TokenSpec{Subject: "alice", Rooms: []string{"*"}, ID: "leaked-1"})
	fine := servertest.Token(t, auth.TokenSpec{Subject: "alice", Rooms: []string{"*"}, ID: "fine-1"})
	bobOld := servertest.Token(t, auth.TokenSpec{Subject: "bob", Rooms: []string{"*"}})
	admin := servertest.Token(t, auth.TokenSpec{Subject: "ops", Admin: true})
	base := "http://" + p.addr

	live := wsConnect(t, p.addr, leaked, "phone")
	defer live.Close()
	other := wsConnect(t, p.addr, fine, "laptop")
	defer other.Close()
	if fr := roundTrip(t, live, map[string]any{"type": "join", "ref": "j", "room": "_roomlog/revocations"}); fr["code"] != "forbidden" {
		t.Errorf("a client joined the system room: %v", fr)
	}
	for _, bad := range []struct{ tok, body string }{
		{fine, `{"jti":"x"}`},
		{admin, `{}`},
		{admin, `{"jti":"x","user":"bob"}`},
		{admin, `{"user":"bob"}`},
		{admin, `{"jti":"x","expires":"2030-01-01T00:00:00Z"}`},
		{admin, `{"jti":`},
	} {
		if status, body := servertest.Request(t, "POST", base+"/v1/tokens/revoke", bad.tok, bad.body); status == 200 {
			t.Errorf("%s was accepted: %s", bad.body, body)
		}
	}
	time.Sleep(1100 * time.Millisecond) // iat has one-second steps: bob's token is issued before
	if status, body := servertest.Request(t, "POST", base+"/v1/tokens/revoke", admin, `{"jti":"leaked-1"}`); status != 200 || !strings.Contains(body, `"connections_closed":1`) {
		t.Fatalf("revoke the jti: %d %s", status, body)
	}
	live.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var f map[string]any
		if err := live.ReadJSON(&f); err != nil {
			t.Fatalf("no bye token_revoked before the close: %v", err)
		}
		if f["type"] == "bye" {
			if f["code"] != "token_revoked" {
				t.Fatalf("bye %v", f)
			}
			break
		}
	}
	if fr := roundTrip(t, other, map[string]any{"type": "ping", "ref": "still"}); fr["type"] != "pong" {
		t.Errorf("another token's connection: %v", fr)
	}
	issuedBefore := time.Now().UTC().Format(time.RFC3339)
	if status, body := servertest.Request(t, "POST", base+"/v1/tokens/revoke", admin, `{"user":"bob","issued_before":"`+issuedBefore+`"}`); status != 200 || !strings.Contains(body, `"connections_closed":0`) {
		t.Fatalf("revoke bob's tokens: %d %s", status, body)
	}
	check := func(when string) {
		t.Helper()
		for name, c := range map[string]struct{ tok, code string }{
			"leaked": {leaked, "token_revoked"}, "bob's old": {bobOld, "token_revoked"},
		} {
			if f := helloAnswer(t, p.addr, c.tok); f["type"] != "bye" || f["code"] != c.code {
				t.Errorf("%s: hello with the %s token: %v", when, name, f)
			}
		}
		if f := helloAnswer(t, p.addr, fine); f["type"] != "welcome" {
			t.Errorf("%s: hello with another token: %v", when, f)
		}
		status, body := servertest.Request(t, "GET", "http://"+p.addr+"/v1/tokens/revoked", admin, "")
		if status != 200 || !strings.Contains(body, `"jti":"leaked-1"`) || !strings.Contains(body, `"user":"bob"`) {
			t.Errorf("%s: revoked list %d %s", when, status, body)
		}
	}
	check("before the restart")
	other.Close()
	p.cmd.Process.Kill()
	<-p.done
	p = startProc(t, data)
	check("after a kill -9 and restart")
}
