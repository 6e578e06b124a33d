package logtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
)

// snapshotOf is a snapshot append covering id, with state.
func snapshotOf(room string, id eventlog.ID, state string) eventlog.AppendRequest {
	body, _ := json.Marshal(map[string]string{"covers": id.String(), "state": state})
	return eventlog.AppendRequest{Room: room, User: "snapper", Kind: eventlog.KindSnapshot, Body: body, Expect: &id}
}

func testSnapshots(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	c := l
	if _, ok, err := c.LatestSnapshot(ctx(t), "doc"); ok || err != nil {
		t.Fatalf("LatestSnapshot of an unknown room: %v %v", ok, err)
	}
	head := mustAppend(t, l, msg("doc", "u", "one")).Event.ID
	other := mustAppend(t, l, msg("doc", "u", "two")).Event.ID
	// A snapshot names what it covers, and is appended on exactly that head.
	bad := []eventlog.AppendRequest{
		{Room: "doc", User: "u", Kind: eventlog.KindSnapshot, Expect: &other},
		{Room: "doc", User: "u", Kind: eventlog.KindSnapshot, Body: []byte(`[1]`), Expect: &other},
		{Room: "doc", User: "u", Kind: eventlog.KindSnapshot, Body: []byte(`{"state":1}`), Expect: &other},
		{Room: "doc", User: "u", Kind: eventlog.KindSnapshot, Body: []byte(`{"covers":"nope"}`), Expect: &other},
		{Room: "doc", User: "u", Kind: eventlog.KindSnapshot, Body: []byte(fmt.Sprintf(`{"covers":%q}`, other))},
		{Room: "doc", User: "u", Kind: eventlog.KindSnapshot, Body: []byte(fmt.Sprintf(`{"covers":%q}`, other)), Expect: &head},
	}
	for i, req := range bad {
		if _, err := l.Append(ctx(t), req); !errors.Is(err, eventlog.ErrBadBody) {
			t.Errorf("bad snapshot %d: %v, want ErrBadBody", i, err)
		}
	}
	if _, err := l.Append(ctx(t), snapshotOf("doc", head, "stale")); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a snapshot of a head that moved on: %v, want a conflict", err)
	}
	if _, err := l.Append(ctx(t), eventlog.AppendRequest{Room: "doc", User: "u", Kind: eventlog.KindCompaction, Body: []byte(`{}`)}); !errors.Is(err, eventlog.ErrReservedKind) {
		t.Fatalf("a client's compaction record: %v, want ErrReservedKind", err)
	}
	if _, ok, _ := c.LatestSnapshot(ctx(t), "doc"); ok {
		t.Fatal("refused snapshots were indexed")
	}
	s1 := mustAppend(t, l, snapshotOf("doc", other, "1")).Event
	got, ok, err := c.LatestSnapshot(ctx(t), "doc")
	if err != nil || !ok {
		t.Fatalf("LatestSnapshot: %v %v", ok, err)
	}
	sameEvent(t, got, s1)
	more := mustAppend(t, l, msg("doc", "u", "three")).Event.ID
	s2 := mustAppend(t, l, snapshotOf("doc", more, "2")).Event
	mustAppend(t, l, msg("doc", "u", "four"))
	if got, _, _ := c.LatestSnapshot(ctx(t), "doc"); got.ID != s2.ID {
		t.Fatalf("latest snapshot %s, want the second, %s", got.ID, s2.ID)
	}
	if b.Reopen != nil {
		l = b.Reopen(t, l)
		if got, ok, err := l.LatestSnapshot(ctx(t), "doc"); err != nil || !ok || got.ID != s2.ID {
			t.Fatalf("after reopen: %s %v %v", got.ID, ok, err)
		}
	}
}

