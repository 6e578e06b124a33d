package natsrelay_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
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
	t.Helper()
	var hub *rooms.Hub
	var ready sync.WaitGroup
	ready.Add(1)
	relay, err := natsrelay.New(natstest.Connect(t, ns), "", func(s *rooms.Signal) int { ready.Wait(); return hub.Relayed(s) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	hub = rooms.NewHub(eventlog.NewMemLog(eventlog.Options{}), rooms.Options{Relay: relay})
	ready.Done()
	return hub
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
