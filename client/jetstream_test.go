package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/internal/servertest"
)

// Two roomlog nodes on one JetStream server: a subscriber on node B gets what a publisher on
// node A publishes, once and in order; node A is killed (kill -9) mid-load, and its clients,
// coming back through the load balancer to node B, resume exactly: every acked publish is in the
// log once, and each subscriber got every message once, in log order.
func TestNodesOnJetStream(t *testing.T) {
	servertest.Long(t, "process test")
	ns := natstest.Start(t)
	nodesUnderLoad(t, []*natstest.Server{ns}, nil)
}

// The same on a three-server JetStream cluster (the stream replicated three times) with three
// roomlog nodes: the stream's leader is killed mid-load, then roomlog node A.
func TestNodesOnJetStreamCluster(t *testing.T) {
	servertest.Long(t, "process test")
	c := natstest.StartCluster(t, 3)
	nodesUnderLoad(t, c.Servers, func() {
		js, _ := njs.New(natstest.Connect(t, c.Servers...))
		stream, err := js.Stream(ctxT(t), jetstream.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctxT(t))
		if err != nil || info.Config.Replicas != 3 || info.Cluster == nil {
			t.Fatalf("stream: %v; want three replicas", err)
		}
		for _, s := range c.Servers {
			if s.Name() == info.Cluster.Leader {
				t.Logf("killing the stream leader %s", s.Name())
				s.Shutdown()
			}
		}
	})
}

