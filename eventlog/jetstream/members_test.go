package jetstream_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/internal/natstest"
)

func system(kind, room, user, session string) eventlog.AppendRequest {
	return eventlog.AppendRequest{Room: room, User: user, Session: session, Kind: kind, System: true}
}

// A session that moves to another node stays a member: no second join, and the leave the first
// node writes after its grace period is no longer its to write. Every node lists the members of
// every node.
func TestSessionMovesToAnotherNode(t *testing.T) {
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{Node: "a"})
	b := openNode(t, []*natstest.Server{s}, jetstream.Options{Node: "b"})
	ctx := context.Background()
	join := system(eventlog.KindJoin, "doc:m", "ann", "phone")
	join.Body = []byte(`{"name":"Ann"}`)
	first, err := a.Append(ctx, join)
	if err != nil || first.Duplicate {
		t.Fatalf("join on a: %+v %v", first, err)
	}
	if _, err := b.Append(ctx, system(eventlog.KindJoin, "doc:m", "bob", "laptop")); err != nil {
		t.Fatal(err)
	}
	members, err := b.RoomMembers(ctx, "doc:m")
	if err != nil || len(members) != 2 {
		t.Fatalf("members on b: %+v %v; want ann (on a) and bob", members, err)
	}
	again, err := b.Append(ctx, system(eventlog.KindJoin, "doc:m", "ann", "phone"))
	if err != nil || !again.Duplicate || again.Event.ID != first.Event.ID || string(again.Event.Body) != `{"name":"Ann"}` {
		t.Fatalf("join of the same session on b: %+v %v; want the first join back", again, err)
	}
	if _, err := a.Append(ctx, system(eventlog.KindLeave, "doc:m", "ann", "phone")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(logtest.Trail(t, a, "doc:m")); len(got) != 2 {
		t.Fatalf("events %v; want the two joins only", got)
	}
	if _, err := b.Append(ctx, system(eventlog.KindLeave, "doc:m", "ann", "phone")); err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(logtest.Trail(t, a, "doc:m"))
	if len(got) != 3 || got[2] != "ann/phone:leave" {
		t.Fatalf("events %v; want the leave from b, the node serving the session", got)
	}
	if members, _ := a.RoomMembers(ctx, "doc:m"); len(members) != 1 || members[0].User != "bob" {
		t.Fatalf("members after the leave: %+v", members)
	}
}

