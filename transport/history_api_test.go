package transport_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/transport"
)

// historyPage is GET /v1/rooms/{room}/events's answer.
type historyPage struct {
	Events []struct {
		ID, Kind string
	}
	More         bool
	CursorTooOld bool `json:"cursor_too_old"`
	Floor        string
}

func (p historyPage) ids() []string {
	var out []string
	for _, e := range p.Events {
		out = append(out, e.ID)
	}
	return out
}

// TestRoomHistoryAPI: a room's readers page through a range of its events, and find the
// snapshot a version at any event is built from; bad ranges and ids are refused in one line,
// and a compacted stretch says what it is.
func TestRoomHistoryAPI(t *testing.T) {
	ts := startServer(t, serverOpts{})
	writer := token(t, "editor", []string{"doc:*"}, func(s *auth.TokenSpec) { s.SnapshotRooms = []string{"doc:*"} })
	reader := token(t, "reader", nil, func(s *auth.TokenSpec) { s.ReadRooms = []string{"doc:*"} })
	stranger := token(t, "stranger", []string{"chat:*"})
	admin := token(t, "ops", nil, func(s *auth.TokenSpec) { s.Admin = true })
	publish := func(body string) string {
		t.Helper()
		status, resp := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:h/events", writer, body)
		var e struct{ ID string }
		if json.Unmarshal([]byte(resp), &e); status != 201 {
			t.Fatalf("publish: %d %s", status, resp)
		}
		return e.ID
	}
	var ids []string // e1..e5, s1 (covers e5), e6..e8, s2 (covers e8), e9, e10
	edit := func(n int) {
		for range n {
			ids = append(ids, publish(fmt.Sprintf(`{"body":{"n":%d}}`, len(ids))))
		}
	}
	snapshot := func() {
		head := ids[len(ids)-1]
		ids = append(ids, publish(`{"kind":"snapshot","expect":"`+head+`","body":{"covers":"`+head+`","state":""}}`))
	}
	edit(5)
	snapshot()
	edit(3)
	snapshot()
	edit(2)
	s1, s2 := ids[5], ids[9]

	get := func(tok, query string) (int, historyPage, string) {
		t.Helper()
		status, body := servertest.Request(t, "GET", ts.url+"/v1/rooms/doc:h/events"+query, tok, "")
		var p historyPage
		json.Unmarshal([]byte(body), &p)
		return status, p, body
	}
	for query, want := range map[string][]string{
		"?after=" + ids[1] + "&until=" + ids[6]: ids[2:6], // after and until are exclusive
		"?until=" + ids[3]:                      ids[:3],
		"?after=" + ids[9]:                      ids[10:],
		"?after=" + ids[11]:                     nil,
		// from=end: the last of the range, still oldest first.
		"?from=end&until=" + ids[3]:                       ids[:3],
		"?from=end&after=" + ids[8] + "&until=" + ids[11]: ids[9:11],
	} {
		status, p, body := get(reader, query)
		if status != 200 || strings.Join(p.ids(), " ") != strings.Join(want, " ") || p.More || p.CursorTooOld {
			t.Errorf("%s: %d %s", query, status, body)
		}
	}
	if _, p, body := get(reader, "?limit=4"); strings.Join(p.ids(), " ") != strings.Join(ids[:4], " ") || !p.More {
		t.Errorf("?limit=4: %s", body)
	}
	for query, want := range map[string][]string{
		"?from=end&limit=3":                      ids[9:],
		"?from=end&after=" + ids[8] + "&limit=2": ids[10:],
	} {
		if _, p, body := get(reader, query); strings.Join(p.ids(), " ") != strings.Join(want, " ") || !p.More {
			t.Errorf("%s: %s; want the last events and more before them", query, body)
		}
	}
	// max_body leaves the larger bodies (the snapshots' states) out, saying their size.
	if _, p, body := get(reader, "?max_body=12&after="+ids[4]+"&until="+ids[7]); len(p.Events) != 2 ||
		!strings.Contains(body, `"id":"`+s1+`","kind":"snapshot"`) || strings.Contains(body, `"covers"`) || !strings.Contains(body, `"body_size":`) || !strings.Contains(body, `"body":{"n":6}`) {
		t.Errorf("?max_body=12: %s", body)
	}
	for query, want := range map[string]string{
		"?after=nope":   "after:",
		"?until=01ZZZ":  "until:",
		"?limit=-1":     "limit",
		"?limit=banana": "limit",
		"?max_body=-2":  "max_body",
		"?from=start":   "from:",
	} {
		if status, _, body := get(reader, query); status != 400 || !strings.Contains(body, want) || strings.Count(body, "\n") > 1 {
			t.Errorf("%s: %d %s, want a one-line 400 naming %q", query, status, body, want)
		}
	}
	if status, _, _ := get(stranger, ""); status != 403 {
		t.Errorf("a stranger read the room: %d", status)
	}

	// An auditor's trail carries each event's chain hash (hashes=true); the last is the room's.
	_, trail := servertest.Request(t, "GET", ts.url+"/v1/events?room=doc:h&hashes=true", admin, "")
	lines := strings.Split(strings.TrimSpace(trail), "\n")
	var last struct{ ID, Hash string }
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	_, roomsList := servertest.Request(t, "GET", ts.url+"/v1/rooms", admin, "")
	if len(lines) != len(ids) || len(last.Hash) != 64 || !strings.Contains(roomsList, `"hash":"`+last.Hash+`"`) {
		t.Errorf("the trail with hashes: %d lines, last %+v; rooms: %s", len(lines), last, roomsList)
	}

	snapAt := func(at string) (int, string) {
		t.Helper()
		status, body := servertest.Request(t, "GET", ts.url+"/v1/rooms/doc:h/snapshot?at="+at, reader, "")
		var e struct{ ID string }
		json.Unmarshal([]byte(body), &e)
		if status == 200 {
			return status, e.ID
		}
		return status, body
	}
	for at, want := range map[string]string{
		ids[11]: s2, ids[9]: s2, ids[8]: s1, ids[6]: s1, ids[5]: s1,
	} {
		if status, got := snapAt(at); status != 200 || got != want {
			t.Errorf("snapshot at %s: %d %s, want %s", at, status, got, want)
		}
	}
	for at, want := range map[string]string{
		ids[2]:                       "no snapshot at or before",
		"01JZZZZZZZZZZZZZZZZZZZZZZZ": "has no event",
		"garbage":                    "at:",
	} {
		if status, body := snapAt(at); status == 200 || !strings.Contains(body, want) {
			t.Errorf("snapshot at %s: %d %s, want an error saying %q", at, status, body, want)
		}
	}

	if status, body := servertest.Request(t, "POST", ts.url+"/v1/rooms/doc:h/compact", admin, ""); status != 200 {
		t.Fatalf("compact: %d %s", status, body)
	}
	status, p, body := get(reader, "")
	if status != 200 || !p.CursorTooOld || p.Floor != ids[8] || len(p.Events) == 0 || p.Events[0].ID != s2 {
		t.Errorf("after a compaction, from the start: %d %s; want cursor_too_old, the floor %s, and events from %s", status, body, ids[8], s2)
	}
	if _, p, body := get(reader, "?after="+s2); p.CursorTooOld {
		t.Errorf("after a compaction, from the snapshot: %s", body)
	}
	if _, p, body := get(reader, "?from=end&limit=2"); p.CursorTooOld || !p.More {
		t.Errorf("after a compaction, the last page: %s; the start is not reached yet", body)
	}
	if _, p, body := get(reader, "?from=end"); !p.CursorTooOld || p.Floor != ids[8] || p.More || p.Events[0].ID != s2 {
		t.Errorf("after a compaction, from the end to the start: %s", body)
	}
	if status, body := snapAt(ids[2]); status != 404 || !strings.Contains(body, "compacted away") {
		t.Errorf("a snapshot at a compacted event: %d %s", status, body)
	}
}

