// Package logtest is the conformance suite of eventlog.Store: every backend runs Run and so keeps
// every promise of the interface, tested the same way. It also gives the tests of the packages
// above the log their checks of what a log holds (trail.go).
package logtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
