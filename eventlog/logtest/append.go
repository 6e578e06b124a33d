package logtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// The appending tests: ids, order, concurrency, idempotency keys, conditional appends, and bad input.

func testAppendAndReadAfter(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	before := time.Now().Add(-time.Second)
	var appended []eventlog.Event
	for i := range 250 {
		req := msg("doc:1", "alice", fmt.Sprintf("m%d", i))
		if i%3 == 0 {
			req.Kind = "cursor.move"
			req.Key = fmt.Sprintf("k-%d", i)
		}
		r := mustAppend(t, l, req)
		if r.Duplicate {
			t.Fatalf("first append of key reported duplicate")
		}
		e := r.Event
		if e.Room != "doc:1" || e.User != "alice" || e.Session != "s-alice" || e.Key != req.Key || string(e.Body) != string(req.Body) {
			t.Fatalf("appended event does not carry the request: %+v", e)
		}
		wantKind := "message"
		if req.Kind != "" {
			wantKind = req.Kind
		}
		if e.Kind != wantKind {
			t.Fatalf("kind %q, want %q", e.Kind, wantKind)
		}
		if e.Time().Before(before) || e.Time().After(time.Now().Add(time.Second)) {
			t.Fatalf("event time %s is not now", e.Time())
		}
		appended = append(appended, e)
	}
	assertIncreasing(t, "append order", ids(appended))

	all := readAll(t, l, "doc:1", eventlog.ID{})
	if len(all) != len(appended) {
		t.Fatalf("read %d events, appended %d", len(all), len(appended))
	}
	for i := range all {
		sameEvent(t, all[i], appended[i])
	}
	// After every cursor: exactly the suffix.
	for _, i := range []int{0, 1, 99, 100, 101, 248, 249} {
		got := readAll(t, l, "doc:1", appended[i].ID)
		if !slices.Equal(ids(got), ids(appended[i+1:])) {
			t.Fatalf("after event %d: got %d events, want %d", i, len(got), len(appended)-i-1)
		}
	}
	// After an id that is not in the room but between two events: the events after it.
	between := appended[10].ID
	between[15]++ // one past an event: usually not an id of the room (checked)
	if ok, _ := l.Contains(ctx(t), "doc:1", between); !ok {
		got := readAll(t, l, "doc:1", between)
		var want []eventlog.ID
		for _, e := range appended {
			if e.ID.Compare(between) > 0 {
				want = append(want, e.ID)
			}
		}
		if !slices.Equal(ids(got), want) {
			t.Fatalf("after an unknown id: got %d events, want %d", len(got), len(want))
		}
	}
	// Limit.
	page, err := l.ReadAfter(ctx(t), "doc:1", eventlog.ID{}, 7)
	if err != nil || len(page) != 7 || page[6].ID != appended[6].ID {
		t.Fatalf("ReadAfter limit 7: %d events, err %v", len(page), err)
	}
	// Head, Contains.
	h, err := l.Head(ctx(t), "doc:1")
	if err != nil || h.ID != appended[249].ID || h.Count != 250 || h.Hash != appended[249].Hash {
		t.Fatalf("Head = %+v, %v; want id %s count 250", h, err, appended[249].ID)
	}
	if ok, err := l.Contains(ctx(t), "doc:1", appended[5].ID); !ok || err != nil {
		t.Fatalf("Contains(existing) = %v, %v", ok, err)
	}
	if ok, _ := l.Contains(ctx(t), "doc:2", appended[5].ID); ok {
		t.Fatalf("Contains(id of another room) = true")
	}
	// An unknown room is empty, not an error.
	if evs, err := l.ReadAfter(ctx(t), "doc:none", eventlog.ID{}, 10); err != nil || len(evs) != 0 {
		t.Fatalf("unknown room: %d events, %v", len(evs), err)
	}
	if h, err := l.Head(ctx(t), "doc:none"); err != nil || !h.ID.IsZero() || h.Count != 0 {
		t.Fatalf("unknown room head: %+v %v", h, err)
	}
}

func testIDsIncreaseAcrossRooms(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var last eventlog.ID
	for i := range 300 {
		r := mustAppend(t, l, msg(fmt.Sprintf("room-%d", i%7), "u", "x"))
		if r.Event.ID.Compare(last) <= 0 {
			t.Fatalf("append %d: id %s not after %s", i, r.Event.ID, last)
		}
		last = r.Event.ID
	}
}

