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

// Batch is what Next hands out: events shared with the room's other members (from the feed's
// memory, each encoded once for all of them) or events read from the log for this subscriber
// alone. One of the two is set.
type Batch struct {
	Shared []*rooms.Entry
	Own    []eventlog.Event
}

// Len is the number of events in the batch.
func (b *Batch) Len() int { return len(b.Shared) + len(b.Own) }

// Next returns up to max next events. synced is true exactly once: in the call whose events end
// at the sync point (or with no events when the stream starts at or past it); the subscriber
// sends them, then its sync frame. An empty batch with synced false means nothing is new.
func (s *Stream) Next(ctx context.Context, max int) (b Batch, synced bool, err error) {
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		return b, true, nil
	}
	var ok bool
	if b.Shared, ok = s.sub.After(s.cursor, max); !ok {
		if b.Own, err = s.log.ReadAfter(ctx, s.sub.Room(), s.cursor, max); err != nil {
			return Batch{}, false, err
		}
	}
	if !s.synced {
		// Stop at the sync point so the sync frame follows the head event exactly.
		for i, e := range b.Shared {
			if e.Event.ID.Compare(s.syncAt) > 0 {
				b.Shared = b.Shared[:i]
				break
			}
		}
		for i := range b.Own {
			if b.Own[i].ID.Compare(s.syncAt) > 0 {
				b.Own = b.Own[:i]
				break
			}
		}
	}
	if n := len(b.Shared); n > 0 {
		s.cursor = b.Shared[n-1].Event.ID
	}
	if n := len(b.Own); n > 0 {
		s.cursor = b.Own[n-1].ID
	}
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		synced = true
	}
	return b, synced, nil
}

// Pending reports whether the stream may have events to hand out without waiting for a wake-up:
// it has not synced yet.
func (s *Stream) Pending() bool { return !s.synced }

// Close releases the room subscription.
func (s *Stream) Close() { s.sub.Close() }