func testCompact(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	if _, err := l.Compact(ctx(t), "doc", "ops"); !errors.Is(err, eventlog.ErrNoSnapshot) {
		t.Fatalf("Compact of an unknown room: %v, want ErrNoSnapshot", err)
	}
	var early []eventlog.Event
	for i := range 10 {
		req := msg("doc", "u", fmt.Sprint(i))
		if i == 3 {
			req.Key = "k3"
		}
		early = append(early, mustAppend(t, l, req).Event)
	}
	if _, err := l.Compact(ctx(t), "doc", "ops"); !errors.Is(err, eventlog.ErrNoSnapshot) {
		t.Fatalf("Compact without a snapshot: %v, want ErrNoSnapshot", err)
	}
	covered := early[9]
	snap := mustAppend(t, l, snapshotOf("doc", covered.ID, "state")).Event
	var late []eventlog.Event
	for i := range 3 {
		late = append(late, mustAppend(t, l, msg("doc", "u", fmt.Sprint("late", i))).Event)
	}
	anchor := func(e eventlog.Event, n uint64) eventlog.Anchor {
		return eventlog.Anchor{Room: "doc", Head: eventlog.Head{ID: e.ID, Hash: e.Hash, Count: n}}
	}
	before := []eventlog.Anchor{anchor(early[4], 5), anchor(covered, 10)}

	res, err := l.Compact(ctx(t), "doc", "ops")
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 10 || res.Snapshot != snap.ID || res.Floor != (eventlog.Head{ID: covered.ID, Hash: covered.Hash, Count: 10}) {
		t.Fatalf("Compact = %+v; want 10 removed, floor at %s", res, covered.ID)
	}
	var rec struct {
		Snapshot, Floor string
		Removed         int
	}
	json.Unmarshal(res.Record.Body, &rec)
	if res.Record.Kind != eventlog.KindCompaction || res.Record.User != "ops" || rec.Snapshot != snap.ID.String() || rec.Floor != covered.ID.String() || rec.Removed != 10 {
		t.Fatalf("compaction record %+v body %s", res.Record, res.Record.Body)
	}
	checkCompacted := func(l eventlog.Store) {
		t.Helper()
		want := append(append([]eventlog.ID{snap.ID}, ids(late)...), res.Record.ID)
		for _, after := range []eventlog.ID{{}, early[2].ID, covered.ID} {
			if got := ids(readAll(t, l, "doc", after)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("ReadAfter(%s) after compaction: %v, want %v", after, got, want)
			}
		}
		if page, _ := l.ReadBefore(ctx(t), "doc", snap.ID, 10); len(page) != 0 {
			t.Fatalf("ReadBefore the snapshot: %d events", len(page))
		}
		if ok, _ := l.Contains(ctx(t), "doc", early[5].ID); ok {
			t.Fatal("a removed event is still contained")
		}
		if f, err := l.Floor(ctx(t), "doc"); err != nil || f != res.Floor {
			t.Fatalf("Floor = %+v %v, want %+v", f, err, res.Floor)
		}
		if h, _ := l.Head(ctx(t), "doc"); h.ID != res.Record.ID || h.Count != 15 {
			t.Fatalf("head %+v: want the record, event 15", h)
		}
		a := l
		headAnchor := anchor(res.Record, 15)
		rep, err := a.Verify(ctx(t), "doc", append(before, headAnchor)...)
		if err != nil || rep.Broken != nil || rep.Events != 5 || rep.Compacted != 10 {
			t.Fatalf("Verify after compaction: %+v %v; want 5 events checked from the floor, 10 compacted", rep, err)
		}
		forged := anchor(covered, 10)
		forged.Hash[0] ^= 1
		if rep, _ := a.Verify(ctx(t), "doc", forged); rep.Broken == nil {
			t.Fatal("an anchor at the floor with another hash verified")
		}
		// The key of a removed event is still remembered: a resend is a duplicate, not a new event.
		dup := msg("doc", "u", "3")
		dup.Key = "k3"
		if r, err := l.Append(ctx(t), dup); err != nil || !r.Duplicate || r.Event.ID != early[3].ID {
			t.Fatalf("resend of a compacted key: %+v %v", r, err)
		}
	}
	checkCompacted(l)
	again, err := l.Compact(ctx(t), "doc", "ops")
	if err != nil || again.Removed != 0 || again.Record.ID != (eventlog.ID{}) {
		t.Fatalf("a second Compact: %+v %v; want nothing removed, nothing recorded", again, err)
	}
	if b.Reopen != nil {
		l = b.Reopen(t, l)
		checkCompacted(l)
	}
	// Later snapshots compact further, and the chain still verifies across both floors.
	head, _ := l.Head(ctx(t), "doc")
	mustAppend(t, l, snapshotOf("doc", head.ID, "later"))
	if r, err := l.Compact(ctx(t), "doc", "ops"); err != nil || r.Removed != 5 {
		t.Fatalf("second compaction: %+v %v, want the 5 events up to the second snapshot", r, err)
	}
	if rep, err := l.Verify(ctx(t), "doc"); err != nil || rep.Broken != nil || rep.Compacted != 15 {
		t.Fatalf("Verify after two compactions: %+v %v", rep, err)
	}
}
