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

	// FromLog counts the events this stream read from the log rather than the feed.
	FromLog int
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
// sends them, then its sync frame. An empty result with synced false means nothing is new.
func (s *Stream) Next(ctx context.Context, max int) (entries []*rooms.Entry, synced bool, err error) {
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		return nil, true, nil
	}
	entries, ok := s.sub.After(s.cursor, max)
	if !ok {
		evs, err := s.log.ReadAfter(ctx, s.sub.Room(), s.cursor, max)
		if err != nil {
			return nil, false, err
		}
		entries = make([]*rooms.Entry, len(evs))
		for i, ev := range evs {
			entries[i] = rooms.NewEntry(ev)
		}
		s.FromLog += len(evs)
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
	if len(entries) > 0 {
		s.cursor = entries[len(entries)-1].Event.ID
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