// nodesUnderLoad runs a publisher through a load balancer (to node A first) and subscribers on
// the other nodes and through the load balancer; midway it calls fault (when not nil), then
// kills node A.
func nodesUnderLoad(t *testing.T, servers []*natstest.Server, fault func()) {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	nats := strings.Join(urls, ",")
	dir := t.TempDir()
	a := startProc(t, filepath.Join(dir, "a.db"), "--nats", nats)
	others := []*serverProc{startProc(t, filepath.Join(dir, "b.db"), "--nats", nats)}
	if len(servers) > 1 {
		others = append(others, startProc(t, filepath.Join(dir, "c.db"), "--nats", nats))
	}
	lb := startProxy(t, a.addr) // the load balancer in front of the nodes

	const room, n = "doc:nodes", 400
	subs := make([]*collector, len(others)+1)
	var viaLB *client.Client
	for i := range subs {
		subs[i] = &collector{}
		url := lb.url()
		if i < len(others) {
			url = "ws://" + others[i].addr + "/v1/ws"
		}
		c := dial(t, url, client.Options{Token: token(t, fmt.Sprint("sub", i), "doc:*"), Session: fmt.Sprint("s", i)})
		if _, err := c.Join(ctxT(t), room, client.JoinOptions{Handler: subs[i].handle}); err != nil {
			t.Fatal(err)
		}
		viaLB = c
	}
	// A session that joined on another node is in the members a late joiner is given.
	late := dial(t, "ws://"+others[0].addr+"/v1/ws", client.Options{Token: token(t, "late", "doc:*"), Session: "late"})
	lateRoom, err := late.Join(ctxT(t), room, client.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasMember(lateRoom.Members(), fmt.Sprint("s", len(subs)-1)) {
		t.Fatalf("members on node B %+v lack the session joined on node A", lateRoom.Members())
	}
	// A client of node A only: when A dies it never comes back, and another node writes its
	// leave after the grace period.
	stray := dial(t, "ws://"+a.addr+"/v1/ws", client.Options{Token: token(t, "stray", "doc:*"), Session: "stray"})
	if _, err := stray.Join(ctxT(t), room, client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, lb.url(), client.Options{Token: token(t, "erin", "doc:*"), Session: "pub"})
	acks := make([]client.Ack, n)
	var acked sync.WaitGroup
	progress := make(chan int, n)
	acked.Go(func() {
		for i := range n {
			ack, err := pub.Publish(ctxT(t), room, "", map[string]int{"i": i})
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			acks[i] = ack
			progress <- i
		}
	})
	for i := range progress {
		if i == n/4 && fault != nil {
			fault()
		}
		if i == n/2 {
			break
		}
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	lb.setTarget(others[0].addr)
	lb.cut()
	acked.Wait()
	if t.Failed() {
		return
	}
	if pub.Reconnects() == 0 || viaLB.Reconnects() == 0 {
		t.Fatalf("the clients of the killed node did not reconnect (%d, %d)", pub.Reconnects(), viaLB.Reconnects())
	}

	l, err := jetstream.Open(context.Background(), natstest.Connect(t, servers...), jetstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, sub := range subs {
		checkExactlyOnce(t, l, room, sub.waitMessages(t, n), acks)
	}
	rep, err := l.Verify(context.Background(), room)
	if err != nil || rep.Broken != nil {
		t.Fatalf("verify: %+v %v", rep.Broken, err)
	}
	// Auditors read the shared log through any node's HTTP API.
	admin, err := servertest.NewToken(auth.TokenSpec{Subject: "auditor", Rooms: []string{"*"}, Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"verify", "--room", room}, {"replay", "--room", room}} {
		out, err := exec.Command(roomlogBin, append(args, "--server", "http://"+others[0].addr, "--token", admin)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), acks[n-1].ID) && args[0] == "replay" {
			t.Fatalf("roomlog %s through node B: %v\n%s", args[0], err, out)
		}
	}
	// The sessions that moved from A to B kept their membership: one join, no leave. The one
	// that did not come back got its leave, once.
	deadline := time.Now().Add(60 * time.Second)
	for membership(t, l, room)["stray"] != [2]int{1, 1} {
		if time.Now().After(deadline) {
			t.Fatalf("joins and leaves by session: %v; want the stray session's leave", membership(t, l, room))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for session, jl := range membership(t, l, room) {
		if session != "stray" && jl != [2]int{1, 0} {
			t.Fatalf("session %s: %d joins, %d leaves; want one join and no leave", session, jl[0], jl[1])
		}
	}
}

func hasMember(members []client.Member, session string) bool {
	for _, m := range members {
		if m.Session == session {
			return true
		}
	}
	return false
}

// membership counts each session's joins and leaves in the room.
func membership(t *testing.T, l eventlog.Log, room string) map[string][2]int {
	t.Helper()
	evs, err := l.ReadAfter(context.Background(), room, eventlog.ID{}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int{}
	for _, e := range evs {
		jl := out[e.Session]
		switch e.Kind {
		case eventlog.KindJoin:
			jl[0]++
		case eventlog.KindLeave:
			jl[1]++
		default:
			continue
		}
		out[e.Session] = jl
	}
	return out
}

// TestTrustOnJetStream: the trust rules hold on nodes sharing a JetStream log. A writer without
// the snapshot_rooms claim cannot publish a snapshot through any node, a trusted writer can, and
// a compaction through another node names the snapshot's author; a user's connections are
// bounded per node (--max-conns-per-user), not across nodes.
func TestTrustOnJetStream(t *testing.T) {
	servertest.Long(t, "process test")
	ns := natstest.Start(t)
	dir := t.TempDir()
	a := startProc(t, filepath.Join(dir, "a.db"), "--nats", ns.ClientURL(), "--max-conns-per-user", "2")
	b := startProc(t, filepath.Join(dir, "b.db"), "--nats", ns.ClientURL(), "--max-conns-per-user", "2")
	ctx := ctxT(t)
	dial := func(p *serverProc, tok func(context.Context) (string, error), session string) (*client.Client, error) {
		return client.Dial(ctx, "ws://"+p.addr+"/v1/ws", client.Options{Token: tok, Session: session})
	}
	w, err := dial(a, token(t, "writer", "doc:*"), "w1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	edit, err := w.Publish(ctx, "doc:js", "", map[string]any{"text": "real work"})
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string]any{"covers": edit.ID, "state": ""}
	_, err = w.PublishExpect(ctx, "doc:js", "snapshot", forged, edit.ID)
	var refused *client.Error
	if !errors.As(err, &refused) || refused.Code != "forbidden" {
		t.Fatalf("a snapshot without the claim on JetStream: %v", err)
	}

	trusted := func(context.Context) (string, error) {
		return servertest.NewToken(auth.TokenSpec{Subject: "editor", Rooms: []string{"doc:*"}, SnapshotRooms: []string{"doc:*"}})
	}
	e, err := dial(b, trusted, "e1")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	snap, err := e.PublishExpect(ctx, "doc:js", "snapshot", map[string]any{"covers": edit.ID, "state": "real"}, edit.ID)
	if err != nil {
		t.Fatalf("the trusted writer's snapshot on another node: %v", err)
	}
	code, body := compact(t, a.addr, "doc:js")
	var out struct {
		Snapshot   string
		SnapshotBy string `json:"snapshot_by"`
	}
	if json.Unmarshal(body, &out); code != 200 || out.Snapshot != snap.ID || out.SnapshotBy != "editor" {
		t.Fatalf("compaction through node A: %d %s", code, body)
	}

	// writer holds one connection to A; a second fits, a third does not; B takes its own two.
	second, err := dial(a, token(t, "writer", "doc:*"), "w2")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if third, err := dial(a, token(t, "writer", "doc:*"), "w3"); err == nil || !strings.Contains(err.Error(), "too_many_connections") {
		if third != nil {
			third.Close()
		}
		t.Fatalf("a third connection of one user to node A: %v", err)
	}
	onB, err := dial(b, token(t, "writer", "doc:*"), "w4")
	if err != nil {
		t.Fatalf("node B refused the user A is full of: %v", err)
	}
	onB.Close()
}
