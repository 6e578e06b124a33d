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

// Signal hands s to every subscriber of s.Room on this node that is a SignalReceiver, except
// from (the sender, which knows what it sent). It reports how many were handed it. A room nobody
// subscribes to is not created for it.
func (h *Hub) Signal(from Waker, s *Signal) int {
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
