package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/transport"
	"github.com/roomlog/roomlog/wire"
)

func TestHandshake(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{HandshakeTimeout: 500 * time.Millisecond}})
	t.Run("welcome", func(t *testing.T) {
		c, _, err := dial(t, ts, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.ws.Subprotocol() != "" && c.ws.Subprotocol() != wire.SubprotocolJSON {
			t.Fatalf("subprotocol %q", c.ws.Subprotocol())
		}
		w := c.hello(token(t, "alice", nil), "phone-1")
		if w.str("user") != "alice" || w.str("session") != "phone-1" || w.str("conn") == "" ||
			w["heartbeat_ms"] != json.Number("25000") || w["max_frame"] != json.Number("65536") ||
			w["key_retention_ms"] != json.Number("86400000") {
			t.Fatalf("welcome = %v", w)
		}
	})
	t.Run("session defaults to the connection id", func(t *testing.T) {
		c := connect(t, ts, token(t, "alice", nil), "")
		_ = c
	})
	t.Run("first frame not hello", func(t *testing.T) {
		c, _, _ := dial(t, ts, "", nil)
		c.send(frame{"type": "join", "room": "r"})
		code, seen := c.expectClosed()
		if len(seen) != 1 || seen[0].str("type") != "bye" || seen[0].str("code") != "unauthenticated" || code != websocket.ClosePolicyViolation {
			t.Fatalf("got %v and close %d", seen, code)
		}
	})
	t.Run("no hello in time", func(t *testing.T) {
		c, _, _ := dial(t, ts, "", nil)
		f, err := c.recvErr(5 * time.Second)
		if err != nil || f.str("type") != "bye" || f.str("code") != "unauthenticated" || !strings.Contains(f.str("reason"), "no hello within") {
			t.Fatalf("a connection without hello got %v (%v), want bye unauthenticated", f, err)
		}
		if code, _ := c.expectClosed(); code != websocket.ClosePolicyViolation {
			t.Fatalf("then closed with %d", code)
		}
	})
	for _, tc := range []struct{ name, hello, reason string }{
		{"mistyped hello field", `{"type":"hello","token":"x","session":5}`, "session must be a string, not a number"},
		{"hello not an object", `["hello"]`, "expected a JSON object, got an array"},
		{"NUL in session", `{"type":"hello","token":"TOKEN","session":"a\u0000b"}`, "session contains a NUL byte"},
		{"long session", `{"type":"hello","token":"TOKEN","session":"` + strings.Repeat("s", 129) + `"}`, "session is 129 bytes; the limit is 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := dial(t, ts, "", nil)
			c.sendRaw(websocket.TextMessage, []byte(strings.Replace(tc.hello, "TOKEN", token(t, "alice", nil), 1)))
			_, seen := c.expectClosed()
			if len(seen) != 1 || seen[0].str("code") != "unauthenticated" || !strings.Contains(seen[0].str("reason"), tc.reason) {
				t.Fatalf("got %v, want bye unauthenticated saying %q", seen, tc.reason)
			}
		})
	}
	t.Run("oversize first frame", func(t *testing.T) {
		c, _, _ := dial(t, ts, "", nil)
		c.sendRaw(websocket.TextMessage, []byte(`{"type":"hello","token":"`+strings.Repeat("x", 70000)+`"}`))
		code, seen := c.expectClosed()
		if code != websocket.CloseMessageTooBig || len(seen) != 1 || seen[0].str("code") != "frame_too_large" {
			t.Fatalf("close %d after %v", code, seen)
		}
	})
}

