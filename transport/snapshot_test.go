package transport_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/servertest"
)

// publishSnapshot publishes a snapshot of room covering its head, and returns the ack.
func (c *client) publishSnapshot(room, head, state string) frame {
	c.t.Helper()
	return c.publish(room, map[string]any{"covers": head, "state": state}, frame{"kind": "snapshot", "expect": head})
}

// eventIDs lists the ids of event frames, leaving out joins and leaves (each joiner's own join
// is in its replay).
func eventIDs(evs []frame) []string {
	var out []string
	for _, e := range evs {
		if k := e.str("kind"); k != "join" && k != "leave" {
			out = append(out, e.str("id"))
		}
	}
	return out
}

// snapshotWriter lets a token publish snapshots to the rooms it may write.
func snapshotWriter(s *auth.TokenSpec) { s.SnapshotRooms = s.Rooms }

func TestJoinFromSnapshotUnderConcurrentAppends(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tok := token(t, "alice", []string{"doc:*"}, snapshotWriter)
	w := connect(t, ts, tok, "writer")
	var head string
	for i := range 5 {
		head = w.publish("doc:s", i, nil).str("id")
	}
	if f := w.publish("doc:s", map[string]any{"covers": head}, frame{"kind": "snapshot"}); f.str("code") != "bad_frame" {
		t.Fatalf("a snapshot without expect: %v", f)
	}
	if f := w.publish("doc:s", map[string]any{"state": 1}, frame{"kind": "snapshot", "expect": head}); f.str("code") != "bad_frame" {
		t.Fatalf("a snapshot naming nothing: %v", f)
	}
	snap := w.publishSnapshot("doc:s", head, "five numbers")
	if snap.str("type") != "ack" {
		t.Fatalf("snapshot: %v", snap)
	}
	if f := w.publishSnapshot("doc:s", head, "stale"); f.str("code") != "conflict" {
		t.Fatalf("a snapshot of a head that moved on: %v", f)
	}

	// While another session appends, joiners from the snapshot get it, then exactly the rest.
	other := connect(t, ts, tok, "other")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			other.publish("doc:s", fmt.Sprint("more ", i), nil)
		}
	}()
	for j := range 5 {
		r := connect(t, ts, token(t, "reader", nil, func(s *auth.TokenSpec) { s.ReadRooms = []string{"doc:*"} }), fmt.Sprint("r", j))
		r.send(frame{"type": "join", "ref": "j", "room": "doc:s", "from": "snapshot"})
		joined := r.expect("joined")
		if joined.str("snapshot") != snap.str("id") {
			t.Fatalf("joined %v, want snapshot %s", joined, snap.str("id"))
		}
		var got []frame
		for {
			f := r.recv()
			if f.str("type") == "synced" {
				break
			}
			got = append(got, f)
		}
		if got[0].str("id") != snap.str("id") || got[0].str("kind") != "snapshot" {
			t.Fatalf("the replay starts with %v, want the snapshot", got[0])
		}
		want, err := ts.log.ReadAfter(t.Context(), "doc:s", mustID(t, snap.str("id")), 10000)
		if err != nil {
			t.Fatal(err)
		}
		// Up to synced the replay is the log after the snapshot, in order; what is left comes live.
		for i, e := range got[1:] {
			if e.str("id") != want[i].ID.String() {
				t.Fatalf("joiner %d: event %d is %s, want %s: a gap or a duplicate", j, i, e.str("id"), want[i].ID)
			}
		}
	}
	wg.Wait()

	// history asks for the latest snapshot, and so does the HTTP API.
	w.send(frame{"type": "history", "ref": "h", "room": "doc:s", "snapshot": true})
	if h := w.answer("history"); len(h["events"].([]any)) != 1 || h["events"].([]any)[0].(map[string]any)["id"] != snap.str("id") {
		t.Fatalf("history of the latest snapshot: %v", h)
	}
	w.send(frame{"type": "history", "ref": "h", "room": "doc:none", "snapshot": true})
	if h := w.answer("history"); len(h["events"].([]any)) != 0 {
		t.Fatalf("history of a room without a snapshot: %v", h)
	}
	if code, body := servertest.Request(t, "GET", ts.url+"/v1/rooms/doc:s/snapshot", tok, ""); code != 200 || !strings.Contains(body, snap.str("id")) {
		t.Fatalf("GET snapshot: %d %s", code, body)
	}
	if code, body := servertest.Request(t, "GET", ts.url+"/v1/rooms/doc:none/snapshot", tok, ""); code != 404 || !strings.Contains(body, "not_found") {
		t.Fatalf("GET snapshot of a room without one: %d %s", code, body)
	}
	for _, bad := range []frame{{"from": "start"}, {"from": "snapshot", "after": ""}} {
		f := frame{"type": "join", "ref": "b", "room": "doc:t"}
		for k, v := range bad {
			f[k] = v
		}
		w.send(f)
		w.expectError("bad_frame")
	}
	// A room with no snapshot is joined from its start.
	w.publish("doc:plain", "first", nil)
	w.send(frame{"type": "join", "ref": "p", "room": "doc:plain", "from": "snapshot"})
	if joined := w.expect("joined"); joined.str("snapshot") != "" {
		t.Fatalf("joined %v", joined)
	}
	if f := w.recv(); f.str("type") != "event" || f["body"] != "first" {
		t.Fatalf("a room without snapshot from its start: %v", f)
	}
}