func testConcurrentAppends(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	const writers, each = 32, 60
	var mu sync.Mutex
	acked := map[string][]eventlog.ID{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				room := fmt.Sprintf("r%d", (w+i)%4)
				r, err := l.Append(context.Background(), msg(room, fmt.Sprintf("u%d", w), fmt.Sprint(i)))
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				acked[room] = append(acked[room], r.Event.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for room, want := range acked {
		got := ids(readAll(t, l, room, eventlog.ID{}))
		assertIncreasing(t, room, got)
		slices.SortFunc(want, eventlog.ID.Compare)
		if !slices.Equal(got, want) {
			t.Fatalf("room %s: log has %d events, %d were acked", room, len(got), len(want))
		}
		total += len(got)
	}
	if total != writers*each {
		t.Fatalf("%d events, want %d", total, writers*each)
	}
}

func testAsyncKeepsQueueOrder(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var pending []*eventlog.Pending
	for i := range 500 {
		pending = append(pending, l.AppendAsync(msg("ordered", "bob", fmt.Sprint(i))))
	}
	var got []eventlog.ID
	for i, p := range pending {
		r, err := p.Wait(ctx(t))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		var body struct{ Text string }
		json.Unmarshal(r.Event.Body, &body)
		if body.Text != fmt.Sprint(i) {
			t.Fatalf("append %d acked with body %s", i, r.Event.Body)
		}
		got = append(got, r.Event.ID)
	}
	assertIncreasing(t, "queue order", got)
	if read := ids(readAll(t, l, "ordered", eventlog.ID{})); !slices.Equal(read, got) {
		t.Fatalf("log order differs from queue order")
	}
}

func testIdempotency(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	req := msg("chat", "alice", "hello")
	req.Key = "c-17"
	first := mustAppend(t, l, req)
	again := req
	again.Body = json.RawMessage(`{"text":"changed on resend"}`)
	dup := mustAppend(t, l, again)
	if !dup.Duplicate {
		t.Fatalf("second append with the same key was not a duplicate")
	}
	sameEvent(t, dup.Event, first.Event)

	other := req
	other.User = "bob"
	if r := mustAppend(t, l, other); r.Duplicate {
		t.Fatalf("same key by another user was a duplicate")
	}
	elsewhere := req
	elsewhere.Room = "chat2"
	if r := mustAppend(t, l, elsewhere); r.Duplicate {
		t.Fatalf("same key in another room was a duplicate")
	}
	if h, _ := l.Head(ctx(t), "chat"); h.Count != 2 {
		t.Fatalf("room has %d events, want 2", h.Count)
	}
	// Duplicate within one burst of queued appends.
	req.Key = "burst"
	p1, p2 := l.AppendAsync(req), l.AppendAsync(req)
	r1, err1 := p1.Wait(ctx(t))
	r2, err2 := p2.Wait(ctx(t))
	if err1 != nil || err2 != nil || r1.Duplicate || !r2.Duplicate || r1.Event.ID != r2.Event.ID {
		t.Fatalf("queued pair: %+v %v / %+v %v", r1, err1, r2, err2)
	}
	// Survives a restart.
	if b.Reopen != nil {
		l = b.Reopen(t, l)
		req.Key = "c-17"
		if r := mustAppend(t, l, req); !r.Duplicate || r.Event.ID != first.Event.ID {
			t.Fatalf("after reopen: duplicate=%v id %s, want %s", r.Duplicate, r.Event.ID, first.Event.ID)
		}
	}
}

func testConcurrentSameKey(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var wg sync.WaitGroup
	results := make([]eventlog.AppendResult, 20)
	for i := range results {
		wg.Go(func() {
			req := msg("race", "carol", "once")
			req.Key = "only-once"
			r, err := l.Append(context.Background(), req)
			if err != nil {
				t.Errorf("append: %v", err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	firsts := 0
	for _, r := range results {
		if !r.Duplicate {
			firsts++
		}
		if r.Event.ID != results[0].Event.ID {
			t.Fatalf("retries got different events: %s and %s", r.Event.ID, results[0].Event.ID)
		}
	}
	if firsts != 1 {
		t.Fatalf("%d appends were not duplicates, want 1", firsts)
	}
	if h, _ := l.Head(ctx(t), "race"); h.Count != 1 {
		t.Fatalf("room has %d events, want 1", h.Count)
	}
}

func testKeyRetention(t *testing.T, b Backend) {
	clock := NewClock(time.Now())
	l := open(t, b, Config{KeyRetention: time.Hour, Now: clock.Now})
	closeAtEnd(t, &l)
	req := msg("keys", "dave", "x")
	req.Key = "k1"
	first := mustAppend(t, l, req)
	clock.Advance(59 * time.Minute)
	if r := mustAppend(t, l, req); !r.Duplicate {
		t.Fatalf("within retention: not a duplicate")
	}
	// Ids carry the real time; the log's clock decides expiry. Move well past the retention,
	// appending under other keys so that backends that expire in generations get to do so.
	for i := range 6 {
		clock.Advance(30 * time.Minute)
		filler := msg("keys", "dave", "filler")
		filler.Key = fmt.Sprintf("filler-%d", i)
		mustAppend(t, l, filler)
	}
	r := mustAppend(t, l, req)
	if r.Duplicate || r.Event.ID == first.Event.ID {
		t.Fatalf("after the retention the key still deduplicated")
	}
	if again := mustAppend(t, l, req); !again.Duplicate || again.Event.ID != r.Event.ID {
		t.Fatalf("the key's new use is not remembered")
	}
}

func testExpect(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	zero := eventlog.ID{}
	req := msg("edit", "erin", "v1")
	req.Expect = &zero
	r1 := mustAppend(t, l, req)

	// Expecting an empty room when it is not: conflict with the head.
	_, err := l.Append(ctx(t), req)
	var ce *eventlog.ConflictError
	if !errors.Is(err, eventlog.ErrConflict) || !errors.As(err, &ce) || ce.Head != r1.Event.ID {
		t.Fatalf("stale expect: err %v, want conflict with head %s", err, r1.Event.ID)
	}
	req.Expect = &r1.Event.ID
	r2 := mustAppend(t, l, req)
	// A stale expect changes nothing.
	_, err = l.Append(ctx(t), req)
	if !errors.As(err, &ce) || ce.Head != r2.Event.ID {
		t.Fatalf("stale expect: %v", err)
	}
	if h, _ := l.Head(ctx(t), "edit"); h.Count != 2 || h.ID != r2.Event.ID {
		t.Fatalf("head %+v after conflicts, want 2 events ending %s", h, r2.Event.ID)
	}
	// Unknown room expecting non-empty.
	other := msg("edit-empty", "erin", "v1")
	other.Expect = &r2.Event.ID
	if _, err := l.Append(ctx(t), other); !errors.As(err, &ce) || !ce.Head.IsZero() {
		t.Fatalf("expect on an empty room: %v", err)
	}
	// Concurrent editors with the same expectation: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	head := r2.Event.ID
	for range 10 {
		wg.Go(func() {
			req := msg("edit", "erin", "race")
			req.Expect = &head
			if _, err := l.Append(context.Background(), req); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, eventlog.ErrConflict) {
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d conditional appends on the same head won, want 1", wins.Load())
	}
}

func testBadInput(t *testing.T, b Backend) {
	l := open(t, b, Config{MaxBody: 1024})
	closeAtEnd(t, &l)
	mustAppend(t, l, msg("good", "u", "x"))
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	big := json.RawMessage(fmt.Sprintf(`"%01100d"`, 0)) // 1102 bytes, over the 1024 configured
	cases := []struct {
		name string
		req  eventlog.AppendRequest
		want error
	}{
		{"empty room", eventlog.AppendRequest{User: "u"}, eventlog.ErrBadRoom},
		{"room with space", eventlog.AppendRequest{Room: "a b", User: "u"}, eventlog.ErrBadRoom},
		{"room too long", eventlog.AppendRequest{Room: string(long), User: "u"}, eventlog.ErrBadRoom},
		{"room unicode", eventlog.AppendRequest{Room: "dóc", User: "u"}, eventlog.ErrBadRoom},
		{"kind uppercase", eventlog.AppendRequest{Room: "good", User: "u", Kind: "Message"}, eventlog.ErrBadKind},
		{"kind too long", eventlog.AppendRequest{Room: "good", User: "u", Kind: string(long[:33])}, eventlog.ErrBadKind},
		{"reserved join", eventlog.AppendRequest{Room: "good", User: "u", Kind: "join"}, eventlog.ErrReservedKind},
		{"reserved leave", eventlog.AppendRequest{Room: "good", User: "u", Kind: "leave"}, eventlog.ErrReservedKind},
		{"reserved presence", eventlog.AppendRequest{Room: "good", User: "u", Kind: "presence"}, eventlog.ErrReservedKind},
		{"no user", eventlog.AppendRequest{Room: "good"}, eventlog.ErrBadUser},
		{"user with NUL", eventlog.AppendRequest{Room: "good", User: "a\x00b"}, eventlog.ErrBadUser},
		{"user not UTF-8", eventlog.AppendRequest{Room: "good", User: "\xff"}, eventlog.ErrBadUser},
		{"session with NUL", eventlog.AppendRequest{Room: "good", User: "u", Session: "\x00"}, eventlog.ErrBadSession},
		{"key too long", eventlog.AppendRequest{Room: "good", User: "u", Key: string(long)}, eventlog.ErrBadKey},
		{"key not UTF-8", eventlog.AppendRequest{Room: "good", User: "u", Key: "\xc3"}, eventlog.ErrBadKey},
		{"body not JSON", eventlog.AppendRequest{Room: "good", User: "u", Body: json.RawMessage(`{"a":`)}, eventlog.ErrBadBody},
		{"body two values", eventlog.AppendRequest{Room: "good", User: "u", Body: json.RawMessage(`1 2`)}, eventlog.ErrBadBody},
		{"body too large", eventlog.AppendRequest{Room: "good", User: "u", Body: big}, eventlog.ErrBodyTooLarge},
	}
	for _, tc := range cases {
		_, err := l.Append(ctx(t), tc.req)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if h, _ := l.Head(ctx(t), "good"); h.Count != 1 {
		t.Fatalf("bad input changed the room: %d events", h.Count)
	}
	n := 0
	l.Rooms(ctx(t), func(eventlog.RoomInfo) error { n++; return nil })
	if n != 1 {
		t.Fatalf("bad input created rooms: %d rooms", n)
	}
	// Reads refuse bad arguments too.
	if _, err := l.ReadAfter(ctx(t), "bad room", eventlog.ID{}, 1); !errors.Is(err, eventlog.ErrBadRoom) {
		t.Errorf("ReadAfter bad room: %v", err)
	}
	if _, err := l.ReadAfter(ctx(t), "good", eventlog.ID{}, 0); !errors.Is(err, eventlog.ErrBadLimit) {
		t.Errorf("ReadAfter limit 0: %v", err)
	}
	if _, err := l.ReadBefore(ctx(t), "good", eventlog.ID{}, -1); !errors.Is(err, eventlog.ErrBadLimit) {
		t.Errorf("ReadBefore limit -1: %v", err)
	}
	if _, err := eventlog.ParseID("not-an-id"); !errors.Is(err, eventlog.ErrBadCursor) {
		t.Errorf("ParseID: %v", err)
	}
	if err := l.SetCursor(ctx(t), "u", "s", "good", eventlog.ID{}); !errors.Is(err, eventlog.ErrBadCursor) {
		t.Errorf("SetCursor zero id: %v", err)
	}
	if err := l.SetCursor(ctx(t), "", "s", "good", eventlog.ID{1}); !errors.Is(err, eventlog.ErrBadUser) {
		t.Errorf("SetCursor no user: %v", err)
	}
}

func testBodies(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	cases := []struct{ in, stored string }{
		{"{ \"a\" : [1, 2,\n 3] }", `{"a":[1,2,3]}`},
		{`"a string"`, `"a string"`},
		{`{"text":"spaces  inside\nstrings stay"}`, `{"text":"spaces  inside\nstrings stay"}`},
		{`null`, ``},
		{``, ``},
		{`{"u":"\u00e9\ud83d\ude00"}`, `{"u":"\u00e9\ud83d\ude00"}`},
	}
	for _, tc := range cases {
		r := mustAppend(t, l, eventlog.AppendRequest{Room: "bodies", User: "u", Body: json.RawMessage(tc.in)})
		if string(r.Event.Body) != tc.stored {
			t.Errorf("body %q acked as %q, want %q", tc.in, r.Event.Body, tc.stored)
		}
		got, _ := l.ReadAfter(ctx(t), "bodies", eventlog.ID{}, 1000)
		if string(got[len(got)-1].Body) != tc.stored {
			t.Errorf("body %q stored as %q, want %q", tc.in, got[len(got)-1].Body, tc.stored)
		}
	}
}
