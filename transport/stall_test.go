package transport_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/transport"
)

// TestStalledReaderIsCutAtTheStallTime is finding 8 of the trust issue: with a stall time of 2 s,
// a member with ordinary socket buffers that reads nothing while a burst of events is published
// is sent bye slow_consumer and closed within about the stall time of its last read, not left
// holding a backlog it may read later.
func TestStalledReaderIsCutAtTheStallTime(t *testing.T) {
	servertest.Long(t, "stall test")
	const stall = 2 * time.Second
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit, StallTimeout: stall}, ring: 256})
	tok := token(t, "sub", []string{"*"})
	ws, _, err := websocket.DefaultDialer.Dial(ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	stalled := &client{t: t, ws: ws}
	stalled.hello(tok, "stalled")
	stalled.join("busy", nil)
	lastRead := time.Now()

	publishMany(t, ts, "busy", 4, 20000, 1000)
	publishing := time.Since(lastRead) // its socket's buffers filled up meanwhile
	// Cut within the stall time of the buffers filling up, with a margin for this busy machine.
	bound := publishing + stall + time.Second
	for metric(t, ts, "roomlog_slow_consumers_total") < 1 {
		if time.Since(lastRead) > bound {
			t.Fatalf("a reader that read nothing for %v (stall time %v, events published for %v) is still connected", time.Since(lastRead).Round(time.Millisecond), stall, publishing.Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cutAfter := time.Since(lastRead)
	// What it can still read ends with bye slow_consumer (when it could be written) or the end of
	// the connection; never the whole backlog.
	got := 0
	for {
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the cut connection stays open")
			}
			break
		}
		if strings.Contains(string(b), `"slow_consumer"`) {
			continue
		}
		got++
	}
	if got >= 20000 {
		t.Fatalf("the stalled reader read all %d events after being cut", got)
	}
	t.Logf("events published for %v; cut %v after its last read; %d events were still in the socket buffers", publishing.Round(time.Millisecond), cutAfter.Round(time.Millisecond), got)
}