func TestAuthRefusals(t *testing.T) {
	ts := startServer(t, serverOpts{})
	expired, _ := auth.NewToken([]byte(servertest.Secret), auth.TokenSpec{Subject: "alice", TTL: -time.Minute})
	wrongKey, _ := auth.NewToken([]byte("another secret"), auth.TokenSpec{Subject: "alice", TTL: time.Hour})
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice"}).SignedString([]byte(servertest.Secret))
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(servertest.Secret))
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(servertest.Secret))
	cases := []struct{ name, token, code string }{
		{"missing", "", "unauthenticated"},
		{"malformed", "not.a.jwt", "unauthenticated"},
		{"expired", expired, "token_expired"},
		{"wrong key", wrongKey, "unauthenticated"},
		{"alg none", none, "unauthenticated"},
		{"no exp", noExp, "unauthenticated"},
		{"no sub", noSub, "unauthenticated"},
		{"unconfigured algorithm", hs512, "unauthenticated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := dial(t, ts, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			c.send(frame{"type": "hello", "token": tc.token})
			_, seen := c.expectClosed()
			if len(seen) != 1 || seen[0].str("type") != "bye" || seen[0].str("code") != tc.code {
				t.Fatalf("got %v, want bye %s", seen, tc.code)
			}
		})
	}
}

func TestOriginCheck(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{AllowedOrigins: []string{"https://app.example"}}})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"", true}, {"https://app.example", true}, {"https://evil.example", false}, {ts.url, true}} {
		hdr := http.Header{}
		if tc.origin != "" {
			hdr.Set("Origin", tc.origin)
		}
		_, resp, err := dial(t, ts, "", hdr)
		if tc.ok && err != nil {
			t.Fatalf("origin %q refused: %v", tc.origin, err)
		}
		if !tc.ok && (err == nil || resp == nil || resp.StatusCode != http.StatusForbidden) {
			t.Fatalf("origin %q: err %v, response %v; want 403", tc.origin, err, resp)
		}
	}
}

func TestJoinPublishReplay(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) {
			ts := startServer(t, serverOpts{})
			tok := token(t, "alice", []string{"doc:*"})
			a, _, err := dial(t, ts, sub, nil)
			if err != nil {
				t.Fatal(err)
			}
			if a.ws.Subprotocol() != sub {
				t.Fatalf("negotiated %q, want %q", a.ws.Subprotocol(), sub)
			}
			a.hello(tok, "a1")
			joined, replayed := a.join("doc:1", nil)
			if len(replayed) != 0 || joined.str("head") == "" || joined.str("ref") != "j-doc:1" {
				t.Fatalf("live join: %v then %d events", joined, len(replayed))
			}
			members, _ := joined["members"].([]any)
			if len(members) != 1 {
				t.Fatalf("members = %v, want alice/a1", joined["members"])
			}

			b := connect(t, ts, token(t, "bob", []string{"doc:*"}), "b1")
			b.join("doc:1", nil)
			// a sees bob's join live.
			if ev := a.expect("event"); ev.str("kind") != "join" || ev.str("user") != "bob" || ev.str("session") != "b1" {
				t.Fatalf("a got %v, want bob's join", ev)
			}
			ack := b.publish("doc:1", map[string]any{"text": "hi"}, frame{"key": "c-17", "kind": "message"})
			if ack.str("type") != "ack" || ack.str("room") != "doc:1" || ack.str("id") == "" {
				t.Fatalf("publish answered %v", ack)
			}
			ev := a.expect("event")
			if ev.str("id") != ack.str("id") || ev.str("user") != "bob" || ev.str("key") != "c-17" || ev.str("kind") != "message" {
				t.Fatalf("a got %v for ack %v", ev, ack)
			}
			body, _ := ev["body"].(map[string]any)
			if body["text"] != "hi" {
				t.Fatalf("body = %v", ev["body"])
			}
			id, _ := eventlog.ParseID(ev.str("id"))
			if ts, _ := time.Parse(time.RFC3339, ev.str("ts")); !ts.Equal(id.Time()) || !strings.HasSuffix(ev.str("ts"), "Z") || len(ev.str("ts")) != 24 {
				t.Fatalf("ts %q does not match the id's time %s", ev.str("ts"), id.Time())
			}
			// Idempotent resend.
			dup := b.publish("doc:1", map[string]any{"text": "hi again"}, frame{"key": "c-17"})
			if dup.str("id") != ack.str("id") || dup["duplicate"] != true {
				t.Fatalf("resend answered %v", dup)
			}

			// A third client replays everything from the start: both joins, then the message,
			// and its own join last (head includes it).
			c := connect(t, ts, token(t, "carol", []string{"doc:*"}), "c1")
			joined, evs := c.join("doc:1", strp(""))
			var kinds []string
			for _, e := range evs {
				kinds = append(kinds, e.str("user")+":"+e.str("kind"))
			}
			if got := strings.Join(kinds, " "); got != "alice:join bob:join bob:message carol:join" {
				t.Fatalf("replay = %s", got)
			}
			if joined.str("head") != evs[len(evs)-1].str("id") {
				t.Fatalf("head %s is not the last replayed event %s", joined.str("head"), evs[len(evs)-1].str("id"))
			}
			// After a cursor: only what follows.
			_, evs = connect(t, ts, token(t, "dave", []string{"doc:*"}), "d1").join("doc:1", strp(ack.str("id")))
			if len(evs) != 2 || evs[0].str("user") != "carol" || evs[1].str("user") != "dave" {
				t.Fatalf("after the message: %v", evs)
			}
		})
	}
}

