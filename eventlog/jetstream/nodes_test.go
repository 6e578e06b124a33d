package jetstream_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// Several roomlog nodes share one stream, each with a connection of its own: what one appends,
// the others see, and a room's order, Expect and keys hold across them.

func openNode(t *testing.T, servers []*natstest.Server, opts jetstream.Options) *jetstream.Log {
	t.Helper()
	nc := natstest.Connect(t, servers...)
	l, err := jetstream.Open(context.Background(), nc, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func text(room, user, s string) eventlog.AppendRequest {
	return eventlog.AppendRequest{Room: room, User: user, Body: []byte(fmt.Sprintf(`{"text":%q}`, s))}
}

func TestNodesShareRooms(t *testing.T) {
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	b := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ctx := context.Background()

	// A watch on b wakes for an append on a, and b reads it.
	w := b.Watch("doc:shared")
	defer w.Close()
	r, err := a.Append(ctx, text("doc:shared", "ann", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.C():
	case <-time.After(10 * time.Second):
		t.Fatal("b's watch was not woken by a's append")
	}
	got, err := b.ReadAfter(ctx, "doc:shared", eventlog.ID{}, 10)
	if err != nil || len(got) != 1 || got[0].ID != r.Event.ID || got[0].Hash != r.Event.Hash {
		t.Fatalf("b read %v, %v; want a's event", got, err)
	}

	// A key used on a is a duplicate on b.
	keyed := text("doc:shared", "ann", "once")
	keyed.Key = "k1"
	first, err := a.Append(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Append(ctx, keyed)
	if err != nil || !again.Duplicate || again.Event.ID != first.Event.ID {
		t.Fatalf("the same key on another node: %+v, %v", again, err)
	}

	// Expect on one head from both nodes: exactly one wins.
	head := first.Event.ID
	var wins, conflicts int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, l := range []*jetstream.Log{a, b, a, b} {
		wg.Go(func() {
			req := text("doc:shared", "ann", fmt.Sprint("edit ", i))
			req.Expect = &head
			_, err := l.Append(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, eventlog.ErrConflict):
				conflicts++
			default:
				t.Errorf("append: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 3 {
		t.Fatalf("expect across nodes: %d won, %d conflicted; want 1 and 3", wins, conflicts)
	}
}

func TestHotRoomAcrossNodes(t *testing.T) {
	s := natstest.Start(t)
	nodes := []*jetstream.Log{
		openNode(t, []*natstest.Server{s}, jetstream.Options{}),
		openNode(t, []*natstest.Server{s}, jetstream.Options{}),
		openNode(t, []*natstest.Server{s}, jetstream.Options{}),
	}
	const writers, each = 12, 40
	var mu sync.Mutex
	var acked []eventlog.ID
	var wg sync.WaitGroup
	for w := range writers {
		l := nodes[w%len(nodes)]
		wg.Go(func() {
			var pending []*eventlog.Pending
			for i := range each {
				pending = append(pending, l.AppendAsync(text("hot", fmt.Sprint("u", w), fmt.Sprint(i))))
			}
			var last eventlog.ID
			for _, p := range pending {
				r, err := p.Wait(context.Background())
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if r.Event.ID.Compare(last) <= 0 {
					t.Errorf("writer %d: acks out of queue order", w)
				}
				last = r.Event.ID
				mu.Lock()
				acked = append(acked, r.Event.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var read []eventlog.Event
	for after := (eventlog.ID{}); ; {
		page, err := nodes[1].ReadAfter(context.Background(), "hot", after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		read = append(read, page...)
		after = page[len(page)-1].ID
	}
	got := make([]eventlog.ID, len(read))
	for i, e := range read {
		got[i] = e.ID
		if i > 0 && e.ID.Compare(read[i-1].ID) <= 0 {
			t.Fatalf("event %d does not follow event %d", i, i-1)
		}
	}
	slices.SortFunc(acked, eventlog.ID.Compare)
	if !slices.Equal(got, acked) {
		t.Fatalf("the room holds %d events, %d were acked", len(got), len(acked))
	}
	rep, err := nodes[2].Verify(context.Background(), "hot")
	if err != nil || rep.Broken != nil || rep.Events != writers*each {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// Cursors made elsewhere (another backend, a restored file) carry no usable stream sequence:
// ReadAfter, ReadBefore and Contains still answer exactly.
func TestForeignIDs(t *testing.T) {
	s := natstest.Start(t)
	l := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ctx := context.Background()
	var all []eventlog.ID
	for i := range 120 {
		r, err := l.Append(ctx, text("f", "u", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r.Event.ID)
		if _, err := l.Append(ctx, text("other", "u", "x")); err != nil {
			t.Fatal(err)
		}
	}
	probe := func(cursor eventlog.ID) {
		t.Helper()
		var want []eventlog.ID
		for _, id := range all {
			if id.Compare(cursor) > 0 {
				want = append(want, id)
			}
		}
		got, err := l.ReadAfter(ctx, "f", cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]eventlog.ID, len(got))
		for i, e := range got {
			ids[i] = e.ID
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("after %s: %d events, want %d", cursor, len(ids), len(want))
		}
	}
	for range 200 {
		var id eventlog.ID
		rand.Read(id[:])
		copy(id[:6], all[mrand(len(all))][:6]) // the time of a real event, the rest random
		probe(id)
	}
	var far eventlog.ID
	rand.Read(far[:])
	far[0] = 0xff // after every event
	probe(far)
	probe(eventlog.ID{0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // before every event, a huge hint
	for _, i := range []int{0, 1, 59, 118, 119} {
		probe(all[i])
		ok, err := l.Contains(ctx, "f", all[i])
		if !ok || err != nil {
			t.Fatalf("Contains(event %d) = %v, %v", i, ok, err)
		}
		page, err := l.ReadBefore(ctx, "f", all[i], 5)
		if err != nil || len(page) != min(i, 5) || (i > 0 && page[len(page)-1].ID != all[i-1]) {
			t.Fatalf("ReadBefore(event %d): %d events, %v", i, len(page), err)
		}
	}
}

func mrand(n int) int {
	var b [2]byte
	rand.Read(b[:])
	return (int(b[0])<<8 | int(b[1])) % n
}

// Large bodies queued at once go out in several batches (each within JetStream's limits), in
// queue order, each once, also when another node's appends to the room make batches retry.
func TestLargeBodiesSplitIntoBatches(t *testing.T) {
	s := natstest.Start(t)
	nodes := []*jetstream.Log{openNode(t, []*natstest.Server{s}, jetstream.Options{}), openNode(t, []*natstest.Server{s}, jetstream.Options{})}
	body := []byte(`{"text":"` + strings.Repeat("y", 60000) + `"}`)
	var wg sync.WaitGroup
	for n, l := range nodes {
		wg.Go(func() {
			var pending []*eventlog.Pending
			for i := range 40 {
				pending = append(pending, l.AppendAsync(eventlog.AppendRequest{Room: "big", User: "u", Key: fmt.Sprint(n, "-", i), Body: body}))
			}
			var last eventlog.ID
			for i, p := range pending {
				r, err := p.Wait(context.Background())
				if err != nil || r.Duplicate || r.Event.ID.Compare(last) <= 0 {
					t.Errorf("node %d, append %d: duplicate %v, %v", n, i, r.Duplicate, err)
					return
				}
				last = r.Event.ID
			}
		})
	}
	wg.Wait()
	if h, err := nodes[0].Head(context.Background(), "big"); err != nil || h.Count != 80 {
		t.Fatalf("head %+v %v; want 80 events", h, err)
	}
}
