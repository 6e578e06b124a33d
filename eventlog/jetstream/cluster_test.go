package jetstream_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/internal/servertest"
)

// On a three-server JetStream cluster the stream is replicated three times, and killing its
// leader under load loses no acked event: writers retry with their keys until acked, and the
// room then holds each key's event exactly once, in order, on a chain that verifies.
func TestClusterLeaderKilled(t *testing.T) {
	servertest.Long(t, "a three-server cluster")
	c := natstest.StartCluster(t, 3)
	a := openNode(t, c.Servers, jetstream.Options{})
	b := openNode(t, c.Servers, jetstream.Options{})
	ctx := context.Background()

	js, _ := njs.New(natstest.Connect(t, c.Servers...))
	stream, err := js.Stream(ctx, jetstream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Config.Replicas != 3 {
		t.Fatalf("stream replicas: %+v %v; want 3 on a three-server cluster", info.Config.Replicas, err)
	}

	const writers, each = 4, 60
	var acked sync.Map // key -> id
	var count atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		l := []*jetstream.Log{a, b}[w%2]
		wg.Go(func() {
			for i := range each {
				req := text("doc:ha", fmt.Sprint("u", w), fmt.Sprint(i))
				req.Key = fmt.Sprintf("w%d-%d", w, i)
				deadline := time.Now().Add(60 * time.Second)
				for {
					r, err := l.Append(ctx, req)
					if err == nil {
						acked.Store(req.Key, r.Event.ID)
						count.Add(1)
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("writer %d: no ack for %s in 60s: %v", w, req.Key, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	for count.Load() < writers*each/3 {
		time.Sleep(10 * time.Millisecond)
	}
	info, err = stream.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	for _, s := range c.Servers {
		if s.Name() == info.Cluster.Leader {
			t.Logf("killing the stream leader %s after %d acks", s.Name(), count.Load())
			s.Shutdown()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	var evs []eventlog.Event
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs = evs[:0]
		var err error
		for after := (eventlog.ID{}); ; {
			var page []eventlog.Event
			if page, err = b.ReadAfter(ctx, "doc:ha", after, 100); err != nil || len(page) == 0 {
				break
			}
			evs = append(evs, page...)
			after = page[len(page)-1].ID
		}
		if err == nil && len(evs) >= writers*each || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := map[string]eventlog.ID{}
	for i, e := range evs {
		if i > 0 && e.ID.Compare(evs[i-1].ID) <= 0 {
			t.Fatalf("event %d does not follow event %d", i, i-1)
		}
		if _, dup := seen[e.Key]; dup {
			t.Fatalf("key %s appended twice", e.Key)
		}
		seen[e.Key] = e.ID
	}
	missing := 0
	acked.Range(func(k, v any) bool {
		if seen[k.(string)] != v.(eventlog.ID) {
			missing++
		}
		return true
	})
	if missing > 0 || len(seen) != writers*each {
		t.Fatalf("%d acked events missing or changed; the room holds %d, want %d", missing, len(seen), writers*each)
	}
	rep, err := a.Verify(ctx, "doc:ha")
	if err != nil || rep.Broken != nil {
		t.Fatalf("verify: %+v %v", rep.Broken, err)
	}
	ids := make([]eventlog.ID, 0, len(evs))
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	if !slices.IsSortedFunc(ids, eventlog.ID.Compare) {
		t.Fatal("ids out of order")
	}
}

// A node started while one server of three is down still gets a stream replicated three
// times: JetStream places a replica on a server it knows, down or not, and two of three take
// appends. (A cluster still forming refuses placement on a server it has not heard from yet,
// "peer offline", which Open waits out: see placementSettle.)
func TestReplicasWhileAServerIsDown(t *testing.T) {
	servertest.Long(t, "a three-server cluster")
	c := natstest.StartCluster(t, 3)
	c.Servers[2].Shutdown()
	l := openNode(t, c.Servers[:2], jetstream.Options{})
	if got := streamReplicas(t, c.Servers[:2]); got != 3 {
		t.Fatalf("stream replicas %d; want 3", got)
	}
	if _, err := l.Append(context.Background(), text("doc:f", "ann", "x")); err != nil {
		t.Fatal(err)
	}
}

// On a cluster of two, three replicas cannot be placed: after asking for a while, the stream
// gets one.
func TestReplicasOnTwoServers(t *testing.T) {
	servertest.Long(t, "a two-server cluster")
	jetstream.SetPlacementSettle(t, time.Second)
	c := natstest.StartCluster(t, 2)
	openNode(t, c.Servers, jetstream.Options{})
	if got := streamReplicas(t, c.Servers); got != 1 {
		t.Fatalf("stream replicas %d; want 1", got)
	}
}

func streamReplicas(t *testing.T, servers []*natstest.Server) int {
	t.Helper()
	js, _ := njs.New(natstest.Connect(t, servers...))
	stream, err := js.Stream(context.Background(), jetstream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return stream.CachedInfo().Config.Replicas
}

// On three servers, a cursor acked on one node is what another node reads right after, and a
// node's heartbeat is read back at once: reads that must see an acked write go to the bucket's
// leader, since the replica answering a direct get may not have the write yet.
func TestReadsAfterWritesOnCluster(t *testing.T) {
	servertest.Long(t, "a three-server cluster")
	c := natstest.StartCluster(t, 3)
	a := openNode(t, c.Servers[:1], jetstream.Options{})
	b := openNode(t, c.Servers[1:2], jetstream.Options{})
	ctx := context.Background()
	var ids []eventlog.ID
	for i := range 600 { // a replica behind is rare: it takes many tries (or a loaded machine)
		r, err := a.Append(ctx, text("doc:raw", "ann", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Event.ID)
	}
	for i, id := range ids {
		session := fmt.Sprint("s", i%7)
		if err := a.SetCursor(ctx, "ann", session, "doc:raw", id); err != nil {
			t.Fatal(err)
		}
		got, err := b.Cursor(ctx, "ann", session, "doc:raw")
		if err != nil || got != id {
			t.Fatalf("ack %d: node b reads %s, %v; want %s", i, got, err, id)
		}
	}
}