func mustID(t *testing.T, s string) eventlog.ID {
	t.Helper()
	id, err := eventlog.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCompactionWhileJoinedAndResuming(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tok := token(t, "alice", []string{"doc:*"}, snapshotWriter)
	admin := token(t, "ops", nil, func(s *auth.TokenSpec) { s.Admin = true })
	w := connect(t, ts, tok, "writer")
	var early []string
	for i := range 20 {
		early = append(early, w.publish("doc:c", i, nil).str("id"))
	}
	member := connect(t, ts, tok, "member")
	member.join("doc:c", strp(""))
	if code, body := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:c/compact", admin, ""); code != 409 || !strings.Contains(body, "conflict") {
		t.Fatalf("compact without a snapshot: %d %s", code, body)
	}
	if code, _ := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:c/compact", tok, ""); code != 403 {
		t.Fatalf("compact without an admin token: %d", code)
	}
	head, _ := ts.log.Head(t.Context(), "doc:c")
	snap := w.publishSnapshot("doc:c", head.ID.String(), "twenty").str("id")
	late := w.publish("doc:c", "after the snapshot", nil).str("id")

	code, body := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:c/compact", admin, "")
	var res struct {
		Snapshot, Floor, Record string
		SnapshotBy              string `json:"snapshot_by"`
		Removed                 int
	}
	json.Unmarshal([]byte(body), &res)
	if code != 200 || res.Snapshot != snap || res.SnapshotBy != "alice" || res.Floor != head.ID.String() || res.Removed == 0 || res.Record == "" {
		t.Fatalf("compact: %d %s", code, body)
	}
	// The joined member goes on: the snapshot, the later event and the compaction record, live.
	var live []string
	for len(live) < 3 {
		if f := member.recv(); f.str("type") == "event" {
			live = append(live, f.str("kind"))
		}
	}
	if fmt.Sprint(live) != "[snapshot message compaction]" {
		t.Fatalf("live after the compaction: %v", live)
	}

	// A cursor the compaction left behind: cursor_too_old, and the replay starts at the snapshot.
	for _, cursor := range []string{early[3], ""} {
		r := connect(t, ts, tok, "resumer-"+cursor)
		joined, evs := r.join("doc:c", strp(cursor))
		if joined["cursor_too_old"] != true || joined.str("snapshot") != snap || joined["unknown_cursor"] == true {
			t.Fatalf("join after %q: %v", cursor, joined)
		}
		if ids := eventIDs(evs); len(ids) != 3 || ids[0] != snap || ids[1] != late || ids[2] != res.Record {
			t.Fatalf("join after %q replays %v, want the snapshot, %s and the record", cursor, ids, late)
		}
	}
	// The floor's own id is no gap: what follows it is all there.
	r := connect(t, ts, tok, "at-floor")
	joined, evs := r.join("doc:c", strp(head.ID.String()))
	if joined["cursor_too_old"] == true || joined["unknown_cursor"] == true || len(eventIDs(evs)) != 3 {
		t.Fatalf("join after the floor: %v, %d events", joined, len(evs))
	}
	// A cursor after the floor resumes exactly.
	joined, evs = connect(t, ts, tok, "later").join("doc:c", strp(late))
	if ids := eventIDs(evs); joined["cursor_too_old"] == true || len(ids) != 1 || ids[0] != res.Record {
		t.Fatalf("join after %s: %v %v", late, joined, evs)
	}
	// And the chain verifies from the floor (the 20 messages and the member's join were removed).
	if code, body := servertest.Request(t, "GET", ts.url+"/v1/verify?room=doc:c", admin, ""); code != 200 || strings.Contains(body, "broken") || !strings.Contains(body, `"compacted":21`) {
		t.Fatalf("verify after compaction: %d %s", code, body)
	}
}

