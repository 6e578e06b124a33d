package logtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// The reading tests: pages after and before an id, and watching a room.

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
