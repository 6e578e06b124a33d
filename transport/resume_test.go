package transport_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/transport"
	"github.com/roomlog/roomlog/wire"
)

// TestResumeIsExact: publishers write a room concurrently while a subscriber drops its TCP
// connection at random points and rejoins with the last id it received. The union of what it
// received must be the room's log exactly: every event once, in order, with every acked publish.
func TestResumeIsExact(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
		t.Run(sub, func(t *testing.T) { testResumeIsExact(t, sub) })
	}
}

func testResumeIsExact(t *testing.T, subprotocol string) {
	// A small ring makes the subscriber cross between the feed's memory and the log often.
	ts := startServer(t, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit}, ring: 16})
	const room, publishers, each = "doc:resume", 4, 250
	tok := token(t, "alice", []string{"doc:*"})

	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			c := connect(t, ts, tok, fmt.Sprint("pub-", p))
			// Keep up to 8 publishes in flight.
			sent, answered := 0, 0
			for answered < each {
				for sent < each && sent-answered < 8 {
					c.send(frame{"type": "publish", "ref": fmt.Sprint(sent), "room": room, "body": map[string]any{"p": p, "i": sent}})
					sent++
				}
				f := c.recv()
				if f.str("type") != "ack" {
					t.Errorf("publisher got %v", f)
					return
				}
				mu.Lock()
				acked = append(acked, f.str("id"))
				mu.Unlock()
				answered++
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var received []string
	cursor := ""
	drops := 0
	deadline := time.Now().Add(60 * time.Second)
	for finished := false; ; {
		c, _, err := dial(t, ts, subprotocol, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.hello(tok, "subscriber")
		c.send(frame{"type": "join", "ref": "j", "room": room, "after": cursor})
		if f := c.recv(); f.str("type") != "joined" {
			t.Fatalf("join answered %v", f)
		}
		// Read a random number of frames, then cut the TCP connection without a close frame.
		budget := rng.IntN(60)
		if finished {
			budget = 1 << 30 // the last round reads up to the head
		}
		synced := false
		for budget > 0 {
			f, err := c.recvErr(2 * time.Second)
			if err != nil {
				if finished && synced {
					break // caught up: nothing more is coming
				}
				t.Fatalf("subscriber read: %v", err)
			}
			switch f.str("type") {
			case "event":
				received = append(received, f.str("id"))
				cursor = f.str("id")
				budget--
			case "synced":
				synced = true
			}
		}
		c.ws.UnderlyingConn().Close()
		drops++
		if finished {
			break
		}
		select {
		case <-done:
			finished = true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not finish in time")
		}
	}
	// The room's log is the truth.
	var logIDs []string
	after := eventlog.ID{}
	for {
		page, err := ts.log.ReadAfter(context.Background(), room, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			logIDs = append(logIDs, e.ID.String())
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	// The final round's own join event may be after the last received one; everything before
	// the subscriber's last cursor must match exactly.
	i := slices.Index(logIDs, cursor)
	if i < 0 {
		t.Fatalf("last cursor %s is not in the log", cursor)
	}
	logtest.SameIDs(t, received, logIDs[:i+1]) // the log up to the cursor
	for _, id := range acked {
		if !slices.Contains(received, id) {
			t.Fatalf("acked event %s never reached the subscriber", id)
		}
	}
	if len(acked) != publishers*each {
		t.Fatalf("%d acks, want %d", len(acked), publishers*each)
	}
	t.Logf("%d events received exactly once across %d connection drops", len(received), drops)
}
