package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/internal/servertest"
)

// nextOf reads ws's frames up to the first of type typ (within 10 s) and returns it.
func nextOf(t *testing.T, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer ws.SetReadDeadline(time.Time{})
	for {
		var f map[string]any
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if f["type"] == typ {
			return f
		}
	}
}

// TestServeActionsAcrossNodes: two roomlog nodes on one JetStream. An administrator's removal,
// disconnection and revocation taken through node A reach the sessions on node B: B's member
// is sent removed, B's connections of the disconnected user bye disconnected, and those of the
// revoked token bye token_revoked.
func TestServeActionsAcrossNodes(t *testing.T) {
	servertest.Long(t, "two-node test")
	ns := natstest.Start(t)
	dir := t.TempDir()
	a := startProc(t, filepath.Join(dir, "a.db"), "--nats", ns.ClientURL())
	b := startProc(t, filepath.Join(dir, "b.db"), "--nats", ns.ClientURL())
	admin := servertest.Token(t, auth.TokenSpec{Subject: "ops", Admin: true})
	everywhere := []string{"*"}

	bob := wsConnect(t, b.addr, servertest.Token(t, auth.TokenSpec{Subject: "bob", Rooms: everywhere}), "bob-phone")
	defer bob.Close()
	if fr := roundTrip(t, bob, map[string]any{"type": "join", "ref": "j", "room": "doc:1"}); fr["type"] != "joined" {
		t.Fatalf("join on b: %v", fr)
	}
	status, body := servertest.Request(t, "POST", "http://"+a.addr+"/v1/rooms/doc:1/members/bob/remove", admin, `{"reason":"unshared"}`)
	if status != 200 {
		t.Fatalf("remove through a: %d %s", status, body)
	}
	if f := nextOf(t, bob, "removed"); f["room"] != "doc:1" || f["reason"] != "unshared" {
		t.Errorf("removed on b: %v", f)
	}

	carol := wsConnect(t, b.addr, servertest.Token(t, auth.TokenSpec{Subject: "carol", Rooms: everywhere}), "carol-desk")
	defer carol.Close()
	if status, body := servertest.Request(t, "POST", "http://"+a.addr+"/v1/users/carol/disconnect", admin, `{"reason":"suspended"}`); status != 200 {
		t.Fatalf("disconnect through a: %d %s", status, body)
	}
	if f := nextOf(t, carol, "bye"); f["code"] != "disconnected" || f["reason"] != "suspended" {
		t.Errorf("bye on b: %v", f)
	}

	dave := wsConnect(t, b.addr, servertest.Token(t, auth.TokenSpec{Subject: "dave", Rooms: everywhere, ID: "dave-1"}), "dave-laptop")
	defer dave.Close()
	if status, body := servertest.Request(t, "POST", "http://"+a.addr+"/v1/tokens/revoke", admin, `{"jti":"dave-1"}`); status != 200 {
		t.Fatalf("revoke through a: %d %s", status, body)
	}
	if f := nextOf(t, dave, "bye"); f["code"] != "token_revoked" {
		t.Errorf("bye on b: %v", f)
	}
	if !strings.Contains(b.log(), "user removed from room") {
		t.Errorf("b did not log the removal:\n%s", b.log())
	}
}
