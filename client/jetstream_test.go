package client_test

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// Two roomlog nodes on one JetStream: a subscriber on node B gets what a publisher on node A
// publishes, once and in order; node A is killed (kill -9) mid-load, and its clients, coming back
// through the load balancer to node B, resume exactly: every acked publish is in the log once,
// and each subscriber got every message once, in log order.
func TestNodesOnJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("process test skipped in -short mode")
	}
	ns := natstest.Start(t)
	dir := t.TempDir()
	a := startProc(t, filepath.Join(dir, "a.db"), "--nats", ns.ClientURL())
	b := startProc(t, filepath.Join(dir, "b.db"), "--nats", ns.ClientURL())
	lb := startProxy(t, a.addr) // the load balancer in front of the nodes

	const room, n = "doc:nodes", 400
	var onB, viaLB collector
	subB := dial(t, "ws://"+b.addr+"/v1/ws", client.Options{Token: token(t, "carol", "doc:*"), Session: "b-sub"})
	if _, err := subB.Join(ctxT(t), room, client.JoinOptions{Handler: onB.handle}); err != nil {
		t.Fatal(err)
	}
	subLB := dial(t, lb.url(), client.Options{Token: token(t, "dave", "doc:*"), Session: "lb-sub"})
	if _, err := subLB.Join(ctxT(t), room, client.JoinOptions{Handler: viaLB.handle}); err != nil {
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
		if i == n/3 {
			break
		}
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	lb.setTarget(b.addr)
	lb.cut()
	acked.Wait()
	if t.Failed() {
		return
	}
	if pub.Reconnects() == 0 || subLB.Reconnects() == 0 {
		t.Fatalf("the clients of the killed node did not reconnect (%d, %d)", pub.Reconnects(), subLB.Reconnects())
	}

	l, err := jetstream.Open(context.Background(), natstest.Connect(t, ns), jetstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checkExactlyOnce(t, l, room, onB.waitMessages(t, n), acks)
	checkExactlyOnce(t, l, room, viaLB.waitMessages(t, n), acks)
	rep, err := l.Verify(context.Background(), room)
	if err != nil || rep.Broken != nil {
		t.Fatalf("verify: %+v %v", rep.Broken, err)
	}
}
