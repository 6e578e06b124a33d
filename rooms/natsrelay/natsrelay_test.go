package natsrelay_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog/memlog"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/rooms/natsrelay"
)

type sink struct {
	mu  sync.Mutex
	got []string
}

func (s *sink) Wake() {}
func (s *sink) Signal(sig *rooms.Signal) {
	s.mu.Lock()
	s.got = append(s.got, sig.User+":"+string(sig.Body))
	s.mu.Unlock()
}
func (s *sink) signals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// node is a hub with a relay on a connection of its own.
func node(t *testing.T, ns *natstest.Server) *rooms.Hub {
	hub, _ := countingNode(t, ns)
	return hub
}

// countingNode is node, and counts the signals its relay receives, room by room.
func countingNode(t *testing.T, ns *natstest.Server) (*rooms.Hub, func(room string) int) {
	t.Helper()
	var hub *rooms.Hub
	var ready sync.WaitGroup
	var mu sync.Mutex
	received := map[string]int{}
	ready.Add(1)
	relay, err := natsrelay.New(natstest.Connect(t, ns), "", func(s *rooms.Signal) int {
		ready.Wait()
		mu.Lock()
		received[s.Room]++
		mu.Unlock()
		return hub.Relayed(s)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	hub = rooms.NewHub(memlog.New(memlog.Options{}), rooms.Options{Relay: relay})
	ready.Done()
	return hub, func(room string) int {
		mu.Lock()
		defer mu.Unlock()
		return received[room]
	}
}

// A signal of a member on one node reaches the room's members on the other, once, and neither
// the sender nor another room.
func TestSignalsCrossNodes(t *testing.T) {
	ns := natstest.Start(t)
	a, b := node(t, ns), node(t, ns)
	sender, onA, onB, elsewhere := &sink{}, &sink{}, &sink{}, &sink{}
	for _, s := range []struct {
		hub  *rooms.Hub
		room string
		w    *sink
	}{{a, "doc", sender}, {a, "doc", onA}, {b, "doc", onB}, {b, "other", elsewhere}} {
		sub, err := s.hub.Subscribe(s.room, s.w)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
	}
	a.Signal(sender, &rooms.Signal{Room: "doc", User: "ann", Session: "s", Body: json.RawMessage(`{"cursor":3}`)})
	deadline := time.Now().Add(10 * time.Second)
	for len(onB.signals()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // time for a duplicate to show, if any
	want := `[ann:{"cursor":3}]`
	if got := onB.signals(); len(got) != 1 || "["+got[0]+"]" != want {
		t.Fatalf("member on b got %v, want %s", got, want)
	}
	if got := onA.signals(); len(got) != 1 {
		t.Fatalf("member on a got %v, want the signal once (not again from the relay)", got)
	}
	if len(sender.signals()) != 0 || len(elsewhere.signals()) != 0 {
		t.Fatalf("sender %v, other room %v: want nothing", sender.signals(), elsewhere.signals())
	}
}

// A node receives the signals of the rooms it has subscribers of, and no others: not those of a
// room nobody on it follows, nor those of a room after its last subscriber left. Before, every
// node received every room's signals, and dropped most.
func TestSignalsGoOnlyToNodesOfTheRoom(t *testing.T) {
	ns := natstest.Start(t)
	a := node(t, ns)
	b, received := countingNode(t, ns)
	sender, onB, marker := &sink{}, &sink{}, &sink{}
	subA, err := a.Subscribe("doc", sender)
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()
	subB, err := b.Subscribe("doc", onB)
	if err != nil {
		t.Fatal(err)
	}
	subMarker, err := b.Subscribe("marker", marker)
	if err != nil {
		t.Fatal(err)
	}
	defer subMarker.Close()
	// a signal of the marker room, after the others, shows that b has had what came before
	flushed := func(want int) {
		t.Helper()
		a.Signal(sender, &rooms.Signal{Room: "marker", User: "ann", Body: json.RawMessage(`1`)})
		deadline := time.Now().Add(10 * time.Second)
		for len(marker.signals()) < want {
			if time.Now().After(deadline) {
				t.Fatalf("b never got the marker signal %d", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	a.Signal(sender, &rooms.Signal{Room: "doc", User: "ann", Body: json.RawMessage(`1`)})
	a.Signal(sender, &rooms.Signal{Room: "elsewhere", User: "ann", Body: json.RawMessage(`1`)})
	flushed(1)
	if received("doc") != 1 || received("elsewhere") != 0 || len(onB.signals()) != 1 {
		t.Fatalf("b received %d of doc's and %d of elsewhere's signals (its member got %d); want 1, 0 and 1",
			received("doc"), received("elsewhere"), len(onB.signals()))
	}
	subB.Close() // b's last subscriber of doc
	a.Signal(sender, &rooms.Signal{Room: "doc", User: "ann", Body: json.RawMessage(`2`)})
	flushed(2)
	if received("doc") != 1 {
		t.Fatalf("b received %d of doc's signals after its last subscriber left; want 1 still", received("doc"))
	}
	// And a new subscriber of doc on b gets its signals again.
	again := &sink{}
	subAgain, err := b.Subscribe("doc", again)
	if err != nil {
		t.Fatal(err)
	}
	defer subAgain.Close()
	a.Signal(sender, &rooms.Signal{Room: "doc", User: "ann", Body: json.RawMessage(`3`)})
	flushed(3)
	if got := again.signals(); len(got) != 1 || got[0] != "ann:3" {
		t.Fatalf("the new subscriber on b got %v; want ann:3", got)
	}
}
