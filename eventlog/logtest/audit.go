package logtest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
)

// The Auditor's tests, and those of what the log keeps of its clients (cursors, sessions).

func testRooms(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	first := map[string]eventlog.ID{}
	last := map[string]eventlog.ID{}
	counts := map[string]uint64{}
	for i := range 600 {
		room := fmt.Sprintf("room-%03d", i%300)
		id := mustAppend(t, l, msg(room, "u", "x")).Event.ID
		if _, ok := first[room]; !ok {
			first[room] = id
		}
		last[room] = id
		counts[room]++
	}
	var names []string
	err := l.Rooms(ctx(t), func(r eventlog.RoomInfo) error {
		names = append(names, r.Name)
		if r.First != first[r.Name] || r.Last != last[r.Name] || r.Count != counts[r.Name] {
			t.Fatalf("room %s: %+v, want first %s last %s count %d", r.Name, r, first[r.Name], last[r.Name], counts[r.Name])
		}
		return nil
	})
	if err != nil || len(names) != 300 || !slices.IsSorted(names) {
		t.Fatalf("Rooms listed %d rooms (sorted %v), err %v", len(names), slices.IsSorted(names), err)
	}
	stop := errors.New("stop")
	n := 0
	if err := l.Rooms(ctx(t), func(eventlog.RoomInfo) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Rooms did not stop on the callback's error: %v after %d", err, n)
	}
}

