package transport_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/roomlog/roomlog/transport"
)

// A connection just written a room's events waits out the write interval before the next ones,
// which then go out together; meanwhile acks still come at once, and so does the backlog of a
// room it joins.
func TestWriteIntervalHoldsLiveEventsOnly(t *testing.T) {
	const interval = 10 * time.Second
	ts := startServer(t, serverOpts{cfg: transport.Config{WriteInterval: interval}})
	defer ts.stop()
	tok := token(t, "u", []string{"*"})
	pub := connect(t, ts, tok, "publisher")
	pub.join("live", nil)
	pub.join("history", nil)
	for i := range 3 {
		pub.publish("history", map[string]any{"old": i}, nil)
	}
	member := connect(t, ts, tok, "member")
	member.join("live", nil)
	type arrival struct {
		f  frame
		at time.Time
	}
	frames := make(chan arrival, 64)
	go func() { // a read that times out ends a gorilla connection: one reader, until the end
		defer close(frames)
		for {
			f, err := member.recvErr(30 * time.Second)
			if err != nil {
				return
			}
			frames <- arrival{f, time.Now()}
		}
	}()
	next := func(what string) arrival {
		t.Helper()
		a, ok := <-frames
		if !ok {
			t.Fatalf("waiting for %s: the member's connection ended", what)
		}
		return a
	}

	// A quiet connection gets an event at once, its join's synced frame notwithstanding.
	published := time.Now()
	pub.publish("live", map[string]any{"n": 1}, nil)
	if a := next("the first event"); a.f.str("type") != "event" || a.f.str("kind") != "message" {
		t.Fatalf("first event: %v", a.f)
	} else if a.at.Sub(published) >= interval {
		t.Fatalf("the first event came %s after its publish: held by the write interval", a.at.Sub(published))
	}
	// The next two were committed within the interval of that write: they wait.
	written := time.Now()
	for n := 2; n <= 3; n++ {
		if ack := pub.publish("live", map[string]any{"n": n}, nil); ack.str("type") != "ack" {
			t.Fatalf("publish %d answered %v: acks are never held", n, ack)
		}
	}
	select {
	case a := <-frames:
		t.Fatalf("got %v %s after an event write, within the write interval (%s)", a.f, a.at.Sub(written), interval)
	case <-time.After(300 * time.Millisecond):
	}
	// A join's backlog does not wait: the joined room's events come now, and with them the two
	// held ones of the other room.
	member.send(frame{"type": "join", "ref": "j", "room": "history", "after": ""})
	var backlog, held int
	for backlog < 3 || held < 2 {
		a := next("the backlog and the held events")
		switch {
		case a.f.str("type") == "event" && a.f.str("room") == "history" && a.f.str("kind") == "message":
			backlog++
		case a.f.str("type") == "event" && a.f.str("room") == "live":
			held++
			if a.at.Sub(written) >= interval {
				t.Fatalf("a held event came %s after the write, at the interval's end, not with the join's backlog", a.at.Sub(written))
			}
		}
	}
	member.ws.Close()
	for range frames {
	}
}

// Held events go out when the interval has passed, with nothing else to release them, and not
// before: a busy connection loses nothing to the interval.
func TestWriteIntervalReleasesHeldEvents(t *testing.T) {
	const interval = 500 * time.Millisecond
	ts := startServer(t, serverOpts{cfg: transport.Config{WriteInterval: interval}})
	defer ts.stop()
	tok := token(t, "u", []string{"*"})
	pub := connect(t, ts, tok, "publisher")
	pub.join("live", nil)
	member := connect(t, ts, tok, "member")
	member.join("live", nil)

	start := time.Now() // before the first write, so before the interval it starts
	pub.publish("live", map[string]any{"n": 1}, nil)
	member.expect("event")
	for n := 2; n <= 3; n++ {
		pub.publish("live", map[string]any{"n": n}, nil)
	}
	for n := 2; n <= 3; n++ {
		e := member.expect("event")
		if got := fmt.Sprint(e["body"].(map[string]any)["n"]); got != fmt.Sprint(n) {
			t.Fatalf("event %d: %v", n, e)
		}
		if since := time.Since(start); since < interval {
			t.Fatalf("event %d came %s after the first was published, within the write interval (%s)", n, since, interval)
		}
	}
}