// TestRoomHistoryPageBound: a page stops at the frame bound (at least one event), and says more
// follow, read forward or from the end; limit is at most 10,000 events.
func TestRoomHistoryPageBound(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: transport.Config{MaxFrame: 2 << 20}})
	writer := token(t, "editor", []string{"big:*"})
	appendN := func(room string, n int, body func(i int) string) {
		var pending []*eventlog.Pending
		for i := range n {
			pending = append(pending, ts.log.AppendAsync(eventlog.AppendRequest{Room: room, User: "editor", Body: json.RawMessage(body(i))}))
		}
		for _, p := range pending {
			if _, err := p.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	pad := strings.Repeat("x", 60000)
	appendN("big:1", 100, func(i int) string { return fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad) })
	appendN("big:2", 10050, func(i int) string { return fmt.Sprint(i) })
	read := func(room, query string) historyPage {
		t.Helper()
		status, body := servertest.Request(t, "GET", ts.url+"/v1/rooms/"+room+"/events?"+query, writer, "")
		var p historyPage
		if json.Unmarshal([]byte(body), &p); status != 200 || len(body) > 2<<20+70000 {
			t.Fatalf("page %s: %d, %d bytes", query, status, len(body))
		}
		return p
	}
	var all []string
	for after := ""; ; {
		p := read("big:1", "limit=10000&after="+after)
		if len(p.Events) > 35 {
			t.Fatalf("a page of %d events of 60 KB: past the frame bound", len(p.Events))
		}
		all = append(all, p.ids()...)
		if !p.More {
			break
		}
		after = p.Events[len(p.Events)-1].ID
	}
	var back []string // newest first, page by page
	for until := ""; ; {
		p := read("big:1", "from=end&limit=10000&until="+until)
		back = append(p.ids(), back...)
		if !p.More {
			break
		}
		until = p.Events[0].ID
	}
	if len(all) != 100 || strings.Join(back, " ") != strings.Join(all, " ") {
		t.Errorf("read %d events forward, %d back; want the same 100", len(all), len(back))
	}
	if p := read("big:2", "limit=1000000"); len(p.Events) != 10000 || !p.More {
		t.Errorf("limit past 10,000: %d events, more %v; want 10,000 and more", len(p.Events), p.More)
	}
}