func TestErrorsChangeNothing(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) { testErrorsChangeNothing(t, sub) })
	}
}

func testErrorsChangeNothing(t *testing.T, subprotocol string) {
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: 5}})
	c, _, err := dial(t, ts, subprotocol, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.hello(token(t, "alice", []string{"doc:*"}, func(s *auth.TokenSpec) { s.ReadRooms = []string{"news"} }), "s")
	c.join("doc:1", nil)
	mt := websocket.TextMessage
	truncated, notAMap := []byte(`{"type":"publish",`), []byte(`[1,2,3]`)
	if c.msgpack {
		mt = websocket.BinaryMessage
		truncated, notAMap = []byte{0x82, 0xa4, 't', 'y', 'p', 'e'}, []byte{0x93, 1, 2, 3}
	}
	head := func(room string) eventlog.Head {
		h, err := ts.log.Head(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := head("doc:1")

	c.sendRaw(mt, truncated)
	c.expectError("bad_frame")
	c.sendRaw(mt, notAMap)
	c.expectError("bad_frame")
	c.send(frame{"type": "teleport", "ref": "1"})
	if e := c.expectError("bad_frame"); e.str("ref") != "1" {
		t.Fatalf("error does not echo ref: %v", e)
	}
	c.send(frame{"ref": "2"})
	c.expectError("bad_frame")
	c.send(frame{"type": "publish", "ref": "3", "room": 42})
	c.expectError("bad_frame")
	c.send(frame{"type": "publish", "ref": "4", "room": "doc 1"})
	c.expectError("bad_room")
	c.send(frame{"type": "publish", "ref": "5", "room": "news", "body": 1})
	c.expectError("forbidden")
	c.send(frame{"type": "join", "ref": "6", "room": "secret"})
	c.expectError("forbidden")
	c.send(frame{"type": "publish", "ref": "7", "room": "doc:1", "kind": "join"})
	c.expectError("bad_frame")
	c.send(frame{"type": "publish", "ref": "8", "room": "doc:1", "kind": "Bad Kind"})
	c.expectError("bad_frame")
	c.send(frame{"type": "publish", "ref": "9", "room": "doc:1", "expect": "garbage"})
	c.expectError("bad_frame")
	c.send(frame{"type": "leave", "ref": "10", "room": "doc:2"})
	c.expectError("not_joined")
	c.send(frame{"type": "presence", "ref": "11", "room": "doc:2", "state": map[string]any{}})
	c.expectError("not_joined")
	c.send(frame{"type": "join", "ref": "12", "room": "doc:2", "after": "not-an-id"})
	c.expectError("bad_frame")
	c.send(frame{"type": "history", "ref": "13", "room": "doc:1", "limit": 0})
	c.expectError("bad_frame")
	c.send(frame{"type": "ack", "room": "doc:1", "id": "nope"})
	c.expectError("bad_frame")
	c.send(frame{"type": "join", "ref": "14", "room": "doc:1"})
	c.expectError("bad_frame") // already joined
	if after := head("doc:1"); after != before {
		t.Fatalf("bad frames changed the room: %+v -> %+v", before, after)
	}
	// Conflict, with the head (once the rate limit's bucket, which the join and the refused
	// publishes above drew on, has refilled).
	time.Sleep(1100 * time.Millisecond)
	e := c.publish("doc:1", 1, frame{"expect": ""})
	if e.str("code") != "conflict" || e.str("head") != before.ID.String() {
		t.Fatalf("expect on a non-empty room: %v", e)
	}
	ok := c.publish("doc:1", 1, frame{"expect": before.ID.String()})
	if ok.str("type") != "ack" {
		t.Fatalf("expect on the head: %v", ok)
	}
	// The connection is still healthy; the rate limit (5/s, burst 5) refuses the excess once the
	// bucket has refilled from the publishes above.
	time.Sleep(1100 * time.Millisecond)
	limited := 0
	for i := range 20 {
		c.send(frame{"type": "publish", "ref": fmt.Sprint("r", i), "room": "doc:9", "body": i})
	}
	acked := 0
	for limited+acked < 20 {
		f := c.recv()
		switch {
		case f.str("type") == "event":
		case f.str("code") == "rate_limited":
			limited++
		case f.str("type") == "ack":
			acked++
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	if limited < 10 || acked == 0 {
		t.Fatalf("%d of 20 rapid publishes were rate limited, want most", limited)
	}
	if h := head("doc:9"); int(h.Count) != acked {
		t.Fatalf("rate-limited publishes appended: %d events, %d acked", h.Count, acked)
	}
	// Oversize frame: error, then close 1009.
	c.sendRaw(mt, []byte(`{"type":"publish","room":"doc:1","body":"`+strings.Repeat("x", 70000)+`"}`))
	code, seen := c.expectClosed()
	if code != websocket.CloseMessageTooBig || len(seen) == 0 || seen[len(seen)-1].str("code") != "frame_too_large" {
		t.Fatalf("oversize frame: close %d after %v", code, seen)
	}
}

func TestPresenceHistoryPing(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) { testPresenceHistoryPing(t, sub) })
	}
}

// connectWith dials with a subprotocol and says hello.
func connectWith(t *testing.T, ts *testServer, subprotocol, tok, session string) *client {
	t.Helper()
	c, _, err := dial(t, ts, subprotocol, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.hello(tok, session)
	return c
}

func testPresenceHistoryPing(t *testing.T, sub string) {
	ts := startServer(t, serverOpts{})
	a := connectWith(t, ts, sub, token(t, "alice", []string{"doc:*"}), "a")
	a.join("doc:1", nil)
	a.send(frame{"type": "presence", "ref": "p", "room": "doc:1", "state": map[string]any{"cursor": 3}})
	var sawOK, sawEvent bool
	for !sawOK || !sawEvent {
		f := a.recv()
		switch {
		case f.str("type") == "ok" && f.str("ref") == "p":
			sawOK = true
		case f.str("type") == "event" && f.str("kind") == "presence":
			sawEvent = true
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	b := connectWith(t, ts, sub, token(t, "bob", []string{"doc:*"}), "b")
	joined, _ := b.join("doc:1", nil)
	members := joined["members"].([]any)
	if len(members) != 2 || fmt.Sprint(members[0].(map[string]any)["presence"].(map[string]any)["cursor"]) != "3" {
		t.Fatalf("members = %v", members)
	}
	var ids []string
	for i := range 25 {
		ids = append(ids, b.publish("doc:1", i, nil).str("id"))
	}
	b.send(frame{"type": "history", "ref": "h", "room": "doc:1", "before": ids[20], "limit": 5})
	h := b.answer("history")
	evs := h["events"].([]any)
	if len(evs) != 5 || evs[4].(map[string]any)["id"] != ids[19] || evs[0].(map[string]any)["id"] != ids[15] {
		t.Fatalf("history page = %v", evs)
	}
	b.send(frame{"type": "history", "ref": "h2", "room": "doc:1"})
	// From the head: alice's join, her presence, bob's join, 25 messages.
	if h := b.answer("history"); len(h["events"].([]any)) != 28 {
		t.Fatalf("history from the head has %d events, want 28", len(h["events"].([]any)))
	}
	b.send(frame{"type": "ping"})
	b.answer("pong")
	b.send(frame{"type": "leave", "ref": "l", "room": "doc:1"})
	if f := b.answer("left"); f.str("ref") != "l" {
		t.Fatalf("left = %v", f)
	}
}

func TestClientAckResumes(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tok := token(t, "alice", []string{"doc:*"})
	c := connect(t, ts, tok, "phone")
	c.join("doc:1", nil)
	var ids []string
	for i := range 10 {
		ids = append(ids, c.publish("doc:1", i, nil).str("id"))
	}
	c.send(frame{"type": "ack", "room": "doc:1", "id": ids[6]})
	// The ack is recorded asynchronously; wait until it is durable.
	want, _ := eventlog.ParseID(ids[6])
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := ts.log.Cursor(context.Background(), "alice", "phone", "doc:1")
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack not recorded: %s", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.ws.Close()
	d := connect(t, ts, tok, "phone")
	joined, evs := d.join("doc:1", nil)
	if joined.str("resumed_from") != ids[6] {
		t.Fatalf("resumed_from = %q, want %s", joined.str("resumed_from"), ids[6])
	}
	if len(evs) < 3 || evs[0].str("id") != ids[7] || evs[2].str("id") != ids[9] {
		t.Fatalf("resume delivered %d events starting %v", len(evs), evs)
	}
	// A cursor that is not in the room is answered with unknown_cursor and the events after it.
	e := connect(t, ts, tok, "tablet")
	unknown := eventlog.MinIDAt(time.Now().Add(-time.Hour)).String()
	joined, evs = e.join("doc:1", &unknown)
	if joined["unknown_cursor"] != true || len(evs) < 10 {
		t.Fatalf("unknown cursor: %v with %d events", joined, len(evs))
	}
}

// TestCursorPastTheHead: a cursor from the future (a restored or replaced data file) must not
// mute a session: the join is answered unknown_cursor and then gets every event after the head,
// live included; an ack past the head is refused and not recorded.
func TestCursorPastTheHead(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tok := token(t, "alice", []string{"doc:*"})
	c := connect(t, ts, tok, "phone")
	c.join("doc:1", nil)
	c.publish("doc:1", "old", nil)
	future := eventlog.MinIDAt(time.Now().Add(24 * time.Hour)).String()

	c.send(frame{"type": "ack", "ref": "a", "room": "doc:1", "id": future})
	if e := c.answer("error"); e.str("code") != "bad_frame" || !strings.Contains(e.str("message"), "past the head") {
		t.Fatalf("ack past the head: %v", e)
	}
	if got, _ := ts.log.Cursor(context.Background(), "alice", "phone", "doc:1"); !got.IsZero() {
		t.Fatalf("an ack past the head was recorded: %s", got)
	}

	d := connect(t, ts, tok, "tablet")
	joined, evs := d.join("doc:1", &future)
	if joined["unknown_cursor"] != true || len(evs) != 0 {
		t.Fatalf("join after a future cursor: %v, %d events", joined, len(evs))
	}
	live := c.publish("doc:1", "new", nil).str("id")
	if ev := d.expect("event"); ev.str("id") != live {
		t.Fatalf("after a future cursor the live event %s was not delivered: %v", live, ev)
	}
}

// TestAnswersInFrameOrder: frames sent back to back are each answered, in the order sent, even
// when a leave follows its join before the server has written anything.
func TestAnswersInFrameOrder(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "s")
	c.publish("doc:o", "x", nil)
	for round := range 20 {
		c.send(frame{"type": "join", "ref": fmt.Sprint("j", round), "room": "doc:o", "after": ""})
		c.send(frame{"type": "leave", "ref": fmt.Sprint("l", round), "room": "doc:o"})
		c.send(frame{"type": "ping", "ref": fmt.Sprint("p", round)})
		var refs []string
		for len(refs) < 3 {
			f := c.recv()
			switch f.str("type") {
			case "event", "synced":
				continue
			}
			refs = append(refs, f.str("type")+":"+f.str("ref"))
		}
		want := fmt.Sprintf("[joined:j%d left:l%d pong:p%d]", round, round, round)
		if fmt.Sprint(refs) != want {
			t.Fatalf("round %d: answers %v, want %s", round, refs, want)
		}
	}
}

// TestHistoryIsBoundedInBytes: a history page never exceeds max_frame (by more than one event's
// envelope); it says more, and paging on with before yields every event once, in order.
func TestHistoryIsBoundedInBytes(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) {
			ts := startServer(t, serverOpts{})
			c := connectWith(t, ts, sub, token(t, "alice", []string{"doc:*"}), "s")
			var want []string
			for i := range 12 {
				want = append(want, c.publish("doc:h", strings.Repeat(fmt.Sprint(i%10), 20000), nil).str("id"))
			}
			var got []string
			before := ""
			for pages := 0; ; pages++ {
				if pages > 12 {
					t.Fatalf("history never ended: %d events so far", len(got))
				}
				c.send(frame{"type": "history", "ref": "h", "room": "doc:h", "before": before, "limit": 1000})
				raw, h := c.recvRaw()
				if h.str("type") != "history" {
					t.Fatalf("got %v", h)
				}
				if len(raw) > 65536+1024 {
					t.Fatalf("a history frame of %d bytes (max_frame 65536)", len(raw))
				}
				evs, _ := h["events"].([]any)
				if len(evs) == 0 {
					t.Fatalf("an empty page with more=%v", h["more"])
				}
				var page []string
				for _, e := range evs {
					page = append(page, fmt.Sprint(e.(map[string]any)["id"]))
				}
				got = append(page, got...)
				if h["more"] != true {
					break
				}
				before = page[0]
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("paged history:\n%v\nwant\n%v", got, want)
			}
			c.send(frame{"type": "history", "ref": "s", "room": "doc:h", "limit": 1})
			if h := c.answer("history"); h["more"] != true || len(h["events"].([]any)) != 1 {
				t.Fatalf("a page cut by its limit: %v", h["more"])
			}
		})
	}
}

