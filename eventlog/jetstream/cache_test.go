package jetstream_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// Reads answered partly from the catch-up cache are exact: random cursors (events, ids between
// events, the start), random limits and sequential readers, while the room grows, always get the
// events after the cursor, in order, and nothing else.
func TestCatchUpCacheIsExact(t *testing.T) {
	s := natstest.Start(t)
	l := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	other := openNode(t, []*natstest.Server{s}, jetstream.Options{}) // appends the cache never saw
	ctx := context.Background()
	var all []eventlog.ID
	appendSome := func(k int) {
		for range k {
			node := []*jetstream.Log{l, other}[rand.IntN(2)]
			r, err := node.Append(ctx, text("cached", "u", "x"))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, r.Event.ID)
		}
	}
	appendSome(2500)
	check := func(after eventlog.ID, limit int) []eventlog.ID {
		t.Helper()
		var got []eventlog.ID
		if _, err := l.ReadAfterFunc(ctx, "cached", after, limit, func(e *eventlog.Event) error {
			got = append(got, e.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		i, _ := slices.BinarySearchFunc(all, after, func(id, after eventlog.ID) int {
			if id.Compare(after) <= 0 {
				return -1
			}
			return 1
		})
		want := all[i:min(len(all), i+limit)]
		if !slices.Equal(got, want) {
			t.Fatalf("after %s, limit %d: %d events, want %d", after, limit, len(got), len(want))
		}
		return got
	}
	for round := range 400 {
		var cursor eventlog.ID
		switch rand.IntN(4) {
		case 0:
			cursor = all[rand.IntN(len(all))]
		case 1:
			cursor = all[rand.IntN(len(all))]
			cursor[15]++ // between two events, usually
		case 2:
			// zero: the start
		case 3:
			// a reader going on in pages, as a member catching up does
			cursor = all[rand.IntN(len(all)/2)]
			for range 20 {
				page := check(cursor, 128)
				if len(page) == 0 {
					break
				}
				cursor = page[len(page)-1]
			}
		}
		check(cursor, 1+rand.IntN(300))
		if round%25 == 0 {
			appendSome(1 + rand.IntN(40))
		}
	}
	// Reading the whole room in one call, beyond what the cache keeps.
	if got := check(eventlog.ID{}, 100000); len(got) != len(all) {
		t.Fatalf("whole room: %d of %d", len(got), len(all))
	}
}
