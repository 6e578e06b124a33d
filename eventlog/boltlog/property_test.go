package boltlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"pgregory.net/rapid"
)

// TestPropertyExactReads checks against a model, for random interleavings of appends (some with
// repeated keys), reads after random cursors and reopenings, that ids strictly increase in log
// order and that "after X" is exactly the model's suffix.
func TestPropertyExactReads(t *testing.T) {
	dir := t.TempDir()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		path := filepath.Join(dir, fmt.Sprintf("prop-%d.db", n))
		l, err := boltlog.Open(path, boltlog.Options{})
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { l.Close() }()
		ctx := context.Background()
		rooms := []string{"a", "b", "c"}
		model := map[string][]eventlog.Event{}
		keyed := map[string]eventlog.ID{} // room|user|key -> first id
		var last eventlog.ID

		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				room := rapid.SampledFrom(rooms).Draw(rt, "room")
				user := rapid.SampledFrom([]string{"u1", "u2"}).Draw(rt, "user")
				key := rapid.SampledFrom([]string{"", "", "k1", "k2", "k3"}).Draw(rt, "key")
				r, err := l.Append(ctx, eventlog.AppendRequest{Room: room, User: user, Key: key, Body: []byte(`1`)})
				if err != nil {
					rt.Fatal(err)
				}
				mk := room + "|" + user + "|" + key
				if first, ok := keyed[mk]; ok && key != "" {
					if !r.Duplicate || r.Event.ID != first {
						rt.Fatalf("repeat of %s: duplicate=%v id %s, want %s", mk, r.Duplicate, r.Event.ID, first)
					}
					return
				}
				if r.Duplicate {
					rt.Fatalf("first use of %s reported as duplicate", mk)
				}
				if r.Event.ID.Compare(last) <= 0 {
					rt.Fatalf("id %s does not follow %s", r.Event.ID, last)
				}
				last = r.Event.ID
				if key != "" {
					keyed[mk] = r.Event.ID
				}
				model[room] = append(model[room], r.Event)
			},
			"readAfter": func(rt *rapid.T) {
				room := rapid.SampledFrom(rooms).Draw(rt, "room")
				evs := model[room]
				// A cursor: nothing, an event of the room, or an event of another room.
				var after eventlog.ID
				var all []eventlog.Event
				for _, r := range rooms {
					all = append(all, model[r]...)
				}
				if len(all) > 0 && rapid.Bool().Draw(rt, "withCursor") {
					after = all[rapid.IntRange(0, len(all)-1).Draw(rt, "cursor")].ID
				}
				limit := rapid.IntRange(1, 50).Draw(rt, "limit")
				got, err := l.ReadAfter(ctx, room, after, limit)
				if err != nil {
					rt.Fatal(err)
				}
				var want []eventlog.ID
				for _, e := range evs {
					if e.ID.Compare(after) > 0 && len(want) < limit {
						want = append(want, e.ID)
					}
				}
				gotIDs := make([]eventlog.ID, len(got))
				for i, e := range got {
					gotIDs[i] = e.ID
				}
				if !slices.Equal(gotIDs, want) {
					rt.Fatalf("ReadAfter(%s, %s, %d) = %v, want %v", room, after, limit, gotIDs, want)
				}
			},
			"reopen": func(rt *rapid.T) {
				if err := l.Close(); err != nil {
					rt.Fatal(err)
				}
				if l, err = boltlog.Open(path, boltlog.Options{}); err != nil {
					rt.Fatal(err)
				}
			},
		})
	})
}
