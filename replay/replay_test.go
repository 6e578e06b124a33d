package replay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/rooms"
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
	l := eventlog.NewMemLog(eventlog.Options{}) // the stream's logic, not the file's, is tested here
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
	l := eventlog.NewMemLog(eventlog.Options{}) // the stream's logic, not the file's, is tested here
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
