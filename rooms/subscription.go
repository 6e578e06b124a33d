package rooms

import (
	"sync"

	"github.com/roomlog/roomlog/eventlog"
)

// Subscription is a subscriber's hold on a room's feed: while it is open, the room keeps its recent
// events in memory and wakes the subscriber when new ones are committed.
type Subscription struct {
	room *Room
	feed *feed
	w    Waker
	once sync.Once
}

// Subscribe starts (or joins) the room's feed and registers w to be woken on new events.
func (h *Hub) Subscribe(room string, w Waker) (*Subscription, error) {
	r := h.lock(room)
	defer r.mu.Unlock()
	if r.feed == nil {
		f := newFeed(h.log, room, h.opts.RingSize)
		if err := f.start(h.logger); err != nil {
			h.forget(r)
			return nil, err
		}
		r.feed = f
		h.relayInterest(room, true)
	}
	r.subs++
	r.feed.mu.Lock()
	r.feed.subs[w] = struct{}{}
	r.feed.mu.Unlock()
	return &Subscription{room: r, feed: r.feed, w: w}, nil
}

// Room is the subscribed room's name.
func (s *Subscription) Room() string { return s.room.name }

// After returns up to max of the room's recent events with id > cursor. ok is false when the
// feed's memory does not reach back to cursor: the caller reads the log instead (and comes back
// once it has caught up).
func (s *Subscription) After(cursor eventlog.ID, max int) (entries []*Entry, ok bool) {
	return s.feed.after(cursor, max)
}

// Close unregisters the subscriber; the last one stops the room's feed.
func (s *Subscription) Close() {
	s.once.Do(func() {
		r := s.room
		r.mu.Lock()
		s.feed.mu.Lock()
		delete(s.feed.subs, s.w)
		s.feed.mu.Unlock()
		var stop *feed
		if r.feed == s.feed {
			r.subs--
			if r.subs == 0 {
				stop, r.feed = r.feed, nil
				r.hub.relayInterest(r.name, false)
				r.hub.forget(r)
			}
		}
		r.mu.Unlock()
		if stop != nil {
			stop.halt()
		}
	})
}
