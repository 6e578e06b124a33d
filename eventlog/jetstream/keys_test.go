package jetstream_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// keyed appends n events keyed prefix-0 … prefix-(n-1) and returns their ids by key.
func keyed(t *testing.T, l *jetstream.Log, room, prefix string, n int, wantDup bool) map[string]eventlog.ID {
	t.Helper()
	ids := map[string]eventlog.ID{}
	for i := range n {
		req := text(room, "alice", fmt.Sprint(prefix, i))
		req.Key = fmt.Sprint(prefix, "-", i)
		r, err := l.Append(context.Background(), req)
		if err != nil {
			t.Fatalf("append %s: %v", req.Key, err)
		}
		if r.Duplicate != wantDup {
			t.Fatalf("append %s: duplicate %v, want %v", req.Key, r.Duplicate, wantDup)
		}
		ids[req.Key] = r.Event.ID
	}
	return ids
}

// On a stream of one replica key markers are written after their events. A node that dies
// after its keyed events were acked and before their markers were written leaves keys that
// still dedupe: on the node itself while it runs, and on another node that picks the room up
// (which reads the room's events after its watermark, and writes the missing markers).
func TestKeyFoundWithoutItsMarker(t *testing.T) {
	s := natstest.Start(t)
	servers := []*natstest.Server{s}
	a := openNode(t, servers, jetstream.Options{})
	const room = "doc:keys"
	marked := keyed(t, a, room, "m", 20, false)
	// Let a's markers and the watermark above them be written, then lose every later one.
	last, err := rawStream(t, s).GetLastMsgForSubject(context.Background(), "roomlog.ev."+roomToken(room))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "watermark past the marked events", func() bool { return watermark(t, s, room) >= last.Sequence })
	a.DropKeyMarkers()
	unmarked := keyed(t, a, room, "u", 20, false)
	for i := range 5 { // unkeyed events between
		if _, err := a.Append(context.Background(), text(room, "bob", fmt.Sprint("plain ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if again := keyed(t, a, room, "u", 20, true); !sameIDs(again, unmarked) {
		t.Fatalf("the node itself: retries answered %v, want %v", again, unmarked)
	}
	a.Kill()

	b := openNode(t, servers, jetstream.Options{})
	if again := keyed(t, b, room, "u", 20, true); !sameIDs(again, unmarked) {
		t.Fatalf("another node, unmarked keys: %v, want %v", again, unmarked)
	}
	if again := keyed(t, b, room, "m", 20, true); !sameIDs(again, marked) {
		t.Fatalf("another node, marked keys: %v, want %v", again, marked)
	}
	keyed(t, b, room, "new", 3, false)
	evs, err := b.ReadAfter(context.Background(), room, eventlog.ID{}, 1000)
	if err != nil || len(evs) != 20+20+5+3 {
		t.Fatalf("the room holds %d events (%v), want %d", len(evs), err, 48)
	}

	// b wrote the markers a did not: a third node finds every key by its marker.
	b.Close()
	c := openNode(t, servers, jetstream.Options{})
	waitFor(t, "the markers", func() bool { return keyMarkers(t, s) >= 43 })
	if again := keyed(t, c, room, "u", 20, true); !sameIDs(again, unmarked) {
		t.Fatalf("a third node: %v, want %v", again, unmarked)
	}
}

// Two nodes racing to append the same keys to one room append each once, whether a key's marker
// is written yet or not.
func TestSameKeysFromTwoNodes(t *testing.T) {
	s := natstest.Start(t)
	servers := []*natstest.Server{s}
	a := openNode(t, servers, jetstream.Options{})
	b := openNode(t, servers, jetstream.Options{})
	b.DropKeyMarkers()
	const room, n = "doc:race", 200
	var wg sync.WaitGroup
	ids := make([][]eventlog.ID, 2)
	for w, l := range []*jetstream.Log{a, b} {
		ids[w] = make([]eventlog.ID, n)
		wg.Go(func() {
			pending := make([]*eventlog.Pending, n)
			for i := range n {
				req := text(room, "alice", fmt.Sprint(i))
				req.Key = fmt.Sprint("k", i)
				pending[i] = l.AppendAsync(req)
			}
			for i, p := range pending {
				r, err := p.Wait(context.Background())
				if err != nil {
					t.Errorf("node %d, key %d: %v", w, i, err)
					return
				}
				ids[w][i] = r.Event.ID
			}
		})
	}
	wg.Wait()
	for i := range n {
		if ids[0][i] != ids[1][i] {
			t.Fatalf("key k%d: node a got %s, node b %s", i, ids[0][i], ids[1][i])
		}
	}
	evs, err := a.ReadAfter(context.Background(), room, eventlog.ID{}, 1000)
	if err != nil || len(evs) != n {
		t.Fatalf("the room holds %d events (%v), want %d", len(evs), err, n)
	}
}

// A stream made before the key watermarks (no rollups allowed) is updated by Open, and its
// rooms go on.
func TestStreamWithoutRollupsIsUpdated(t *testing.T) {
	s := natstest.Start(t)
	js, _ := njs.New(natstest.Connect(t, s))
	ctx := context.Background()
	_, err := js.CreateStream(ctx, njs.StreamConfig{
		Name: jetstream.DefaultStream, Subjects: []string{"roomlog.ev.>", "roomlog.key.>", "roomlog.snap.>", "roomlog.floor.>", "roomlog.sess.>"},
		Storage: njs.FileStorage, AllowDirect: true, AllowMsgTTL: true, AllowAtomicPublish: true, DenyDelete: true,
		Discard: njs.DiscardNew, RePublish: &njs.RePublish{Source: "roomlog.ev.>", Destination: "roomlog.live.>", HeadersOnly: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ids := keyed(t, l, "doc:old", "k", 3, false)
	if again := keyed(t, l, "doc:old", "k", 3, true); !sameIDs(again, ids) {
		t.Fatalf("retries answered %v, want %v", again, ids)
	}
	if !rawStream(t, s).CachedInfo().Config.AllowRollup {
		t.Fatal("the stream does not allow rollups after Open")
	}
}

func sameIDs(a, b map[string]eventlog.ID) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watermark is the room's key watermark (0: none).
func watermark(t *testing.T, s *natstest.Server, room string) uint64 {
	t.Helper()
	m, err := rawStream(t, s).GetLastMsgForSubject(context.Background(), "roomlog.key.w."+roomToken(room))
	if err != nil || len(m.Data) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(m.Data)
}

func roomToken(room string) string { return base64.RawURLEncoding.EncodeToString([]byte(room)) }

// keyMarkers counts the stream's key markers.
func keyMarkers(t *testing.T, s *natstest.Server) int {
	t.Helper()
	info, err := rawStream(t, s).Info(context.Background(), njs.WithSubjectFilter("roomlog.key.*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

// A compaction purges no keyed event whose marker is not stored: a node that cannot write its
// markers cannot compact the room, and a node that picks the room up writes them first, after
// which the keys of the purged events still dedupe.
func TestCompactionWaitsForKeyMarkers(t *testing.T) {
	s := natstest.Start(t)
	servers := []*natstest.Server{s}
	a := openNode(t, servers, jetstream.Options{Timeout: 2 * time.Second})
	a.DropKeyMarkers()
	const room = "doc:compact"
	ids := keyed(t, a, room, "k", 5, false)
	head, err := a.Head(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"covers": head.ID.String(), "state": "s"})
	if _, err := a.Append(context.Background(), eventlog.AppendRequest{Room: room, User: "snapper", Kind: eventlog.KindSnapshot, Body: body, Expect: &head.ID}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := a.Compact(ctx, room, "ops"); err == nil {
		t.Fatal("compacted a room whose key markers were not stored")
	}
	if floor, err := a.Floor(context.Background(), room); err != nil || !floor.ID.IsZero() {
		t.Fatalf("the floor moved to %s (%v) without the markers", floor.ID, err)
	}
	a.Kill()

	b := openNode(t, servers, jetstream.Options{})
	res, err := b.Compact(context.Background(), room, "ops")
	if err != nil || res.Removed != 5 {
		t.Fatalf("compact on another node: removed %d, %v; want 5", res.Removed, err)
	}
	if again := keyed(t, b, room, "k", 5, true); !sameIDs(again, ids) {
		t.Fatalf("after the compaction: retries answered %v, want %v", again, ids)
	}
}

// Keyed events waiting for their markers are bounded per room: past the bound the room's appends
// wait for the markers, and fail when they do not come, instead of holding ever more in memory.
func TestUnmarkedKeysAreBounded(t *testing.T) {
	jetstream.SetMaxUnmarked(t, 4)
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{Timeout: 300 * time.Millisecond})
	a.DropKeyMarkers()
	keyed(t, a, "doc:bound", "k", 4, false)
	req := text("doc:bound", "alice", "one too many")
	req.Key = "k-4"
	if _, err := a.Append(context.Background(), req); err == nil {
		t.Fatal("a fifth keyed event was appended while four waited for their markers")
	}
	evs, err := a.ReadAfter(context.Background(), "doc:bound", eventlog.ID{}, 10)
	if err != nil || len(evs) != 4 {
		t.Fatalf("the room holds %d events (%v), want 4", len(evs), err)
	}
}