// When a node dies, the surviving nodes write the leave of each session it served, once, after
// the grace period; a session that moved to a live node meanwhile keeps its membership.
func TestDeadNodeSessionsLeave(t *testing.T) {
	s := natstest.Start(t)
	fast := func(node string) jetstream.Options {
		return jetstream.Options{Node: node, Heartbeat: 50 * time.Millisecond, OrphanGrace: 300 * time.Millisecond}
	}
	a := openNode(t, []*natstest.Server{s}, fast("a"))
	b := openNode(t, []*natstest.Server{s}, fast("b"))
	c := openNode(t, []*natstest.Server{s}, fast("c"))
	ctx := context.Background()
	for _, sess := range []string{"s1", "s2", "s3"} {
		if _, err := a.Append(ctx, system(eventlog.KindJoin, "doc:d", "ann", sess)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Append(ctx, system(eventlog.KindJoin, "doc:d", "cat", "c1")); err != nil {
		t.Fatal(err)
	}
	// a dies: its log stops without writing leaves (as a killed process would), but it took
	// its heartbeat with it; s3 reconnects to b at once.
	a.Kill()
	if r, err := b.Append(ctx, system(eventlog.KindJoin, "doc:d", "ann", "s3")); err != nil || !r.Duplicate {
		t.Fatalf("s3 rejoining on b: %+v %v", r, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		members, err := b.RoomMembers(ctx, "doc:d")
		if err != nil {
			t.Fatal(err)
		}
		if len(members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members still %+v after 20s", members)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a second sweep by the other node must write nothing
	leaves := map[string]int{}
	for _, k := range strings.Fields(logtest.Trail(t, b, "doc:d")) {
		if who, ok := strings.CutSuffix(k, ":leave"); ok {
			_, session, _ := strings.Cut(who, "/")
			leaves[session]++
		}
	}
	if leaves["s1"] != 1 || leaves["s2"] != 1 || leaves["s3"] != 0 || leaves["c1"] != 0 {
		t.Fatalf("leaves %v; want one each for s1 and s2 only", leaves)
	}
}

// A room with more members than one direct get may list (1,024) still lists them: before, the
// listing failed with 413 Too Many Results and other nodes showed no one from this one; and the
// consumer read in its place (where nats.go recreates its consumer midway) listed every marker of
// a subject, not its last: sessions long gone, and presence long changed.
func TestMembersOfARoomWithManySessions(t *testing.T) {
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ctx := context.Background()
	const sessions, leaving, workers = 1100, 50, 8
	each := func(from, to int, kinds ...string) {
		t.Helper()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := from + w; i < to; i += workers {
					for _, kind := range kinds {
						req := system(kind, "doc:big", "ann", fmt.Sprint("s", i))
						if kind == eventlog.KindPresence {
							req.Body = []byte(fmt.Sprintf(`{"n":%d}`, i))
						}
						if _, err := a.Append(ctx, req); err != nil {
							t.Error(err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	check := func(from int) {
		t.Helper()
		var want, wantSessions []string
		for i := from; i < sessions; i++ {
			want = append(want, fmt.Sprintf(`s%d={"n":%d}`, i, i))
			wantSessions = append(wantSessions, fmt.Sprint("s", i))
		}
		ms, err := a.RoomMembers(ctx, "doc:big")
		if err != nil {
			t.Fatal(err)
		}
		var members, listed []string
		for _, m := range ms {
			members = append(members, m.Session.Session+"="+string(m.Presence))
		}
		// The session index (what a node's start and the sweep of dead nodes read) reads the
		// same markers through a consumer.
		err = a.Sessions(ctx, func(s eventlog.Session) error {
			listed = append(listed, s.Session)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range [][]string{want, wantSessions, members, listed} {
			slices.Sort(l)
		}
		if !slices.Equal(members, want) {
			t.Fatalf("%d members (%v...); want %d, each with its last presence", len(members), members[:min(len(members), 3)], len(want))
		}
		if !slices.Equal(listed, wantSessions) {
			t.Fatalf("%d sessions (%v...); want %d", len(listed), listed[:min(len(listed), 3)], len(want))
		}
	}
	each(0, sessions, eventlog.KindJoin, eventlog.KindPresence)
	check(0)
	each(0, leaving, eventlog.KindLeave)
	check(leaving)
}

// rawStream is a handle of the test's own on the log's stream.
func rawStream(t *testing.T, s *natstest.Server) njs.Stream {
	t.Helper()
	js, _ := njs.New(natstest.Connect(t, s))
	stream, err := js.Stream(context.Background(), jetstream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// sessionSubjects counts the messages on each of a room's session subjects.
func sessionSubjects(t *testing.T, stream njs.Stream, room string) map[string]uint64 {
	t.Helper()
	info, err := stream.Info(context.Background(), njs.WithSubjectFilter(sessionsOf(room)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

// sessionsOf is the subject filter of a room's session markers (the package comment's P.sess.R.*).
func sessionsOf(room string) string {
	return "roomlog.sess." + base64.RawURLEncoding.EncodeToString([]byte(room)) + ".*"
}

// waitSessionSubjects waits until n of the room's session subjects hold messages.
func waitSessionSubjects(t *testing.T, stream njs.Stream, room string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := sessionSubjects(t, stream, room)
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d session subjects hold markers after 20s; want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A session that leaves is forgotten: its markers (join, presence, leave) are removed, however
// quickly it joins again, and a join planned before the removal is refused and planned again:
// every join and every leave of a session joining and leaving in a tight loop is written once.
func TestLeftSessionsAreForgotten(t *testing.T) {
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ctx := context.Background()
	const rounds = 100
	for i := range rounds {
		for _, kind := range []string{eventlog.KindJoin, eventlog.KindPresence, eventlog.KindLeave} {
			req := system(kind, "doc:f", "ann", "phone")
			req.Body = []byte(fmt.Sprintf(`{"round":%d}`, i))
			r, err := a.Append(ctx, req)
			if err != nil || r.Duplicate {
				t.Fatalf("round %d %s: %+v %v", i, kind, r, err)
			}
		}
	}
	stream := rawStream(t, s)
	waitSessionSubjects(t, stream, "doc:f", 0)
	if got := strings.Fields(logtest.Trail(t, a, "doc:f")); len(got) != 3*rounds {
		t.Fatalf("%d events; want %d", len(got), 3*rounds)
	}
	if r, err := a.Append(ctx, system(eventlog.KindJoin, "doc:f", "ann", "phone")); err != nil || r.Duplicate {
		t.Fatalf("join after the markers went: %+v %v", r, err)
	}
	if members, err := a.RoomMembers(ctx, "doc:f"); err != nil || len(members) != 1 {
		t.Fatalf("members %+v %v; want ann/phone", members, err)
	}
	if got := sessionSubjects(t, stream, "doc:f"); len(got) != 1 {
		t.Fatalf("session subjects %v; want the joined session's", got)
	}
}

// A leave marker that was not removed (its node crashed first, or an older roomlog wrote it) is
// removed by a node's sweep, and the markers of members stay.
func TestSweepRemovesLeftMarkers(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	ctx := context.Background()
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	if _, err := a.Append(ctx, system(eventlog.KindJoin, "doc:s", "ann", "stays")); err != nil {
		t.Fatal(err)
	}
	a.Close() // no node runs, so none sweeps before the markers below are all there
	left := strings.TrimSuffix(sessionsOf("doc:s"), "*") + "left-by-an-older-node"
	for _, data := range []string{`{"user":"old","session":"x","node":"gone"}`, ""} { // its join, its leave
		if r, err := nc.Request(left, []byte(data), 5*time.Second); err != nil || strings.Contains(string(r.Data), "error") {
			t.Fatalf("publishing to %s: %v %s", left, err, r.Data)
		}
	}
	stream := rawStream(t, s)
	if got := sessionSubjects(t, stream, "doc:s"); len(got) != 2 {
		t.Fatalf("session subjects %v; want two", got)
	}
	b := openNode(t, []*natstest.Server{s}, jetstream.Options{}) // sweeps at start
	waitSessionSubjects(t, stream, "doc:s", 1)
	if members, err := b.RoomMembers(ctx, "doc:s"); err != nil || len(members) != 1 || members[0].Session.Session != "stays" {
		t.Fatalf("members %+v %v; want ann/stays", members, err)
	}
}

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
