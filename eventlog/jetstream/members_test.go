package jetstream_test

import (
	"context"
	"encoding/base64"
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
