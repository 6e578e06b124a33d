package logtest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
)

// Trail lists a room's first 1,000 events as "user/session:kind", separated by spaces: what the
// tests of the packages above the log compare a room's membership trail with.
func Trail(t testing.TB, l eventlog.Log, room string) string {
	t.Helper()
	evs, err := l.ReadAfter(context.Background(), room, eventlog.ID{}, 1000)
	if err != nil {
		t.Fatalf("read the trail of %q: %v", room, err)
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.User + "/" + e.Session + ":" + e.Kind
	}
	return strings.Join(out, " ")
}

// FirstArrivals is ids without their repeats, in the order each first came: what an at-least-once
// reader (a webhook's receiver) makes of what it was sent.
func FirstArrivals(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// SameIDs fails the test unless got, the ids of the events a reader was delivered, are want, the
// ids in the log, in the same order: it says how many each has and where they first differ.
func SameIDs(t testing.TB, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	t.Fatalf("delivered %d events, the log has %d (first difference at %d)", len(got), len(want), i)
}