// TestPresenceIsBounded: presence is a write to the log that read-only members may make, so it
// is bounded in size and counted against the connection's rate limit.
func TestPresenceIsBounded(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: 5}})
	reader := token(t, "ro", nil, func(s *auth.TokenSpec) { s.ReadRooms = []string{"doc:*"} })
	c := connect(t, ts, reader, "s")
	big := strings.Repeat("x", transport.MaxPresence)
	c.send(frame{"type": "join", "ref": "j", "room": "doc:p", "presence": map[string]string{"name": big}})
	if e := c.expectError("bad_frame"); !strings.Contains(e.str("message"), "the limit is 4096") {
		t.Fatalf("oversize presence at join: %v", e)
	}
	c.join("doc:p", nil)
	c.send(frame{"type": "presence", "ref": "p", "room": "doc:p", "state": map[string]string{"name": big}})
	c.expectError("bad_frame")
	for i := range 20 {
		c.send(frame{"type": "presence", "ref": fmt.Sprint("p", i), "room": "doc:p", "state": map[string]int{"cursor": i}})
	}
	answers := map[string]int{}
	for range 20 {
		f := c.recv()
		for f.str("type") == "event" {
			f = c.recv()
		}
		answers[f.str("type")+" "+f.str("code")]++
	}
	if answers["error rate_limited"] == 0 || answers["ok "] == 0 || answers["ok "]+answers["error rate_limited"] != 20 {
		t.Fatalf("20 presence updates at 5/s were answered %v", answers)
	}
	h, _ := ts.log.Head(context.Background(), "doc:p")
	if h.Count != uint64(1+answers["ok "]) { // the join, and each accepted update
		t.Fatalf("the room holds %d events after %v", h.Count, answers)
	}
}

