package rooms

import "encoding/json"

// Signal is an ephemeral message to a room's current members: awareness (cursors, selections,
// who is typing), which changes many times a second and does not belong in a durable audit log.
// A signal is not logged, has no id and no cursor, and is best effort.
type Signal struct {
	Room, User, Session string
	Body                json.RawMessage
}

// SignalReceiver is implemented by a Waker that takes signals. Signal must not block: a receiver
// that cannot take one now (its send queue is full) drops it.
type SignalReceiver interface{ Signal(s *Signal) }

// Relay carries signals between nodes that share a log (rooms/natsrelay does, over NATS), so
// that a room's members on every node get them. Hub.Signal sends it each signal of this node's
// members; the relay hands those of other nodes to Hub.Relayed.
type Relay interface {
	// Send passes s on to the other nodes. It must not block; best effort, like signals.
	Send(s *Signal)
}

// RelayInterest is implemented by a Relay that receives only the signals of the rooms this node
// has subscribers of (natsrelay does), so that a node is not sent every room's signals. The hub
// calls Interest(room, true) when a room's first subscriber comes and Interest(room, false)
// when its last goes, in that order for each room, with the room locked: Interest may wait for
// its relay to have the interest registered (so a subscriber misses no signal sent after it
// subscribed), but not for longer than a round trip.
type RelayInterest interface {
	Interest(room string, on bool)
}

// relayInterest tells the relay, if it wants to know, that room's feed starts or stops.
func (h *Hub) relayInterest(room string, on bool) {
	if ri, ok := h.opts.Relay.(RelayInterest); ok {
		ri.Interest(room, on)
	}
}

// Signal hands s to every subscriber of s.Room on this node that is a SignalReceiver, except
// from (the sender, which knows what it sent), and to the relay, if any. It reports how many
// subscribers on this node were handed it. A room nobody subscribes to is not created for it.
func (h *Hub) Signal(from Waker, s *Signal) int {
	if h.opts.Relay != nil {
		h.opts.Relay.Send(s)
	}
	return h.deliverSignal(from, s)
}

// Relayed hands a signal from another node to this node's subscribers of its room.
func (h *Hub) Relayed(s *Signal) int { return h.deliverSignal(nil, s) }

func (h *Hub) deliverSignal(from Waker, s *Signal) int {
	h.mu.Lock()
	r := h.rooms[s.Room]
	h.mu.Unlock()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	if r.gone || r.feed == nil {
		r.mu.Unlock()
		return 0
	}
	f := r.feed
	r.mu.Unlock()
	f.mu.RLock()
	to := make([]SignalReceiver, 0, len(f.subs))
	for w := range f.subs {
		if sr, ok := w.(SignalReceiver); ok && w != from {
			to = append(to, sr)
		}
	}
	f.mu.RUnlock()
	for _, sr := range to {
		sr.Signal(s)
	}
	return len(to)
}