// TestSnapshotsNeedTrust: a writer without the snapshot_rooms claim cannot publish a snapshot,
// over the WebSocket or HTTP, so it cannot steer what compaction removes nor what a join from a
// snapshot loads: the refusal appends nothing, compaction finds no snapshot, and a join from a
// snapshot starts at the room's first event. A trusted writer's snapshot is used, and the
// compaction names its author, in its answer and in its record.
func TestSnapshotsNeedTrust(t *testing.T) {
	ts := startServer(t, serverOpts{})
	writer := token(t, "mallory", []string{"doc:*"})
	trusted := token(t, "editor", []string{"doc:*"}, snapshotWriter)
	elsewhere := token(t, "other", []string{"doc:*"}, func(s *auth.TokenSpec) { s.SnapshotRooms = []string{"notes:*"} })
	admin := token(t, "ops", nil, func(s *auth.TokenSpec) { s.Admin = true })
	w := connect(t, ts, writer, "w")
	var edits []string
	for i := range 3 {
		edits = append(edits, w.publish("doc:t", i, nil).str("id"))
	}
	head := edits[2]
	for name, c := range map[string]*client{"writer": w, "snapshots elsewhere": connect(t, ts, elsewhere, "o")} {
		if f := c.publishSnapshot("doc:t", head, ""); f.str("type") != "error" || f.str("code") != "forbidden" || !strings.Contains(f.str("message"), "snapshot_rooms") {
			t.Fatalf("%s: a snapshot without the claim: %v", name, f)
		}
	}
	body := `{"kind":"snapshot","expect":"` + head + `","body":{"covers":"` + head + `","state":""}}`
	if code, resp := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:t/events", writer, body); code != 403 || !strings.Contains(resp, "forbidden") {
		t.Fatalf("HTTP snapshot without the claim: %d %s", code, resp)
	}
	if h, _ := ts.log.Head(t.Context(), "doc:t"); h.ID.String() != head {
		t.Fatalf("a refused snapshot moved the head to %s", h.ID)
	}
	if code, resp := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:t/compact", admin, ""); code != 409 {
		t.Fatalf("compaction after refused snapshots: %d %s", code, resp)
	}
	joined, evs := connect(t, ts, writer, "j").joinFrame(frame{"type": "join", "ref": "j", "room": "doc:t", "from": "snapshot"})
	if ids := eventIDs(evs); joined.str("snapshot") != "" || len(ids) != 3 || ids[0] != edits[0] {
		t.Fatalf("a join from a snapshot with none trusted: %v, events %v", joined, ids)
	}

	now, _ := ts.log.Head(t.Context(), "doc:t") // the join above appended its join event
	snapAck := connect(t, ts, trusted, "t").publishSnapshot("doc:t", now.ID.String(), "three")
	snap := snapAck.str("id")
	if snapAck.str("type") != "ack" {
		t.Fatalf("the trusted writer's snapshot: %v", snapAck)
	}
	code, resp := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:t/compact", admin, "")
	var res struct {
		SnapshotBy string `json:"snapshot_by"`
		Record     string
	}
	json.Unmarshal([]byte(resp), &res)
	if code != 200 || res.SnapshotBy != "editor" {
		t.Fatalf("compaction: %d %s", code, resp)
	}
	_, page := servertest.Request(t, "GET", ts.url+"/v1/rooms/doc:t/events?after="+snap, admin, "")
	if !strings.Contains(page, `"snapshot_by":"editor"`) {
		t.Fatalf("the compaction record does not name the snapshot's author: %s", page)
	}
}