func testScan(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var all []eventlog.Event
	users := []string{"ann", "ben", "cat"}
	rooms := []string{"doc:1", "doc:2", "chat:1", "doc:10", "news"}
	for i := range 1500 {
		req := msg(rooms[(i*7)%len(rooms)], users[i%3], fmt.Sprint(i))
		if i%5 == 0 {
			req.Kind = "edit"
		}
		all = append(all, mustAppend(t, l, req).Event)
	}
	scan := func(f eventlog.ScanFilter) []eventlog.ID {
		var got []eventlog.ID
		if err := l.Scan(ctx(t), f, func(e eventlog.Event) error {
			got = append(got, e.ID)
			return nil
		}); err != nil {
			t.Fatalf("Scan(%+v): %v", f, err)
		}
		return got
	}
	want := func(keep func(e eventlog.Event) bool, limit int) []eventlog.ID {
		var out []eventlog.ID
		for _, e := range all {
			if keep(e) && (limit == 0 || len(out) < limit) {
				out = append(out, e.ID)
			}
		}
		return out
	}
	mid, late := all[500].ID, all[1200].ID
	cases := []struct {
		name string
		f    eventlog.ScanFilter
		keep func(e eventlog.Event) bool
	}{
		{"everything", eventlog.ScanFilter{}, func(eventlog.Event) bool { return true }},
		{"one room", eventlog.ScanFilter{Rooms: []string{"doc:1"}}, func(e eventlog.Event) bool { return e.Room == "doc:1" }},
		{"prefix", eventlog.ScanFilter{Rooms: []string{"doc:1*"}}, func(e eventlog.Event) bool { return e.Room == "doc:1" || e.Room == "doc:10" }},
		{"two patterns", eventlog.ScanFilter{Rooms: []string{"chat:*", "news"}}, func(e eventlog.Event) bool { return e.Room == "chat:1" || e.Room == "news" }},
		{"user", eventlog.ScanFilter{User: "ben"}, func(e eventlog.Event) bool { return e.User == "ben" }},
		{"kind", eventlog.ScanFilter{Kind: "edit"}, func(e eventlog.Event) bool { return e.Kind == "edit" }},
		{"after", eventlog.ScanFilter{After: mid}, func(e eventlog.Event) bool { return e.ID.Compare(mid) > 0 }},
		{"until", eventlog.ScanFilter{Until: mid}, func(e eventlog.Event) bool { return e.ID.Compare(mid) < 0 }},
		{"since (inclusive)", eventlog.ScanFilter{Since: mid}, func(e eventlog.Event) bool { return e.ID.Compare(mid) >= 0 }},
		{"since and after", eventlog.ScanFilter{Since: mid, After: late}, func(e eventlog.Event) bool { return e.ID.Compare(late) > 0 }},
		{"range and user and room", eventlog.ScanFilter{After: mid, Until: late, User: "cat", Rooms: []string{"doc:*"}}, func(e eventlog.Event) bool {
			return e.ID.Compare(mid) > 0 && e.ID.Compare(late) < 0 && e.User == "cat" && e.Room[:4] == "doc:"
		}},
		{"no match", eventlog.ScanFilter{User: "nobody"}, func(eventlog.Event) bool { return false }},
	}
	for _, tc := range cases {
		for _, limit := range []int{0, 1, 333} {
			f := tc.f
			f.Limit = limit
			got, exp := scan(f), want(tc.keep, limit)
			if !slices.Equal(got, exp) {
				t.Fatalf("%s, limit %d: got %d events, want %d", tc.name, limit, len(got), len(exp))
			}
		}
	}
	// A scan is a snapshot: appends made while it runs are left to the next scan after its last id.
	var last eventlog.ID
	seen := 0
	if err := l.Scan(ctx(t), eventlog.ScanFilter{}, func(e eventlog.Event) error {
		if seen%100 == 0 {
			all = append(all, mustAppend(t, l, msg(rooms[seen%len(rooms)], "late", "during scan")).Event)
		}
		seen++
		last = e.ID
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != 1500 {
		t.Fatalf("a scan saw %d events, want the 1500 there when it started", seen)
	}
	more := scan(eventlog.ScanFilter{After: last})
	if !slices.Equal(more, ids(all[1500:])) {
		t.Fatalf("the scan after the snapshot got %d events, want the %d appended during it", len(more), len(all)-1500)
	}
	stop := errors.New("stop")
	if err := l.Scan(ctx(t), eventlog.ScanFilter{}, func(eventlog.Event) error { return stop }); err != stop {
		t.Fatalf("Scan did not return the callback's error: %v", err)
	}
	if err := l.Scan(ctx(t), eventlog.ScanFilter{Rooms: []string{"bad room"}}, func(eventlog.Event) error { return nil }); !errors.Is(err, eventlog.ErrBadRoom) {
		t.Fatalf("Scan with a bad room pattern: %v", err)
	}
}

func testVerify(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	rep, err := l.Verify(ctx(t), "")
	if err != nil || rep.Broken != nil || rep.Events != 0 {
		t.Fatalf("empty log: %+v %v", rep, err)
	}
	var first, last eventlog.ID
	for i := range 300 {
		id := mustAppend(t, l, msg(fmt.Sprintf("v%d", i%3), "u", fmt.Sprint(i))).Event.ID
		if i == 0 {
			first = id
		}
		last = id
	}
	rep, err = l.Verify(ctx(t), "")
	if err != nil || rep.Broken != nil || rep.Events != 300 || rep.Rooms != 3 || rep.First != first || rep.Last != last {
		t.Fatalf("Verify = %+v, %v; want 300 events in 3 rooms from %s to %s", rep, err, first, last)
	}
	rep, err = l.Verify(ctx(t), "v1")
	if err != nil || rep.Broken != nil || rep.Events != 100 || rep.Rooms != 1 {
		t.Fatalf("Verify(v1) = %+v, %v", rep, err)
	}
	// Anchors: the heads as Rooms lists them hold, also after more appends; an anchor the log no
	// longer reaches, or with another hash, or of a room it lacks, is a break.
	var anchors []eventlog.Anchor
	l.Rooms(ctx(t), func(r eventlog.RoomInfo) error {
		anchors = append(anchors, eventlog.Anchor{Room: r.Name, Head: eventlog.Head{ID: r.Last, Hash: r.Hash, Count: r.Count}})
		return nil
	})
	mustAppend(t, l, msg("v0", "u", "after the anchors"))
	if rep, err := l.Verify(ctx(t), "", anchors...); err != nil || rep.Broken != nil {
		t.Fatalf("Verify with its own anchors: %+v, %v", rep.Broken, err)
	}
	past, other, gone := anchors[0], anchors[1], eventlog.Anchor{Room: "never", Head: anchors[2].Head}
	past.Count += 10
	other.Hash[0] ^= 1
	for _, a := range []eventlog.Anchor{past, other, gone} {
		rep, err := l.Verify(ctx(t), "", a)
		if err != nil || rep.Broken == nil || rep.Broken.Room != a.Room {
			t.Fatalf("Verify with the anchor %+v: %+v, %v; want a break in %s", a, rep.Broken, err, a.Room)
		}
	}
}

func testAcks(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var evs []eventlog.ID
	for i := range 5 {
		evs = append(evs, mustAppend(t, l, msg("acked", "u", fmt.Sprint(i))).Event.ID)
	}
	if id, err := l.Cursor(ctx(t), "u", "phone", "acked"); err != nil || !id.IsZero() {
		t.Fatalf("no ack yet: %s %v", id, err)
	}
	set := func(id eventlog.ID) {
		if err := l.SetCursor(ctx(t), "u", "phone", "acked", id); err != nil {
			t.Fatalf("SetCursor: %v", err)
		}
	}
	set(evs[2])
	set(evs[1]) // an older ack never moves the cursor back
	if id, _ := l.Cursor(ctx(t), "u", "phone", "acked"); id != evs[2] {
		t.Fatalf("ack = %s, want %s", id, evs[2])
	}
	set(evs[4])
	if id, _ := l.Cursor(ctx(t), "u", "tablet", "acked"); !id.IsZero() {
		t.Fatalf("another session shares the cursor")
	}
	if b.Reopen != nil {
		l = b.Reopen(t, l)
	}
	if id, _ := l.Cursor(ctx(t), "u", "phone", "acked"); id != evs[4] {
		t.Fatalf("ack after reopen = %s, want %s", id, evs[4])
	}
}

func testSessions(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	join := func(room, user, session string) eventlog.ID {
		return mustAppend(t, l, eventlog.AppendRequest{Room: room, User: user, Session: session, Kind: eventlog.KindJoin, System: true}).Event.ID
	}
	leave := func(room, user, session string) {
		mustAppend(t, l, eventlog.AppendRequest{Room: room, User: user, Session: session, Kind: eventlog.KindLeave, System: true})
	}
	a := join("r1", "ann", "s1")
	join("r1", "bob", "s2")
	c := join("r2", "bob", "s2")
	leave("r1", "bob", "s2")
	if b.Reopen != nil {
		l = b.Reopen(t, l)
	}
	var got []eventlog.Session
	l.Sessions(ctx(t), func(s eventlog.Session) error { got = append(got, s); return nil })
	slices.SortFunc(got, func(x, y eventlog.Session) int { return x.Joined.Compare(y.Joined) })
	want := []eventlog.Session{{Room: "r1", User: "ann", Session: "s1", Joined: a}, {Room: "r2", User: "bob", Session: "s2", Joined: c}}
	if !slices.Equal(got, want) {
		t.Fatalf("Sessions = %+v, want %+v", got, want)
	}
}
