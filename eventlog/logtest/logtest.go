// Package logtest is the conformance suite of eventlog.Store: every backend runs Run and so keeps
// every promise of the interface, tested the same way. It also gives the tests of the packages
// above the log their checks of what a log holds (trail.go).
package logtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// Config is what the suite asks of a backend's configuration.
type Config struct {
	KeyRetention time.Duration
	MaxBody      int
	Now          func() time.Time
}

// Backend opens logs for the suite.
type Backend struct {
	// Open returns a new, empty log configured by cfg. The suite closes it (directly or through
	// Reopen).
	Open func(t testing.TB, cfg Config) eventlog.Store
	// Reopen closes l and returns its storage opened again with the same configuration.
	Reopen func(t testing.TB, l eventlog.Store) eventlog.Store
}

// Clock is a settable clock for Config.Now, safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock by d (which may be negative).
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Run runs every conformance test against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"AppendAndReadAfter", testAppendAndReadAfter},
		{"IDsIncreaseAcrossRooms", testIDsIncreaseAcrossRooms},
		{"ConcurrentAppends", testConcurrentAppends},
		{"AsyncKeepsQueueOrder", testAsyncKeepsQueueOrder},
		{"ReadBefore", testReadBefore},
		{"ReadAfterFunc", testReadAfterFunc},
		{"Idempotency", testIdempotency},
		{"ConcurrentSameKey", testConcurrentSameKey},
		{"KeyRetention", testKeyRetention},
		{"Expect", testExpect},
		{"BadInputChangesNothing", testBadInput},
		{"Bodies", testBodies},
		{"Watch", testWatch},
		{"Rooms", testRooms},
		{"Scan", testScan},
		{"Verify", testVerify},
		{"Acks", testAcks},
		{"Sessions", testSessions},
		{"Snapshots", testSnapshots},
		{"Compact", testCompact},
		{"Reopen", testReopen},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

func open(t *testing.T, b Backend, cfg Config) eventlog.Store {
	t.Helper()
	l := b.Open(t, cfg)
	return l
}

