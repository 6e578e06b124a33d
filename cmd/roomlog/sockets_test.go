package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/internal/servertest"
)

// setNoFile sets the process's open-file limit, soft and hard (the ROOMLOG_TEST_NOFILE hook).
func setNoFile(n string) {
	v, err := strconv.ParseUint(n, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: v, Max: v})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ROOMLOG_TEST_NOFILE:", err)
		os.Exit(2)
	}
}

// closedWithin reports whether the server closes c (a read ends in EOF or a reset) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	ne, ok := err.(net.Error)
	return !(ok && ne.Timeout())
}

// TestSocketsAreNotHeld: a real server cuts the sockets of clients that send or read nothing: a
// keep-alive connection idle past --http-idle-timeout, a request whose declared body never
// comes (past --http-read-timeout), a connection that never sends a request. A WebSocket
// connection, once upgraded, is free of those timeouts.
func TestSocketsAreNotHeld(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "sockets.db"), "--http-read-timeout", "1s", "--http-idle-timeout", "1s")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	idle := dial()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", p.addr)
	res, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || res.StatusCode != 200 || res.Close {
		t.Fatalf("a keep-alive /healthz: %v %v", res, err)
	}
	halfSent := dial()
	fmt.Fprintf(halfSent, "POST /v1/rooms/doc:1/events HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n{\"body\":", p.addr)
	silent := dial()
	ws := wsConnect(t, p.addr, crashToken(t, "ws", false), "s")
	defer ws.Close()

	for name, c := range map[string]net.Conn{"idle keep-alive": idle, "half-sent request": halfSent, "silent": silent} {
		if !closedWithin(c, 5*time.Second) {
			t.Errorf("%s connection still open after 5 s", name)
		}
	}
	ws.WriteJSON(map[string]any{"type": "ping"})
	var f map[string]any
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.ReadJSON(&f); err != nil || f["type"] != "pong" {
		t.Fatalf("the WebSocket connection after the HTTP timeouts: %v %v", f, err)
	}
}

// TestFullServerKeepsServing: a server under a low open-file limit (ulimit -n 200) flooded with
// more idle and half-sent connections than it may hold refuses the excess at once and keeps
// serving: its WebSocket clients publish and receive, a health check on a kept connection is
// answered throughout, and a new one is answered again once the flood's sockets time out. It
// never runs out of file descriptors.
func TestFullServerKeepsServing(t *testing.T) {
	servertest.Long(t, "flood test")
	cmd := []string{"--data", filepath.Join(t.TempDir(), "full.db"), "--jwt-secret", servertest.Secret, "--publish-rate", "0",
		"--http-read-timeout", "2s", "--http-idle-timeout", "2s"}
	t.Setenv("ROOMLOG_TEST_NOFILE", "200")
	p := startServe(t, cmd...)
	os.Unsetenv("ROOMLOG_TEST_NOFILE")
	if !strings.Contains(p.log(), "max_conns=136") {
		t.Fatalf("--max-conns was not fitted to the open-file limit:\n%s", p.log())
	}

	keep := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, IdleConnTimeout: time.Minute}}
	defer keep.CloseIdleConnections()
	health := func(c *http.Client) error {
		res, err := c.Get("http://" + p.addr + "/healthz")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}
	if err := health(keep); err != nil {
		t.Fatal(err)
	}
	var members []*websocket.Conn
	for i := range 10 {
		ws := wsConnect(t, p.addr, crashToken(t, fmt.Sprint("m", i), false), "s")
		defer ws.Close()
		ws.WriteJSON(map[string]any{"type": "join", "ref": "j", "room": "flood"})
		members = append(members, ws)
	}
	for _, ws := range members {
		readUntil(t, ws, "synced")
	}

	// The flood: 300 sockets that send nothing or half a request.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 300 {
		c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
		if err != nil {
			continue // the kernel's queue; the server closes what it cannot hold
		}
		if i%2 == 1 {
			fmt.Fprintf(c, "POST /v1/rooms/doc:1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		}
		flood = append(flood, c)
	}
	if err := health(keep); err != nil {
		t.Fatalf("the kept health check during the flood: %v", err)
	}
	members[0].WriteJSON(map[string]any{"type": "publish", "ref": "p", "room": "flood", "body": "still here"})
	var wg sync.WaitGroup
	for i, ws := range members {
		wg.Go(func() {
			if f := readUntil(t, ws, "message"); f["body"] != "still here" {
				t.Errorf("member %d got %v", i, f)
			}
		})
	}
	wg.Wait()

	deadline := time.Now().Add(15 * time.Second)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	for health(fresh) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no new health check answered 15 s after the flood")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := keep.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `roomlog_refused_connections_total{reason="max_conns"}`) {
		t.Errorf("no socket refused as max_conns")
	}
	if strings.Contains(p.log(), "too many open files") {
		t.Fatalf("the server ran out of file descriptors:\n%s", p.log())
	}
	if err := exec.Command("kill", "-0", strconv.Itoa(p.cmd.Process.Pid)).Run(); err != nil {
		t.Fatalf("the server is gone: %v", err)
	}
}

// readUntil reads frames until one of type typ (or an event of kind typ), and returns it.
func readUntil(t *testing.T, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var f map[string]any
		if err := ws.ReadJSON(&f); err != nil {
			t.Errorf("waiting for %s: %v", typ, err)
			return nil
		}
		if f["type"] == typ || f["type"] == "event" && f["kind"] == typ {
			return f
		}
	}
}
