package replay

import (
	"context"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/rooms"
)

// Stream hands one subscriber the events of one room after a cursor, in id order, each once:
// first those up to the head the subscriber was told at join (the replay), then a sync point, then
// live ones. Events come from the room feed's memory while it reaches back to the cursor and from
// the log otherwise, so a subscriber that falls behind reads the log at its own pace and comes
// back to the shared memory once it has caught up, with no gap and no duplicate: the cursor alone
// decides what is next.
//
// A Stream is used by one goroutine at a time.
type Stream struct {
	log    eventlog.Log
	sub    *rooms.Subscription
	cursor eventlog.ID
	syncAt eventlog.ID
	synced bool

	// Backfilled counts the events handed out from behind the feed's memory.
	Backfilled int
}

// NewStream starts a stream of sub's room after cursor after; the sync point is head (the room's
// head as the joined frame told the subscriber).
func NewStream(log eventlog.Log, sub *rooms.Subscription, after, head eventlog.ID) *Stream {
	return &Stream{log: log, sub: sub, cursor: after, syncAt: head}
}

// Cursor is the id of the last event the stream handed out (or its starting cursor).
func (s *Stream) Cursor() eventlog.ID { return s.cursor }

// Room is the streamed room.
func (s *Stream) Room() string { return s.sub.Room() }

// Next returns up to max next events. synced is true exactly once: in the call whose events end
// at the sync point (or with no events when the stream starts at or past it); the subscriber
// sends them, then its sync frame. No events and synced false means nothing is new.
//
// The entries are shared with the room's other subscribers (each is encoded once for all): from
// the feed's memory while the stream keeps up, from the room's backfill pages when it is behind.
func (s *Stream) Next(ctx context.Context, max int) (entries []*rooms.Entry, synced bool, err error) {
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		return nil, true, nil
	}
	entries, ok := s.sub.After(s.cursor, max)
	if !ok {
		// Behind the feed's memory: fill the batch from the backfill until it is full, the
		// log has nothing more, or the memory reaches back to the cursor again.
		cursor := s.cursor
		for len(entries) < max {
			more, atEnd, err := s.sub.Backfill(ctx, cursor, max-len(entries))
			if err != nil {
				return nil, false, err
			}
			entries = append(entries, more...)
			s.Backfilled += len(more)
			if len(more) > 0 {
				cursor = more[len(more)-1].Event.ID
			}
			if atEnd || len(more) == 0 {
				break
			}
			if live, ok := s.sub.After(cursor, max-len(entries)); ok {
				entries = append(entries, live...)
				break
			}
		}
	}
	if !s.synced {
		// Stop at the sync point so the sync frame follows the head event exactly.
		for i, e := range entries {
			if e.Event.ID.Compare(s.syncAt) > 0 {
				entries = entries[:i]
				break
			}
		}
	}
	if n := len(entries); n > 0 {
		s.cursor = entries[n-1].Event.ID
	}
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		synced = true
	}
	return entries, synced, nil
}

// Pending reports whether the stream may have events to hand out without waiting for a wake-up:
// it has not synced yet.
func (s *Stream) Pending() bool { return !s.synced }

// Close releases the room subscription.
func (s *Stream) Close() { s.sub.Close() }
