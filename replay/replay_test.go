package replay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/eventlog/memlog"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/rooms"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFilter(t *testing.T) {
	f, err := replay.ParseFilter(replay.FilterArgs{Rooms: []string{"doc:*,chat", "news"}, User: "u", Kind: "edit",
		Since: "2026-11-27T10:00:00Z", Until: "01M8EFB9CY30TY391ND393D4VV", Limit: "5"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rooms) != 3 || f.Limit != 5 || f.Since != eventlog.MinIDAt(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)) || f.Until.IsZero() {
		t.Fatalf("filter %+v", f)
	}
	for _, bad := range []replay.FilterArgs{{Rooms: []string{"a b"}}, {Kind: "Bad"}, {Since: "yesterday"}, {After: "nope"}, {Limit: "-1"}, {Limit: "x"}} {
		if _, err := replay.ParseFilter(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestStreamSyncsOnceAtTheHead: a stream hands out the events after its cursor up to the head it
// was given, says synced exactly there, then goes on with live events; it reads the log for what
// the room's memory does not hold.
func TestStreamSyncsOnceAtTheHead(t *testing.T) {
	l := memlog.New(memlog.Options{}) // the stream's logic, not the file's, is tested here
	defer l.Close()
	ctx := context.Background()
	var ids []eventlog.ID
	for range 30 {
		r, _ := l.Append(ctx, eventlog.AppendRequest{Room: "s", User: "u"})
		ids = append(ids, r.Event.ID)
	}
	h := rooms.NewHub(l, rooms.Options{RingSize: 4})
	defer h.Close(ctx)
	sub, err := h.Subscribe("s", nopWaker{})
	if err != nil {
		t.Fatal(err)
	}
	s := replay.NewStream(l, sub, ids[4], ids[29])
	defer s.Close()
	var got []eventlog.ID
	syncs, syncedAt := 0, -1
	own := func(e *eventlog.Event) error { got = append(got, e.ID); return nil }
	for range 100 {
		shared, n, synced, err := s.Next(ctx, 7, own)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range shared {
			got = append(got, e.Event.ID)
		}
		if synced {
			syncs++
			syncedAt = len(got)
		}
		if n == 0 && !synced {
			break
		}
	}
	if syncs != 1 || syncedAt != 25 || len(got) != 25 || got[0] != ids[5] || got[24] != ids[29] {
		t.Fatalf("%d events, synced %d times after %d", len(got), syncs, syncedAt)
	}
	// Live events follow.
	r, _ := l.Append(ctx, eventlog.AppendRequest{Room: "s", User: "u"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		var live []eventlog.ID
		shared, n, synced, err := s.Next(ctx, 7, func(e *eventlog.Event) error { live = append(live, e.ID); return nil })
		if err != nil || synced {
			t.Fatalf("after sync: %v %v", err, synced)
		}
		for _, e := range shared {
			live = append(live, e.Event.ID)
		}
		if n == 1 {
			if live[0] != r.Event.ID {
				t.Fatalf("live event %s, want %s", live[0], r.Event.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live event never came")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuditFollowAndLimit(t *testing.T) {
	l := memlog.New(memlog.Options{}) // the stream's logic, not the file's, is tested here
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		l.Append(ctx, eventlog.AppendRequest{Room: "a", User: "u"})
	}
	n := 0
	err := replay.Audit(ctx, l, eventlog.ScanFilter{Limit: 2}, false, func(*eventlog.Event) error { n++; return nil }, func() error { return nil })
	if err != nil || n != 2 {
		t.Fatalf("limit 2: %d events, %v", n, err)
	}
	// follow: events appended later arrive; cancelling ends it.
	got := make(chan eventlog.ID, 10)
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- replay.Audit(fctx, l, eventlog.ScanFilter{}, true, func(e *eventlog.Event) error { got <- e.ID; return nil }, func() error { return nil })
	}()
	for range 3 {
		<-got
	}
	r, _ := l.Append(ctx, eventlog.AppendRequest{Room: "b", User: "u"})
	if id := <-got; id != r.Event.ID {
		t.Fatalf("followed %s, want %s", id, r.Event.ID)
	}
	fcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
}

type nopWaker struct{}

func (nopWaker) Wake() {}

// TestResumeChoosesTheCursor: the client's cursor first, then the session's recorded one, then the
// head; unknown and future cursors are flagged, and a future one starts at the head.
func TestResumeChoosesTheCursor(t *testing.T) {
	l := memlog.New(memlog.Options{})
	defer l.Close()
	ctx := context.Background()
	h := rooms.NewHub(l, rooms.Options{Grace: rooms.NoGrace})
	defer h.Close(ctx)
	var ids []eventlog.ID
	for range 5 {
		r, _ := l.Append(ctx, eventlog.AppendRequest{Room: "r", User: "u"})
		ids = append(ids, r.Event.ID)
	}
	l.SetCursor(ctx, "u", "phone", "r", ids[2])
	future := eventlog.MinIDAt(time.Now().Add(time.Hour))
	unknown := eventlog.MinIDAt(time.Now().Add(-time.Hour))
	zero := eventlog.ID{}
	for _, tc := range []struct {
		name             string
		session          string
		after            *eventlog.ID
		resumed, unknown bool
		start            func(head eventlog.ID) eventlog.ID
	}{
		{"client cursor", "phone", &ids[1], false, false, func(eventlog.ID) eventlog.ID { return ids[1] }},
		{"whole room", "phone", &zero, false, false, func(eventlog.ID) eventlog.ID { return zero }},
		{"recorded cursor", "phone", nil, true, false, func(eventlog.ID) eventlog.ID { return ids[2] }},
		{"live", "tablet", nil, false, false, func(head eventlog.ID) eventlog.ID { return head }},
		{"unknown cursor", "tablet", &unknown, false, true, func(eventlog.ID) eventlog.ID { return unknown }},
		{"future cursor", "tablet", &future, false, true, func(head eventlog.ID) eventlog.ID { return head }},
	} {
		j, err := replay.Resume(ctx, h, l, nopWaker{}, replay.JoinRequest{Room: "r", User: "u", Session: tc.session, After: tc.after})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if j.Stream.Cursor() != tc.start(j.Head) || !j.Resumed.IsZero() != tc.resumed || j.Unknown != tc.unknown {
			t.Errorf("%s: start %s, resumed %s, unknown %v", tc.name, j.Stream.Cursor(), j.Resumed, j.Unknown)
		}
		if len(j.Members) == 0 {
			t.Errorf("%s: no members listed", tc.name)
		}
		j.Stream.Close()
		h.Leave(ctx, "r", "u", tc.session, true)
	}
	// A join whose head cannot be read is undone: the session does not stay a member.
	broken := rooms.NewHub(headFails{l}, rooms.Options{Grace: rooms.NoGrace})
	defer broken.Close(ctx)
	if _, err := replay.Resume(ctx, broken, l, nopWaker{}, replay.JoinRequest{Room: "r", User: "u", Session: "s"}); err == nil {
		t.Fatalf("a resume whose head read failed succeeded")
	}
	if m := broken.Members("r"); len(m) != 0 {
		t.Fatalf("a failed resume left members %+v", m)
	}
	if got := logtest.Trail(t, l, "r"); !strings.HasSuffix(got, "u/s:join u/s:leave") {
		t.Fatalf("a failed resume did not write its leave: %s", got)
	}
}

// headFails is a log whose Head fails: a storage error in the middle of a resume.
type headFails struct{ eventlog.Store }

func (headFails) Head(context.Context, string) (eventlog.Head, error) {
	return eventlog.Head{}, errors.New("injected head failure")
}