// closeAtEnd closes *l when the test ends (l may have been replaced by Reopen).
func closeAtEnd(t *testing.T, l *eventlog.Store) {
	t.Cleanup(func() {
		if err := (*l).Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustAppend(t *testing.T, l eventlog.Store, req eventlog.AppendRequest) eventlog.AppendResult {
	t.Helper()
	r, err := l.Append(ctx(t), req)
	if err != nil {
		t.Fatalf("Append(%+v): %v", req, err)
	}
	return r
}

func msg(room, user, text string) eventlog.AppendRequest {
	body, _ := json.Marshal(map[string]string{"text": text})
	return eventlog.AppendRequest{Room: room, User: user, Session: "s-" + user, Body: body}
}

func readAll(t *testing.T, l eventlog.Store, room string, after eventlog.ID) []eventlog.Event {
	t.Helper()
	var all []eventlog.Event
	for {
		page, err := l.ReadAfter(ctx(t), room, after, 100)
		if err != nil {
			t.Fatalf("ReadAfter(%q, %s): %v", room, after, err)
		}
		all = append(all, page...)
		if len(page) < 100 {
			return all
		}
		after = page[len(page)-1].ID
	}
}

func ids(evs []eventlog.Event) []eventlog.ID {
	out := make([]eventlog.ID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func assertIncreasing(t *testing.T, what string, ids []eventlog.ID) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if ids[i].Compare(ids[i-1]) <= 0 {
			t.Fatalf("%s: id %d (%s) does not follow id %d (%s)", what, i, ids[i], i-1, ids[i-1])
		}
	}
}

func sameEvent(t *testing.T, got, want eventlog.Event) {
	t.Helper()
	if got.ID != want.ID || got.Room != want.Room || got.Kind != want.Kind || got.User != want.User ||
		got.Session != want.Session || got.Key != want.Key || string(got.Body) != string(want.Body) || got.Hash != want.Hash {
		t.Fatalf("event differs:\n got %+v body %s\nwant %+v body %s", got, got.Body, want, want.Body)
	}
}

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

func testReadAfterFunc(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	for i := range 40 {
		req := msg("f", fmt.Sprint("u", i%3), fmt.Sprint(i))
		req.Key = fmt.Sprint("k", i)
		mustAppend(t, l, req)
	}
	want := readAll(t, l, "f", eventlog.ID{})
	for _, after := range []eventlog.ID{{}, want[9].ID, want[38].ID, want[39].ID} {
		var got []eventlog.Event
		n, err := l.ReadAfterFunc(ctx(t), "f", after, 15, func(e *eventlog.Event) error {
			c := *e // copy what we keep
			c.Room, c.Kind, c.User, c.Session, c.Key = strings.Clone(e.Room), strings.Clone(e.Kind), strings.Clone(e.User), strings.Clone(e.Session), strings.Clone(e.Key)
			c.Body = slices.Clone(e.Body)
			got = append(got, c)
			return nil
		})
		var exp []eventlog.Event
		for _, e := range want {
			if e.ID.Compare(after) > 0 && len(exp) < 15 {
				exp = append(exp, e)
			}
		}
		if err != nil || n != len(exp) || len(got) != len(exp) {
			t.Fatalf("after %s: %d events (n %d, %v), want %d", after, len(got), n, err, len(exp))
		}
		for i := range got {
			sameEvent(t, got[i], exp[i])
		}
	}
	stop := errors.New("stop")
	n, err := l.ReadAfterFunc(ctx(t), "f", eventlog.ID{}, 100, func(e *eventlog.Event) error {
		if e.ID == want[4].ID {
			return stop
		}
		return nil
	})
	if err != stop || n != 4 {
		t.Fatalf("stopping at the fifth event: n %d, %v", n, err)
	}
	if n, err := l.ReadAfterFunc(ctx(t), "nothing-here", eventlog.ID{}, 10, func(*eventlog.Event) error { return nil }); err != nil || n != 0 {
		t.Fatalf("unknown room: %d %v", n, err)
	}
	if _, err := l.ReadAfterFunc(ctx(t), "bad room", eventlog.ID{}, 10, func(*eventlog.Event) error { return nil }); !errors.Is(err, eventlog.ErrBadRoom) {
		t.Fatalf("bad room: %v", err)
	}
}

func testReadBefore(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var all []eventlog.ID
	for i := range 95 {
		all = append(all, mustAppend(t, l, msg("hist", "u", fmt.Sprint(i))).Event.ID)
		mustAppend(t, l, msg("other", "u", "x")) // interleave another room
	}
	// Page backwards from the head: newest last in each page, pages cover everything once.
	var got []eventlog.ID
	before := eventlog.ID{}
	for {
		page, err := l.ReadBefore(ctx(t), "hist", before, 10)
		if err != nil {
			t.Fatalf("ReadBefore: %v", err)
		}
		assertIncreasing(t, "page", ids(page))
		got = append(ids(page), got...)
		if len(page) < 10 {
			break
		}
		before = page[0].ID
	}
	if !slices.Equal(got, all) {
		t.Fatalf("paging backwards gave %d events, want %d", len(got), len(all))
	}
	page, _ := l.ReadBefore(ctx(t), "hist", all[50], 3)
	if !slices.Equal(ids(page), all[47:50]) {
		t.Fatalf("ReadBefore(all[50], 3) = %v, want %v", ids(page), all[47:50])
	}
	if page, _ := l.ReadBefore(ctx(t), "hist", all[0], 3); len(page) != 0 {
		t.Fatalf("before the first event: %d events", len(page))
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

func testWatch(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	w := l.Watch("w1")
	defer w.Close()
	all := l.Watch("")
	defer all.Close()
	other := l.Watch("w2")
	defer other.Close()
	mustAppend(t, l, msg("w1", "u", "x"))
	for _, c := range []*eventlog.Watch{w, all} {
		select {
		case <-c.C():
		case <-time.After(10 * time.Second):
			t.Fatalf("watch %q not signalled after a commit", c.Room())
		}
	}
	select {
	case <-other.C():
		t.Fatalf("watch of another room signalled")
	default:
	}
	// Signals coalesce but are never lost: after many appends at least one is pending, and the
	// events are readable when it arrives.
	for range 20 {
		mustAppend(t, l, msg("w1", "u", "y"))
	}
	select {
	case <-w.C():
		if evs := readAll(t, l, "w1", eventlog.ID{}); len(evs) != 21 {
			t.Fatalf("after the signal %d events are readable, want 21", len(evs))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no signal after 20 appends")
	}
	w.Close()
	w.Close() // idempotent
}

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

func testReopen(t *testing.T, b Backend) {
	if b.Reopen == nil {
		t.Skip("backend has no persistence")
	}
	l := open(t, b, Config{})
	closeAtEnd(t, &l)
	var before []eventlog.Event
	for i := range 50 {
		before = append(before, mustAppend(t, l, msg("persist", "u", fmt.Sprint(i))).Event)
	}
	l = b.Reopen(t, l)
	got := readAll(t, l, "persist", eventlog.ID{})
	if len(got) != len(before) {
		t.Fatalf("after reopen %d events, want %d", len(got), len(before))
	}
	for i := range got {
		sameEvent(t, got[i], before[i])
	}
	after := mustAppend(t, l, msg("elsewhere", "u", "x")).Event
	if after.ID.Compare(before[len(before)-1].ID) <= 0 {
		t.Fatalf("id after reopen %s is not after %s", after.ID, before[len(before)-1].ID)
	}
	next := mustAppend(t, l, msg("persist", "u", "more")).Event
	if rep, err := l.Verify(ctx(t), ""); err != nil || rep.Broken != nil {
		t.Fatalf("verify after reopen: %+v %v", rep.Broken, err)
	}
	if h, _ := l.Head(ctx(t), "persist"); h.ID != next.ID || h.Count != 51 {
		t.Fatalf("head after reopen: %+v", h)
	}
}

func testClosed(t *testing.T, b Backend) {
	l := open(t, b, Config{})
	mustAppend(t, l, msg("c", "u", "x"))
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := l.Append(context.Background(), msg("c", "u", "y")); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("append after Close: %v, want ErrClosed", err)
	}
	if err := l.SetCursor(context.Background(), "u", "s", "c", eventlog.ID{1}); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("SetCursor after Close: %v, want ErrClosed", err)
	}
}
