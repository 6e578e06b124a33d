//go:build linux

package wsio

import (
	"net"
	"testing"
	"time"
)

// A second Close of a Poller leaves the process's other files alone: the Poller's fd numbers
// are free after the first, and the kernel gives them to the next files opened (here,
// listeners). A Close that used the numbers again closed one of those listeners, from under
// whoever held it (in the client tests, a load balancer whose clients could no longer connect).
func TestPollerClosedTwiceLeavesOtherFilesAlone(t *testing.T) {
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	var lns []net.Listener
	for range 4 { // the kernel takes the lowest free numbers: the Poller's among them
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	p.Close()
	for i, ln := range lns {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatalf("listener %d: %v", i, err)
		}
		c.Close()
	}
}

type readableFunc func()

func (f readableFunc) Readable() { f() }

// A closed Poller touches no epoll instance: a connection that outlives it and deregisters
// late must not reach the Poller that took the closed one's fd number (which would drop that
// Poller's registration of a live connection, never to wake it again).
func TestClosedPollerTouchesNoOtherPoller(t *testing.T) {
	old, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	p, err := NewPoller() // likely on the numbers old had
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan struct{}, 1)
	var token Token
	if err := p.Register(raw, readableFunc(func() { woken <- struct{}{} }), &token); err != nil {
		t.Fatal(err)
	}
	defer p.Deregister(raw, token)

	old.Deregister(raw, token) // the late deregistration, on the closed Poller
	if err := old.Arm(raw, token); err == nil {
		t.Fatal("Arm on a closed Poller succeeded")
	}
	client.Write([]byte("x"))
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("the live connection was not woken: the closed Poller dropped its registration")
	}
}
