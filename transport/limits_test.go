package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/transport"
)

// roomEvents counts the events of room in the log.
func roomEvents(t *testing.T, ts *testServer, room string) int {
	t.Helper()
	evs, err := ts.log.ReadAfter(context.Background(), room, eventlog.ID{}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestReadersWritesAreBounded: a token with no grants at all (its personal room, read-only)
// joins and leaves, and sets presence, as fast as it can. Every join, leave and presence update
// appends an event, so they count against the connection's write rate: the burst past it is
// refused with rate_limited and appends nothing, and the log grows no faster than a writer's
// publishes could make it.
func TestReadersWritesAreBounded(t *testing.T) {
	const perSecond = 20
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: perSecond}})
	c := connect(t, ts, token(t, "nobody", nil), "s")
	room := "user:nobody"
	start := time.Now()
	limited, done := 0, 0
	for i := range 300 {
		typ := "join"
		switch i % 3 {
		case 1:
			typ = "presence"
		case 2:
			typ = "leave"
		}
		c.send(frame{"type": typ, "ref": fmt.Sprint(i), "room": room, "state": map[string]any{"pad": strings.Repeat("x", 4000)}})
		for {
			f := c.recv()
			if f.str("type") == "event" || f.str("type") == "synced" || (f.str("type") == "error" && f.str("ref") != fmt.Sprint(i)) {
				continue
			}
			if f.str("code") == "rate_limited" {
				limited++
			} else {
				done++
			}
			break
		}
	}
	elapsed := time.Since(start)
	appended := roomEvents(t, ts, room)
	bound := perSecond + int(elapsed.Seconds()*perSecond) + 1
	if limited == 0 || appended > bound {
		t.Fatalf("300 joins, presence updates and leaves in %v: %d refused as rate_limited, %d events appended (bound %d)", elapsed, limited, appended, bound)
	}
	t.Logf("300 writes by a reader in %v: %d refused, %d appended", elapsed.Round(time.Millisecond), limited, appended)
}

// TestRoomsPerConnectionAreBounded: a connection joins at most MaxRoomsPerConn rooms; the next
// join is limit_exceeded and appends nothing; leaving one frees its place.
func TestRoomsPerConnectionAreBounded(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{MaxRoomsPerConn: 5, PublishRate: transport.NoRateLimit}})
	c := connect(t, ts, token(t, "ro", nil, func(s *auth.TokenSpec) { s.ReadRooms = []string{"r:*"} }), "s")
	for i := range 5 {
		c.join(fmt.Sprint("r:", i), nil)
	}
	c.send(frame{"type": "join", "ref": "6", "room": "r:5"})
	if f := c.expect("error"); f.str("code") != "limit_exceeded" {
		t.Fatalf("the sixth join: %v", f)
	}
	if n := roomEvents(t, ts, "r:5"); n != 0 {
		t.Fatalf("a refused join appended %d events", n)
	}
	c.send(frame{"type": "leave", "ref": "l", "room": "r:0"})
	c.expect("left")
	c.join("r:5", nil)
}

