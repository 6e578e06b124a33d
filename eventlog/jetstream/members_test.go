package jetstream_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

func system(kind, room, user, session string) eventlog.AppendRequest {
	return eventlog.AppendRequest{Room: room, User: user, Session: session, Kind: kind, System: true}
}

func kinds(t *testing.T, l *jetstream.Log, room string) []string {
	t.Helper()
	evs, err := l.ReadAfter(context.Background(), room, eventlog.ID{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind+":"+e.Session)
	}
	return out
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
	if got := kinds(t, a, "doc:m"); len(got) != 2 {
		t.Fatalf("events %v; want the two joins only", got)
	}
	if _, err := b.Append(ctx, system(eventlog.KindLeave, "doc:m", "ann", "phone")); err != nil {
		t.Fatal(err)
	}
	got := kinds(t, a, "doc:m")
	if len(got) != 3 || got[2] != "leave:phone" {
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
	for _, k := range kinds(t, b, "doc:d") {
		if k[:6] == "leave:" {
			leaves[k[6:]]++
		}
	}
	if leaves["s1"] != 1 || leaves["s2"] != 1 || leaves["s3"] != 0 || leaves["c1"] != 0 {
		t.Fatalf("leaves %v; want one each for s1 and s2 only", leaves)
	}
}

// A room where more sessions have come and gone than one direct get may list (1,024: every
// session keeps its marker) still lists its members: before, the listing failed with 413 Too
// Many Results and other nodes showed no one from this one; and the consumer read in its place
// listed sessions long gone.
func TestMembersOfARoomWithManySessions(t *testing.T) {
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ctx := context.Background()
	const sessions, workers = 1100, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < sessions; i += workers {
				sess := fmt.Sprint("s", i)
				for _, kind := range []string{eventlog.KindJoin, eventlog.KindLeave} {
					if _, err := a.Append(ctx, system(kind, "doc:big", "ann", sess)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, sess := range []string{"here1", "here2"} {
		if _, err := a.Append(ctx, system(eventlog.KindJoin, "doc:big", "bob", sess)); err != nil {
			t.Fatal(err)
		}
	}
	members, err := a.RoomMembers(ctx, "doc:big")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range members {
		got = append(got, m.User+"/"+m.Session.Session)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"bob/here1", "bob/here2"}) {
		t.Fatalf("members %v; want bob/here1 and bob/here2", got)
	}
	// The session index (what a node's start and the sweep of dead nodes read) reads the same
	// markers, through a consumer that nats.go recreates midway: it too lists only the two.
	got = got[:0]
	err = a.Sessions(ctx, func(s eventlog.Session) error {
		got = append(got, s.User+"/"+s.Session)
		return nil
	})
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"bob/here1", "bob/here2"}) {
		t.Fatalf("sessions %d %v, %v; want bob/here1 and bob/here2", len(got), got[:min(len(got), 5)], err)
	}
}