func TestRefresh(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) { testRefresh(t, sub) })
	}
}

func testRefresh(t *testing.T, sub string) {
	ts := startServer(t, serverOpts{})
	c := connectWith(t, ts, sub, token(t, "alice", []string{"doc:*", "chat"}), "s")
	c.join("chat", nil)
	c.send(frame{"type": "refresh", "ref": "1", "token": token(t, "bob", []string{"doc:*"})})
	c.expectError("forbidden")
	c.send(frame{"type": "refresh", "ref": "2", "token": "garbage"})
	if e := c.expectError("forbidden"); strings.Count(e.str("message"), "token refused") != 1 {
		t.Fatalf("refresh refusal says %q", e.str("message"))
	}
	c.send(frame{"type": "refresh", "ref": "3", "token": token(t, "alice", []string{"doc:*"})})
	if f := c.expect("left"); f.str("room") != "chat" {
		t.Fatalf("a room the new token does not allow was not left: %v", f)
	}
	if f := c.expect("ok"); f.str("ref") != "3" {
		t.Fatalf("refresh answered %v", f)
	}
	c.send(frame{"type": "publish", "ref": "4", "room": "chat", "body": 1})
	c.expectError("forbidden")
}

func TestTokenExpiryClosesWithBye(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tok, _ := auth.NewToken([]byte(servertest.Secret), auth.TokenSpec{Subject: "alice", TTL: 1500 * time.Millisecond})
	v, _ := auth.NewVerifier(auth.Config{Secret: []byte(servertest.Secret), Leeway: -1})
	_ = v
	c := connect(t, ts, tok, "s")
	code, seen := c.expectClosed()
	if len(seen) != 1 || seen[0].str("code") != "token_expired" || code != websocket.ClosePolicyViolation {
		t.Fatalf("at expiry got %v and close %d", seen, code)
	}
}