// TestConnectionsPerUserAreBounded: a user holds at most MaxConnsPerUser connections; the next
// hello is told bye too_many_connections; a connection that goes gives its place back, and other
// users are not affected.
func TestConnectionsPerUserAreBounded(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{MaxConnsPerUser: 3}})
	tok := token(t, "many", []string{"*"})
	var held []*client
	for i := range 3 {
		held = append(held, connect(t, ts, tok, fmt.Sprint("s", i)))
	}
	extra, _, err := dial(t, ts, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	extra.send(frame{"type": "hello", "token": tok, "session": "s3"})
	if f := extra.expect("bye"); f.str("code") != "too_many_connections" {
		t.Fatalf("the fourth connection: %v", f)
	}
	connect(t, ts, token(t, "other", []string{"*"}), "o") // another user is welcome
	held[0].ws.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, _, err := dial(t, ts, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		c.send(frame{"type": "hello", "token": tok, "session": "again"})
		f := c.recv()
		if f.str("type") == "welcome" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection never gave its place back: %v", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestJoinedListsBoundedMembers: the members of a joined frame are bounded in count
// (MaxMembersListed, then members_truncated with member_count) and in bytes, however many members
// with large presence states a room has.
func TestJoinedListsBoundedMembers(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{MaxMembersListed: 5, PublishRate: transport.NoRateLimit, MaxConnsPerUser: transport.NoLimit}})
	tok := token(t, "crowd", []string{"*"})
	for i := range 8 {
		c := connect(t, ts, tok, fmt.Sprint("m", i))
		c.send(frame{"type": "join", "ref": "j", "room": "small", "presence": map[string]any{"i": i}})
		c.expect("joined")
	}
	joined, _ := connect(t, ts, tok, "newcomer").join("small", nil)
	members, _ := joined["members"].([]any)
	count, _ := joined["member_count"].(json.Number).Int64()
	if len(members) != 5 || joined["members_truncated"] != true || count != 9 {
		t.Fatalf("joined of a room of 9: %d members listed, truncated %v, count %v", len(members), joined["members_truncated"], joined["member_count"])
	}

	// 120 members with 4 KiB of presence each, with the default count bound: the byte bound
	// keeps the newcomer's frame small.
	ts = startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit, MaxConnsPerUser: transport.NoLimit}})
	pad := strings.Repeat("p", transport.MaxPresence-20)
	for i := range 120 {
		c := connect(t, ts, tok, fmt.Sprint("big", i))
		c.send(frame{"type": "join", "ref": "j", "room": "big", "presence": map[string]any{"pad": pad}})
		c.expect("joined")
	}
	nc := connect(t, ts, tok, "newcomer-big")
	nc.send(frame{"type": "join", "ref": "j", "room": "big"})
	raw, f := nc.recvRaw()
	if f.str("type") != "joined" || f["members_truncated"] != true || len(raw) > 300<<10 {
		t.Fatalf("joined of a room of 121 with 4 KiB presence: %d bytes, truncated %v", len(raw), f["members_truncated"])
	}
	t.Logf("joined frame of a room of 121 members with 4 KiB presence each: %d bytes", len(raw))
}

// TestHTTPPagesAndPublishesAreBounded: a page of GET /v1/rooms/{room}/events is bounded in bytes
// (more: true), and paging on with after reads every event once; HTTP publishes count against a
// rate per token, which other tokens do not share.
func TestHTTPPagesAndPublishesAreBounded(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: 5, MaxFrame: 64 << 10}})
	svc := token(t, "svc", []string{"doc:*"})
	big := strings.Repeat("b", 30000)
	var ids []string
	for i := 0; len(ids) < 12; i++ {
		code, body := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:big/events", svc, fmt.Sprintf(`{"body":{"i":%d,"pad":%q}}`, i, big))
		switch code {
		case 201:
			var e struct{ ID string }
			json.Unmarshal([]byte(body), &e)
			ids = append(ids, e.ID)
		case 429:
			if !strings.Contains(body, "rate_limited") {
				t.Fatalf("429 without rate_limited: %s", body)
			}
			if i > 200 {
				t.Fatalf("the rate limit never let publishes through")
			}
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	// A burst with one token is refused past the rate; another token has a bucket of its own.
	limited := 0
	for range 20 {
		if code, _ := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:small/events", svc, `{"body":1}`); code == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatalf("20 HTTP publishes at once with one token: none refused")
	}
	if code, body := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:small/events", token(t, "svc2", []string{"doc:*"}), `{"body":1}`); code != 201 {
		t.Fatalf("another token's publish: %d %s", code, body)
	}

	after, largest := "", 0
	var got []string
	for pages := 0; ; pages++ {
		code, body := servertest.Request(t, "GET", ts.url+"/v1/rooms/doc:big/events?limit=1000&after="+after, svc, "")
		var page struct {
			Events []struct{ ID string }
			More   bool
		}
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil || pages > 20 {
			t.Fatalf("page %d: %d %.200s", pages, code, body)
		}
		largest = max(largest, len(body))
		for _, e := range page.Events {
			got = append(got, e.ID)
		}
		if !page.More {
			break
		}
		after = page.Events[len(page.Events)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) || largest > 64<<10+40000 {
		t.Fatalf("paged %d events (want %d), largest page %d bytes", len(got), len(ids), largest)
	}
}
