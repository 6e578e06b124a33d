package transport_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/internal/servertest"
)

// TestRemoveUser: an administrator removes a user from a room: each of the user's sessions there
// (two, one of them on two connections) is sent removed with the reason and gets nothing more of
// the room, a leave per session records who removed it and why, other members and other rooms
// are untouched, and the user may join again (the decision is made afresh). Bad requests change
// nothing.
func TestRemoveUser(t *testing.T) {
	ts := startServer(t, serverOpts{grace: time.Hour})
	bob := token(t, "bob", []string{"doc:*"})
	phone, phone2, laptop := connect(t, ts, bob, "phone"), connect(t, ts, bob, "phone"), connect(t, ts, bob, "laptop")
	phone.join("doc:2", nil)
	for _, c := range []*client{phone, phone2, laptop} {
		c.join("doc:1", nil) // live joins: each gets only the joins after its own
	}
	ann := connect(t, ts, token(t, "ann", []string{"doc:*"}), "desk")
	ann.join("doc:1", nil)
	admin := token(t, "ops", nil, func(s *auth.TokenSpec) { s.Admin = true })
	url := ts.url + "/v1/rooms/doc:1/members/bob/remove"

	for _, bad := range []struct {
		tok, url, body string
		status         int
	}{
		{bob, url, `{"reason":"x"}`, 403},
		{admin, url, `{"reason":`, 400},
		{admin, url, `{"reason":"` + strings.Repeat("x", 2000) + `"}`, 400},
		{admin, ts.url + "/v1/rooms/bad%20room/members/bob/remove", `{}`, 400},
	} {
		if status, body := servertest.Request(t, "POST", bad.url, bad.tok, bad.body); status != bad.status {
			t.Errorf("%s %s: %d %s, want %d", bad.url, bad.body, status, body, bad.status)
		}
	}
	status, body := servertest.Request(t, "POST", url, admin, `{"reason":"unshared by the owner"}`)
	if status != 200 {
		t.Fatalf("remove: %d %s", status, body)
	}
	var res struct{ Sessions, Connections int }
	json.Unmarshal([]byte(body), &res)
	if res.Sessions != 2 || res.Connections != 3 {
		t.Errorf("removed %+v, want 2 sessions on 3 connections", res)
	}
	for _, c := range []*client{phone, phone2, laptop} {
		f := c.answer("removed")
		if f.str("room") != "doc:1" || f.str("reason") != "unshared by the owner" {
			t.Errorf("removed frame %v", f)
		}
	}
	// The leaves: one per session, saying who removed it and why.
	evs, err := ts.log.ReadAfter(t.Context(), "doc:1", [16]byte{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	leaves := 0
	for _, e := range evs {
		if e.Kind == "leave" && e.User == "bob" {
			leaves++
			if string(e.Body) != `{"reason":"unshared by the owner","removed_by":"ops"}` {
				t.Errorf("leave body %s", e.Body)
			}
		}
	}
	if leaves != 2 {
		t.Errorf("%d leaves of bob, want 2: %s", leaves, logtest.Trail(t, ts.log, "doc:1"))
	}
	// A later event reaches ann, not bob's connections; bob's other room still works.
	ann.send(frame{"type": "publish", "ref": "p", "room": "doc:1", "key": "k", "body": map[string]any{"after": "removal"}})
	ann.answer("ack")
	phone.send(frame{"type": "publish", "ref": "p2", "room": "doc:2", "key": "k2", "body": 1})
	if f := phone.answer("ack"); f.str("room") != "doc:2" {
		t.Fatalf("publish to the other room: %v", f)
	}
	for _, c := range []*client{phone2, laptop} {
		c.send(frame{"type": "ping", "ref": "ping"})
		if f := c.answer("pong"); f.str("ref") != "ping" {
			t.Fatalf("%v", f)
		}
	}
	// Not a member any more: leaving says so; joining again is allowed.
	laptop.send(frame{"type": "leave", "ref": "l", "room": "doc:1"})
	laptop.expectError("not_joined")
	laptop.join("doc:1", nil)
}

// TestDisconnectUser: every connection of the user is sent bye disconnected and closed; other
// users' connections stay.
func TestDisconnectUser(t *testing.T) {
	ts := startServer(t, serverOpts{})
	bob := token(t, "bob", []string{"doc:*"})
	a, b := connect(t, ts, bob, "phone"), connect(t, ts, bob, "laptop")
	ann := connect(t, ts, token(t, "ann", []string{"doc:*"}), "desk")
	admin := token(t, "ops", nil, func(s *auth.TokenSpec) { s.Admin = true })
	if status, _ := servertest.Request(t, "POST", ts.url+"/v1/users/bob/disconnect", bob, `{}`); status != 403 {
		t.Fatalf("a non-admin disconnect: %d", status)
	}
	status, body := servertest.Request(t, "POST", ts.url+"/v1/users/bob/disconnect", admin, `{"reason":"account suspended"}`)
	if status != 200 || !strings.Contains(body, `"connections":2`) {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	for _, c := range []*client{a, b} {
		f := c.answer("bye")
		if f.str("code") != "disconnected" || f.str("reason") != "account suspended" {
			t.Errorf("bye %v", f)
		}
		if _, err := c.recvErr(5 * time.Second); err == nil {
			t.Errorf("the connection stayed open after bye")
		}
	}
	ann.send(frame{"type": "ping", "ref": "still"})
	ann.answer("pong")
}
