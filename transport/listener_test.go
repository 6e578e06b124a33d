package transport

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestLimitListener: past its bounds a LimitListener closes new sockets at once (the client
// reads EOF, not a hang) and says why, while the sockets it holds keep working; a socket that
// closes gives its place back. The per-address bound is checked with loopback's exemption off.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reasons []string
	ln := LimitListener(inner, 4, 2, func(reason string, _ net.Addr) {
		mu.Lock()
		reasons = append(reasons, reason)
		mu.Unlock()
	}).(*limitListener)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			go io.Copy(c, c) // echo
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server closed c at once.
	refused := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("x"))
		n, err := c.Read(make([]byte, 1))
		return n == 0 && err != nil && !isTimeout(err)
	}
	lastReason := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(reasons) == 0 {
			return ""
		}
		return reasons[len(reasons)-1]
	}

	setExempt := func(f func(string) bool) { ln.mu.Lock(); ln.exempt = f; ln.mu.Unlock() }
	setExempt(func(string) bool { return false })
	a, b := dial(), dial()
	if refused(a) || refused(b) {
		t.Fatalf("the first two sockets from one address were refused")
	}
	if c := dial(); !refused(c) || lastReason() != "max_conns_per_ip" {
		t.Fatalf("a third socket from one address: not refused (reason %q)", lastReason())
	}
	setExempt(isLoopback) // loopback is exempt: up to the total bound
	c, d := dial(), dial()
	if refused(c) || refused(d) {
		t.Fatalf("loopback sockets within the total bound were refused")
	}
	if e := dial(); !refused(e) || lastReason() != "max_conns" {
		t.Fatalf("a fifth socket: not refused (reason %q)", lastReason())
	}
	if refused(a) {
		t.Fatalf("a held socket stopped working")
	}
	(<-accepted).Close() // the server closes one it held: its place is free
	if f := dial(); refused(f) {
		t.Fatalf("a freed place was not given to a new socket")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
