package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/eventlog/memlog"
	"github.com/roomlog/roomlog/rooms"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openLog returns an in-memory log: the hub's logic is tested here, the file's in eventlog.
func openLog(t *testing.T) *memlog.Log {
	l := memlog.New(memlog.Options{})
	t.Cleanup(func() { l.Close() })
	return l
}

func TestMembershipAndGrace(t *testing.T) {
	l := openLog(t)
	h := rooms.NewHub(l, rooms.Options{Grace: 300 * time.Millisecond})
	ctx := context.Background()
	defer h.Close(ctx)
	// Two connections of one session: one join event; the session stays while one remains.
	j, err := h.Join(ctx, "r", "alice", "s1", json.RawMessage(`{"name":"A"}`))
	if err != nil || j.Event.IsZero() || j.Unlogged {
		t.Fatalf("join: %+v %v", j, err)
	}
	if j2, err := h.Join(ctx, "r", "alice", "s1", nil); err != nil || !j2.Event.IsZero() {
		t.Fatalf("second join of the session appended %s (%v)", j2.Event, err)
	}
	h.Leave(ctx, "r", "alice", "s1", true)
	if got := logtest.Trail(t, l, "r"); got != "alice/s1:join" {
		t.Fatalf("after one of two leaves: %q", got)
	}
	if m := h.Members("r"); len(m) != 1 || string(m[0].Presence) != `{"name":"A"}` {
		t.Fatalf("members %+v", m)
	}
	h.Leave(ctx, "r", "alice", "s1", true)
	if got := logtest.Trail(t, l, "r"); got != "alice/s1:join alice/s1:leave" {
		t.Fatalf("explicit leave: %q", got)
	}
	if err := h.Leave(ctx, "r", "alice", "s1", true); !errors.Is(err, rooms.ErrNotJoined) {
		t.Fatalf("leave when not joined: %v", err)
	}
	// A disconnect leaves after the grace period, unless the session is back.
	h.Join(ctx, "g", "bob", "s2", nil)
	h.Leave(ctx, "g", "bob", "s2", false)
	h.Join(ctx, "g", "bob", "s2", nil) // back in time
	time.Sleep(500 * time.Millisecond)
	if got := logtest.Trail(t, l, "g"); got != "bob/s2:join" {
		t.Fatalf("reconnect within the grace period: %q", got)
	}
	h.Leave(ctx, "g", "bob", "s2", false)
	deadline := time.Now().Add(5 * time.Second)
	for logtest.Trail(t, l, "g") != "bob/s2:join bob/s2:leave" {
		if time.Now().After(deadline) {
			t.Fatalf("no leave after the grace period: %q", logtest.Trail(t, l, "g"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Presence needs membership.
	if _, err := h.SetPresence(ctx, "g", "bob", "s2", json.RawMessage(`1`)); !errors.Is(err, rooms.ErrNotJoined) {
		t.Fatalf("presence of a non-member: %v", err)
	}
	h.Join(ctx, "p", "carol", "s3", nil)
	if _, err := h.SetPresence(ctx, "p", "carol", "s3", json.RawMessage(`{"typing":true}`)); err != nil {
		t.Fatal(err)
	}
	if m := h.Members("p"); len(m) != 1 || string(m[0].Presence) != `{"typing":true}` {
		t.Fatalf("presence not kept: %+v", m)
	}
	if online := h.Online(); online["p"] != 1 || online["r"] != 0 {
		t.Fatalf("online %v", online)
	}
}

func TestCloseAndOrphans(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	h := rooms.NewHub(l, rooms.Options{Grace: time.Hour})
	h.Join(ctx, "a", "u", "s", nil)
	h.Join(ctx, "b", "u", "s", nil)
	h.Leave(ctx, "b", "u", "s", false) // in its grace period
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if logtest.Trail(t, l, "a") != "u/s:join u/s:leave" || logtest.Trail(t, l, "b") != "u/s:join u/s:leave" {
		t.Fatalf("close: %q / %q", logtest.Trail(t, l, "a"), logtest.Trail(t, l, "b"))
	}
	// A session the log records as joined (as after a crash) is closed by CloseOrphans.
	l.Append(ctx, eventlog.AppendRequest{Room: "c", User: "u", Session: "s", Kind: eventlog.KindJoin, System: true})
	h2 := rooms.NewHub(l, rooms.Options{})
	defer h2.Close(ctx)
	if n, err := h2.CloseOrphans(ctx); err != nil || n != 1 {
		t.Fatalf("orphans: %d %v", n, err)
	}
	if logtest.Trail(t, l, "c") != "u/s:join u/s:leave" {
		t.Fatalf("orphan not closed: %q", logtest.Trail(t, l, "c"))
	}
}

// TestJoinWhileTheLastMemberLeaves: a session joining while the room's last member leaves (and
// its last subscriber closes) is a member of the room the hub knows, never of one it dropped.
func TestJoinWhileTheLastMemberLeaves(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	h := rooms.NewHub(l, rooms.Options{Grace: rooms.NoGrace})
	for i := range 300 {
		room := fmt.Sprint("race-", i)
		if _, err := h.Join(ctx, room, "a", "s1", nil); err != nil {
			t.Fatal(err)
		}
		sub, err := h.Subscribe(room, &waker{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		var sub2 *rooms.Subscription
		go func() {
			defer wg.Done()
			sub.Close()
			h.Leave(ctx, room, "a", "s1", true)
		}()
		go func() {
			defer wg.Done()
			if _, err := h.Join(ctx, room, "b", "s2", nil); err != nil {
				t.Error(err)
			}
			sub2, _ = h.Subscribe(room, &waker{})
		}()
		wg.Wait()
		if m := h.Members(room); len(m) != 1 || m[0].Session != "s2" {
			t.Fatalf("round %d: members %+v, want s2 alone", i, m)
		}
		if online := h.Online(); online[room] != 1 {
			t.Fatalf("round %d: online %v", i, online)
		}
		if sub2 != nil {
			sub2.Close()
		}
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Every join has its leave: the hub saw every member it had.
	var open []string
	l.Sessions(ctx, func(s eventlog.Session) error { open = append(open, s.Room+"/"+s.Session); return nil })
	if len(open) > 0 {
		t.Fatalf("sessions still joined in the log after Close: %v", open)
	}
}

type waker struct{ n atomic.Int32 }

func (w *waker) Wake() { w.n.Add(1) }

// TestFeedCoversItsRing: the feed wakes subscribers on commits and serves the recent events it
// holds; a cursor older than its memory is told to read the log.
func TestFeedCoversItsRing(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	h := rooms.NewHub(l, rooms.Options{RingSize: 8})
	defer h.Close(ctx)
	first, _ := l.Append(ctx, eventlog.AppendRequest{Room: "f", User: "u"})
	w := &waker{}
	sub, err := h.Subscribe("f", w)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, ok := sub.After(eventlog.ID{}, 10); ok {
		t.Fatalf("the feed claims events from before it started")
	}
	var ids []eventlog.ID
	for range 20 {
		r, _ := l.Append(ctx, eventlog.AppendRequest{Room: "f", User: "u"})
		ids = append(ids, r.Event.ID)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, ok := sub.After(ids[18], 10); ok && len(got) == 1 && got[0].Event.ID == ids[19] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed never caught up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w.n.Load() == 0 {
		t.Fatalf("the subscriber was never woken")
	}
	if _, ok := sub.After(first.Event.ID, 10); ok {
		t.Fatalf("a cursor older than the ring of 8 was served from it")
	}
	got, ok := sub.After(ids[15], 2)
	if !ok || len(got) != 2 || got[0].Event.ID != ids[16] {
		t.Fatalf("After(ids[15], 2) = %d entries, %v", len(got), ok)
	}
	// One encoding per slot, shared.
	calls := 0
	enc := func(*eventlog.Event) []byte { calls++; return []byte("x") }
	got[0].Encoded(0, enc)
	got[0].Encoded(0, enc)
	if calls != 1 {
		t.Fatalf("encoded %d times", calls)
	}
}

// flakyLog fails its next ReadAfter calls: a storage hiccup as the room feed sees it.
type flakyLog struct {
	eventlog.Store
	fails atomic.Int32
}

func (l *flakyLog) ReadAfter(ctx context.Context, room string, after eventlog.ID, max int) ([]eventlog.Event, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, errors.New("injected read failure")
	}
	return l.Store.ReadAfter(ctx, room, after, max)
}

// TestFeedRetriesAFailedRead: after a failed read, the feed tries again by itself; in a quiet
// room no later commit would wake it, and its subscribers would never see the event.
func TestFeedRetriesAFailedRead(t *testing.T) {
	l := &flakyLog{Store: openLog(t)}
	ctx := context.Background()
	h := rooms.NewHub(l, rooms.Options{Logger: slog.New(slog.DiscardHandler)})
	defer h.Close(ctx)
	sub, err := h.Subscribe("quiet", &waker{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	l.fails.Store(3)
	res, err := l.Append(ctx, eventlog.AppendRequest{Room: "quiet", User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, ok := sub.After(eventlog.ID{}, 10); ok && len(got) == 1 && got[0].Event.ID == res.Event.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed never delivered the event committed during its read failures")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublishAuthorises: publishing goes through the grants; the event is the grants' user's,
// and a client cannot write the reserved kinds.
func TestPublishAuthorises(t *testing.T) {
	l := openLog(t)
	h := rooms.NewHub(l, rooms.Options{})
	defer h.Close(context.Background())
	ctx := context.Background()
	reader := auth.Grants{User: "ro", ReadRooms: []string{"doc:*"}}
	if _, err := h.AuthorizePublish(ctx, reader, "doc:1", ""); !errors.Is(err, rooms.ErrForbidden) {
		t.Fatalf("a read-only publish: %v, want ErrForbidden", err)
	}
	if _, err := h.Publish(rooms.Permit{}, eventlog.AppendRequest{Room: "doc:1", Body: json.RawMessage(`1`)}); !errors.Is(err, rooms.ErrForbidden) {
		t.Fatalf("a publish without a permit: %v, want ErrForbidden", err)
	}
	writer := auth.Grants{User: "ann", Rooms: []string{"doc:*"}}
	permit, err := h.AuthorizePublish(ctx, writer, "doc:1", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []eventlog.AppendRequest{{Room: "doc:2"}, {Room: "doc:1", Kind: eventlog.KindSnapshot}} {
		if _, err := h.Publish(permit, other); !errors.Is(err, rooms.ErrForbidden) {
			t.Fatalf("a permit for doc:1 messages used for %+v: %v, want ErrForbidden", other, err)
		}
	}
	p, err := h.Publish(permit, eventlog.AppendRequest{Room: "doc:1", User: "mallory", Body: json.RawMessage(`2`)})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Wait(context.Background()); err != nil || res.Event.User != "ann" {
		t.Fatalf("publish: %+v %v, want user ann", res.Event, err)
	}
	joinPermit, _ := h.AuthorizePublish(ctx, writer, "doc:1", eventlog.KindJoin)
	p, _ = h.Publish(joinPermit, eventlog.AppendRequest{Room: "doc:1", Kind: eventlog.KindJoin, System: true})
	if _, err := p.Wait(context.Background()); !errors.Is(err, eventlog.ErrReservedKind) {
		t.Fatalf("a client join event: %v, want ErrReservedKind", err)
	}
	if got := logtest.Trail(t, l, "doc:1"); got != "ann/:message" {
		t.Fatalf("the room holds %q", got)
	}
}

// signalSink is a subscriber that records the signals it is handed.
type signalSink struct {
	mu  sync.Mutex
	got []string
}

func (s *signalSink) Wake() {}
func (s *signalSink) Signal(sig *rooms.Signal) {
	s.mu.Lock()
	s.got = append(s.got, sig.User+":"+string(sig.Body))
	s.mu.Unlock()
}

func TestSignalReachesOtherSubscribersOnly(t *testing.T) {
	l := openLog(t)
	h := rooms.NewHub(l, rooms.Options{})
	if n := h.Signal(nil, &rooms.Signal{Room: "empty", User: "u", Body: json.RawMessage(`1`)}); n != 0 {
		t.Fatalf("a room without subscribers took the signal %d times", n)
	}
	if got := h.Online(); len(got) != 0 {
		t.Fatalf("a signal to an empty room created it: %v", got)
	}
	a, b, other := &signalSink{}, &signalSink{}, &signalSink{}
	for _, s := range []struct {
		room string
		w    *signalSink
	}{{"doc", a}, {"doc", b}, {"elsewhere", other}} {
		sub, err := h.Subscribe(s.room, s.w)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
	}
	plain, err := h.Subscribe("doc", nopWaker{}) // a subscriber that takes no signals
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if n := h.Signal(a, &rooms.Signal{Room: "doc", User: "alice", Body: json.RawMessage(`{"x":1}`)}); n != 1 {
		t.Fatalf("signal handed to %d subscribers, want 1 (not the sender, not the plain waker)", n)
	}
	if len(a.got) != 0 || len(other.got) != 0 || fmt.Sprint(b.got) != `[alice:{"x":1}]` {
		t.Fatalf("sender %v, other room %v, member %v", a.got, other.got, b.got)
	}
	if evs, _ := l.ReadAfter(context.Background(), "doc", eventlog.ID{}, 10); len(evs) != 0 {
		t.Fatalf("a signal was logged: %v", evs)
	}
}

type nopWaker struct{}

func (nopWaker) Wake() {}

// forgetful is an Authorizer that records what Remove has it forget.
type forgetful struct {
	mu     sync.Mutex
	forgot []string
}

func (f *forgetful) Authorize(_ context.Context, g auth.Grants, action auth.Action, room string) error {
	return g.Authorize(action, room)
}

func (f *forgetful) Forget(user, room string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, user+"@"+room)
}

// TestRemove: Remove takes every session of the user out of the room at once (one held by two
// connections, one in its grace period), appends a leave per session naming who removed it and
// why, leaves other users and rooms alone, and has the Authorizer forget its decision.
func TestRemove(t *testing.T) {
	l := openLog(t)
	a := &forgetful{}
	h := rooms.NewHub(l, rooms.Options{Grace: time.Hour, Authorizer: a})
	ctx := context.Background()
	defer h.Close(ctx)
	h.Join(ctx, "doc", "bob", "phone", nil)
	h.Join(ctx, "doc", "bob", "phone", nil) // a second connection of the session
	h.Join(ctx, "doc", "bob", "laptop", nil)
	h.Leave(ctx, "doc", "bob", "laptop", false) // dropped: in its grace period
	h.Join(ctx, "doc", "ann", "desk", nil)
	h.Join(ctx, "other", "bob", "phone", nil)
	sessions, err := h.Remove(ctx, "doc", "bob", "ops", "unshared")
	if err != nil || len(sessions) != 2 {
		t.Fatalf("removed %v, %v; want two sessions", sessions, err)
	}
	if m := h.Members("doc"); len(m) != 1 || m[0].User != "ann" {
		t.Fatalf("members after the removal: %+v", m)
	}
	if m := h.Members("other"); len(m) != 1 {
		t.Fatalf("the other room lost its member: %+v", m)
	}
	evs, _ := l.ReadAfter(ctx, "doc", eventlog.ID{}, 100)
	var bodies []string
	for _, e := range evs {
		if e.Kind == eventlog.KindLeave {
			bodies = append(bodies, e.Session+" "+string(e.Body))
		}
	}
	slices.Sort(bodies)
	want := []string{`laptop {"reason":"unshared","removed_by":"ops"}`, `phone {"reason":"unshared","removed_by":"ops"}`}
	if !slices.Equal(bodies, want) {
		t.Fatalf("leaves %q, want %q", bodies, want)
	}
	if !slices.Equal(a.forgot, []string{"bob@doc"}) {
		t.Fatalf("forgot %v", a.forgot)
	}
	if err := h.Leave(ctx, "doc", "bob", "phone", true); !errors.Is(err, rooms.ErrNotJoined) {
		t.Fatalf("leave after removal: %v, want ErrNotJoined", err)
	}
}

// BenchmarkMembers lists the members of a room of n, as every join into it does (so filling
// a room of n lists it n times):
//
//	go test -run '^$' -bench BenchmarkMembers ./rooms/
func BenchmarkMembers(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			h := rooms.NewHub(memlog.New(memlog.Options{}), rooms.Options{})
			defer h.Close(context.Background())
			for i := range n {
				if _, err := h.Join(context.Background(), "big", fmt.Sprint("u", i), "s", nil); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if got := len(h.Members("big")); got != n {
					b.Fatalf("%d members, want %d", got, n)
				}
			}
		})
	}
}
