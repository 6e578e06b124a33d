package transport_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/transport"
)

// publishMany publishes n events of about size bytes to room from conns connections, 32 in flight
// each, and returns once all are acked.
func publishMany(t *testing.T, ts *testServer, room string, conns, n, size int) {
	t.Helper()
	tok := token(t, "pub", []string{"*"})
	pad := strings.Repeat("x", size)
	var wg sync.WaitGroup
	for p := range conns {
		wg.Go(func() {
			c := connect(t, ts, tok, fmt.Sprint("pub-", p))
			per := n / conns
			sent, acked := 0, 0
			for acked < per {
				for sent < per && sent-acked < 32 {
					c.send(frame{"type": "publish", "ref": fmt.Sprint(sent), "room": room, "body": map[string]any{"p": p, "i": sent, "pad": pad}})
					sent++
				}
				if f := c.recv(); f.str("type") != "ack" {
					t.Errorf("publisher got %v", f)
					return
				}
				acked++
			}
		})
	}
	wg.Wait()
}

// readEvents reads n message events and checks they arrive in order, each once.
func readEvents(t *testing.T, c *client, n int, delay time.Duration) {
	t.Helper()
	prev := ""
	for got := 0; got < n; {
		f, err := c.recvErr(30 * time.Second)
		if err != nil {
			t.Errorf("after %d of %d events: %v", got, n, err)
			return
		}
		if f.str("type") != "event" || f.str("kind") != "message" {
			continue
		}
		if id := f.str("id"); id <= prev {
			t.Errorf("event %s after %s: out of order or repeated", id, prev)
			return
		} else {
			prev = id
		}
		got++
		if delay > 0 {
			time.Sleep(delay)
		}
	}
}

// TestSlowConsumer: a client that reads slowly still gets every event once, in order (reading
// the log at its pace once it falls out of the room's memory); one that stops reading is
// disconnected after the stall time; a fast member receives everything meanwhile; and the
// server's heap does not grow with the backlog.
func TestSlowConsumer(t *testing.T) {
	servertest.Long(t, "slow consumer test")
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit, StallTimeout: 3 * time.Second}, ring: 64})
	tok := token(t, "sub", []string{"*"})
	const room, n, size = "busy", 6000, 1000

	fast := connect(t, ts, tok, "fast")
	fast.join(room, nil)
	slow := connect(t, ts, tok, "slow")
	slow.join(room, nil)
	// The stalled client shrinks its receive buffer, joins, then reads nothing.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	ws, _, err := d.Dial(ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	stalled := &client{t: t, ws: ws}
	stalled.hello(tok, "stalled")
	stalled.join(room, nil)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var wg sync.WaitGroup
	wg.Go(func() { readEvents(t, fast, n, 0) })
	wg.Go(func() { readEvents(t, slow, n, 200*time.Microsecond) })
	publishMany(t, ts, room, 3, n, size)
	wg.Wait()

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 64<<20 {
		t.Errorf("heap grew by %d MiB while %d MiB of events flowed to a stalled client", grown>>20, n*size>>20)
	}
	if replayed := metric(t, ts, "roomlog_replayed_events_total"); replayed == 0 {
		t.Errorf("no member ever fell back to reading the log (ring of 64, %d events)", n)
	}
	// The stalled client is disconnected within the stall time (plus a margin) of its last
	// progress, whatever it then tries to read.
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, ts, "roomlog_slow_consumers_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled client was never disconnected")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		_, _, err := ws.ReadMessage()
		if err != nil {
			var ne net.Error
			if !websocket.IsUnexpectedCloseError(err) && !errors.As(err, &ne) && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
				t.Logf("stalled client ended with %v", err)
			}
			break
		}
	}
}

// TestQueuesAreBoundedInBytes: a client that asks for large history pages and reads none of the
// answers costs the server a bounded amount of memory; it simply stops being read from.
func TestQueuesAreBoundedInBytes(t *testing.T) {
	servertest.Long(t, "memory test")
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit}})
	tok := token(t, "greedy", []string{"*"})
	publishMany(t, ts, "big-history", 4, 1000, 400) // pages of 1,000 events of ~500 bytes
	c := connect(t, ts, tok, "g")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// Ask for 500 pages (about 250 MB of answers) without reading any, each request padded to
	// 60 KB (unknown fields are ignored) so that queued requests weigh too.
	request := []byte(`{"type":"history","ref":"h","room":"big-history","limit":1000,"pad":"` + strings.Repeat("p", 60000) + `"}`)
	done := make(chan int)
	go func() {
		sent := 0
		for ; sent < 500; sent++ {
			c.ws.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if c.ws.WriteMessage(websocket.TextMessage, request) != nil {
				break // the server stopped reading: back-pressure
			}
		}
		done <- sent
	}()
	sent := <-done
	time.Sleep(3 * time.Second) // let the server handle what it will
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d history requests sent before the server pushed back; heap grew %d MiB", sent, grown>>20)
	if grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB for one client that reads nothing", grown>>20)
	}
}

// TestSteadySlowReaderIsNotCutOff: a client that reads without pause, but much slower than one
// write batch per stall time, keeps its connection: the stall timeout is a deadline on progress,
// not on a whole batch. (With 1 s of stall, 100 events of 60 KB in one batch and a reader taking
// 1.5 MB/s, the batch takes about 4 s to drain, far more than the socket buffers hold. A shorter
// stall made the test fail on a loaded CI machine, where the reader itself was not scheduled for
// half a second.)
func TestSteadySlowReaderIsNotCutOff(t *testing.T) {
	servertest.Long(t, "slow reader test")
	const stall = time.Second
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit, StallTimeout: stall, MaxFrame: 128 << 10}})
	tok := token(t, "sub", []string{"*"})
	const room, n, size = "big", 100, 60000
	publishMany(t, ts, room, 1, n, size)

	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c = &pacedConn{Conn: c, rate: 1500 << 10}
		}
		return c, err
	}}
	ws, _, err := d.Dial(ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	slow := &client{t: t, ws: ws}
	slow.hello(tok, "slow")
	start := time.Now()
	slow.send(frame{"type": "join", "ref": "j", "room": room, "after": ""})
	readEvents(t, slow, n, 0)
	if took := time.Since(start); took < 2*stall {
		t.Fatalf("the reader took %v: not slower than the stall time, the test shows nothing", took)
	}
	if m := metric(t, ts, "roomlog_slow_consumers_total"); m != 0 {
		t.Fatalf("a steady reader was disconnected as a slow consumer")
	}
}

// pacedConn reads at most rate bytes a second, in small reads, without ever pausing for long.
type pacedConn struct {
	net.Conn
	rate  int
	start time.Time
	read  int
}

func (c *pacedConn) Read(p []byte) (int, error) {
	if c.start.IsZero() {
		c.start = time.Now()
	}
	if due := c.start.Add(time.Duration(c.read) * time.Second / time.Duration(c.rate)); time.Until(due) > 0 {
		time.Sleep(time.Until(due))
	}
	n, err := c.Conn.Read(p[:min(len(p), 16<<10)])
	c.read += n
	return n, err
}
