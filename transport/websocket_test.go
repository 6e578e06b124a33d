package transport_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/transport"
)

// The server reads WebSocket frames itself (gorilla only does the opening handshake): these
// tests hold it to RFC 6455 over real connections, with gorilla's client on the other end.

// TestFragmentedMessagesAndControlFrames: fragmented client messages are reassembled, pings
// interleaved with them are answered with their payload, and a client's close is echoed.
func TestFragmentedMessagesAndControlFrames(t *testing.T) {
	ts := startServer(t, serverOpts{})
	d := websocket.Dialer{WriteBufferSize: 256} // gorilla sends anything longer as fragments
	ws, _, err := d.Dial(ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := &client{t: t, ws: ws}
	c.hello(token(t, "alice", []string{"doc:*"}), "s")
	c.send(frame{"type": "join", "ref": "j", "room": "doc:1"})
	c.answer("joined")
	c.answer("synced")

	body := strings.Repeat("x", 5000)
	w, err := ws.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, `{"type":"publish","ref":"p","room":"doc:1","body":{"pad":%q`, body)
	// A ping in the middle of the message: control frames may come between fragments.
	if err := ws.WriteControl(websocket.PingMessage, []byte("mid-message"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, `}}`)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pong := make(chan string, 1)
	ws.SetPongHandler(func(data string) error { pong <- data; return nil })
	got := map[string]frame{} // the ack and the event, in either order
	for len(got) < 2 {
		f := c.recv()
		got[f.str("type")] = f
	}
	if got["ack"].str("ref") != "p" {
		t.Fatalf("no ack: %.200v", got)
	}
	if !strings.Contains(fmt.Sprint(got["event"]["body"]), body) {
		t.Fatalf("the reassembled message did not come back as the event: %.200v", got)
	}
	select {
	case got := <-pong:
		if got != "mid-message" {
			t.Fatalf("pong carried %q", got)
		}
	default:
		t.Fatal("no pong for the ping")
	}

	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "done"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = c.recvErr(5 * time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 {
		t.Fatalf("close not echoed: %v", err)
	}
}

// TestFramesTheServerRefuses: protocol violations end the connection with the close code RFC
// 6455 gives them, and change nothing for the other connections.
func TestFramesTheServerRefuses(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tok := token(t, "alice", []string{"doc:*"})
	healthy := connect(t, ts, tok, "healthy")
	healthy.send(frame{"type": "join", "ref": "j", "room": "doc:1"})
	healthy.answer("joined")
	healthy.answer("synced")

	for _, tc := range []struct {
		name string
		raw  []byte
		code int
	}{
		{"unmasked frame", []byte{0x81, 2, '{', '}'}, websocket.CloseProtocolError},
		{"reserved bit", rawClientFrame(0xc1, []byte("{}")), websocket.CloseProtocolError},
		{"unknown opcode", rawClientFrame(0x83, nil), websocket.CloseProtocolError},
		{"continuation without a message", rawClientFrame(0x80, []byte("{}")), websocket.CloseProtocolError},
		{"text that is not UTF-8", rawClientFrame(0x81, []byte{'"', 0xff, '"'}), websocket.CloseInvalidFramePayloadData},
		{"close with a reserved code", rawClientFrame(0x88, binary.BigEndian.AppendUint16(nil, 1005)), websocket.CloseProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, ts, tok, tc.name)
			if _, err := c.ws.NetConn().Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			var err error
			for err == nil {
				_, err = c.recvErr(5 * time.Second)
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("got %v, want close %d", err, tc.code)
			}
		})
	}
	healthy.send(frame{"type": "publish", "ref": "p", "room": "doc:1", "body": "still here"})
	healthy.answer("ack")
	evs, err := ts.log.ReadAfter(context.Background(), "doc:1", eventlog.ID{}, 100)
	if err != nil || len(evs) != 2 { // healthy's join, its publish
		t.Fatalf("%d events in doc:1 (%v), want 2", len(evs), err)
	}
}

// TestIdleConnectionsHoldNoGoroutine: an authenticated, joined connection with nothing to read or
// write runs no goroutine with the poller (Linux), and one (parked in a read) without it.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 40
	for _, noPoller := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoPoller=%v", noPoller), func(t *testing.T) {
			if !noPoller && (runtime.GOOS != "linux" || os.Getenv("ROOMLOG_TEST_NO_POLLER") != "") {
				t.Skip("no poller: Linux-only, and turned off for this run")
			}
			ts := startServer(t, serverOpts{cfg: transport.Config{NoPoller: noPoller}})
			tok := token(t, "alice", []string{"doc:*"})
			connect(t, ts, tok, "warm-up") // the poller's goroutine starts with the first
			before := settledGoroutines()
			for i := range n {
				c := connect(t, ts, tok, fmt.Sprint("s", i))
				c.send(frame{"type": "join", "ref": "j", "room": "doc:1"})
				c.answer("joined")
				c.answer("synced")
			}
			added := settledGoroutines() - before
			switch {
			case !noPoller && added > n/4:
				t.Fatalf("%d idle connections run %d goroutines", n, added)
			case noPoller && added < n:
				t.Fatalf("%d idle connections without the poller run %d goroutines: the count above proves nothing", n, added)
			}
		})
	}
}

// settledGoroutines counts goroutines once the count stops falling (finishing ones exit).
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// TestFramesInPieces: a frame that arrives a few bytes at a time, with pauses in which the
// connection goes back to the poller holding only the partial frame, is read whole; so is a burst
// of frames in one write.
func TestFramesInPieces(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "s")
	c.send(frame{"type": "join", "ref": "j", "room": "doc:1"})
	c.answer("joined")
	c.answer("synced")

	publish := func(ref string) []byte {
		return rawClientFrame(0x81, fmt.Appendf(nil, `{"type":"publish","ref":%q,"room":"doc:1","body":{"pad":%q}}`, ref, strings.Repeat("p", 300)))
	}
	nc := c.ws.NetConn()
	one := publish("slow")
	for i := 0; i < len(one); i += 37 {
		if _, err := nc.Write(one[i:min(i+37, len(one))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	var burst []byte
	for i := range 50 {
		burst = append(burst, publish(fmt.Sprint("b", i))...)
	}
	if _, err := nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	acks := map[string]bool{}
	for len(acks) < 51 {
		f := c.recv()
		if f.str("type") == "ack" {
			acks[f.str("ref")] = true
		}
	}
	if !acks["slow"] || !acks["b49"] {
		t.Fatalf("acks: %v", acks)
	}
}

// rawClientFrame builds a client frame byte by byte (masked, payload under 64 KiB), with b0 its
// first byte (FIN, reserved bits, opcode) as given, so that tests can also send what gorilla's
// client never would.
func rawClientFrame(b0 byte, payload []byte) []byte {
	key := []byte{1, 2, 3, 4}
	f := []byte{b0}
	if n := len(payload); n < 126 {
		f = append(f, 0x80|byte(n))
	} else {
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	}
	f = append(f, key...)
	for i, c := range payload {
		f = append(f, c^key[i%4])
	}
	return f
}