func TestShutdownSaysBye(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "s")
	c.join("doc:1", nil)
	go ts.stop()
	code, seen := c.expectClosed()
	if len(seen) == 0 || seen[len(seen)-1].str("code") != "shutdown" || seen[len(seen)-1]["reconnect_ms"] != json.Number("1000") || code != websocket.CloseGoingAway {
		t.Fatalf("shutdown: close %d after %v", code, seen)
	}
}

// TestShutdownTwiceLeavesOtherServersAlone: a server shut down a second time, after another
// server has taken the file numbers its poller had, touches nothing of that other server. Before
// the poller held its descriptors as files, the second Shutdown wrote to and closed whatever had
// taken its old eventfd's number: another server's data file, listener or connection. In the
// client tests (a server shut down from the test and from its cleanup) that reset the next test's
// connections, and their outboxes resent publishes already appended: item 11 of issue 10, the
// publish acked as a duplicate.
func TestShutdownTwiceLeavesOtherServersAlone(t *testing.T) {
	tok := token(t, "alice", []string{"doc:*"})
	a := startServer(t, serverOpts{})
	first := connect(t, a, tok, "a") // the first connection starts a's poller
	first.join("doc:1", nil)
	first.ws.Close()
	a.stop()

	b := startServer(t, serverOpts{})
	clients := make([]*client, 8) // with their sockets, on the lowest free numbers: a's among them
	for i := range clients {
		clients[i] = connect(t, b, tok, fmt.Sprint("b", i))
		clients[i].join("doc:1", nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	for i, c := range clients {
		if ack := c.publish("doc:1", i, nil); ack.str("type") != "ack" {
			t.Fatalf("client %d: publish answered %v", i, ack)
		}
	}
	late := connect(t, b, tok, "late")
	if joined, _ := late.join("doc:1", nil); len(joined["members"].([]any)) != len(clients)+1 {
		t.Fatalf("late joiner sees members %v", joined["members"])
	}
}

// TestLargeEventFrames: events near the size limit travel in frames with 16- and 64-bit lengths,
// live and replayed.
func TestLargeEventFrames(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{MaxFrame: 200000}})
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "s")
	c.join("doc:big", nil)
	sizes := []int{100, 1000, 65400, 120000}
	for _, n := range sizes {
		if a := c.publish("doc:big", strings.Repeat("z", n), nil); a.str("type") != "ack" {
			t.Fatalf("publish of %d bytes: %v", n, a)
		}
	}
	_, evs := connect(t, ts, token(t, "bob", []string{"doc:*"}), "b").join("doc:big", strp(""))
	var got []int
	for _, e := range evs {
		if s, ok := e["body"].(string); ok {
			got = append(got, len(s))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(sizes) {
		t.Fatalf("replayed bodies of %v bytes, want %v", got, sizes)
	}
}

// TestHeartbeat: the server pings; a client that answers (gorilla answers while it reads) stays,
// one that does not is closed after two intervals.
func TestHeartbeat(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{Heartbeat: 200 * time.Millisecond}})
	tok := token(t, "alice", []string{"doc:*"})
	alive := connect(t, ts, tok, "alive")
	pings := 0
	alive.ws.SetPingHandler(func(data string) error {
		pings++
		return alive.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	// Keep reading (app-level pings give it something to read) for over five intervals.
	for range 6 {
		time.Sleep(200 * time.Millisecond)
		alive.send(frame{"type": "ping"})
		alive.answer("pong")
	}
	if pings < 3 {
		t.Fatalf("%d server pings in 1.2s at a 200ms heartbeat", pings)
	}

	silent := connect(t, ts, tok, "silent")
	silent.ws.SetPingHandler(func(string) error { return nil }) // never answers
	start := time.Now()
	for {
		if _, err := silent.recvErr(5 * time.Second); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a client that answers no ping stayed %s", d)
	}
}

// TestForbiddenRoomStaysSilent: after a refused join, nothing of the room reaches the client.
func TestForbiddenRoomStaysSilent(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := connect(t, ts, token(t, "mallory", []string{"public"}), "m")
	c.send(frame{"type": "join", "ref": "1", "room": "secret", "after": ""})
	c.expectError("forbidden")
	c.send(frame{"type": "history", "ref": "2", "room": "secret"})
	c.expectError("forbidden")
	owner := connect(t, ts, token(t, "owner", []string{"secret"}), "o")
	owner.join("secret", nil)
	for i := range 5 {
		owner.publish("secret", i, nil)
	}
	c.send(frame{"type": "ping"})
	if f := c.recv(); f.str("type") != "pong" {
		t.Fatalf("after a refused join the client got %v", f)
	}
}

// TestSequentialRequestsNeverStall: request, wait for the answer, repeat, thousands of times on
// several connections at once. Every answer must come: a frame queued just as the connection's
// handler goes idle must still be handled.
func TestSequentialRequestsNeverStall(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit}})
	tok := token(t, "alice", []string{"doc:*"})
	var wg sync.WaitGroup
	for w := range 4 {
		c := connect(t, ts, tok, fmt.Sprint("s", w))
		wg.Go(func() {
			for i := range 2500 {
				if i%10 == 0 {
					c.send(frame{"type": "publish", "ref": fmt.Sprint(i), "room": "doc:stall", "body": i})
				} else {
					c.send(frame{"type": "ping", "ref": fmt.Sprint(i)})
				}
				f, err := c.recvErr(10 * time.Second)
				if err != nil {
					t.Errorf("connection %d, request %d: no answer: %v", w, i, err)
					return
				}
				if f.str("ref") != fmt.Sprint(i) {
					t.Errorf("connection %d, request %d: answered %v", w, i, f)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestInternalError: when the log fails (here: closed under the server), requests get error code
// internal and the connection stays usable.
func TestInternalError(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) {
			ts := startServer(t, serverOpts{})
			c := connectWith(t, ts, sub, token(t, "alice", []string{"doc:*"}), "s")
			if err := ts.log.Close(); err != nil {
				t.Fatal(err)
			}
			c.send(frame{"type": "publish", "ref": "1", "room": "doc:1", "body": 1})
			if e := c.expectError("internal"); e.str("ref") != "1" {
				t.Fatalf("internal error without ref: %v", e)
			}
			c.send(frame{"type": "history", "ref": "2", "room": "doc:1"})
			c.expectError("internal")
			c.send(frame{"type": "ping", "ref": "3"})
			c.expect("pong")
		})
	}
}
