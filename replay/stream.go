package replay

import (
	"context"
	"errors"

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

// Next hands out up to max next events. Those the room's memory holds come back as shared
// entries (each encoded once for all the room's members); when the stream is behind that memory,
// it reads the log and passes each event to own instead, valid only during the call (it points
// into storage: own encodes it and keeps nothing). n counts the events handed out either way.
//
// synced is true exactly once: in the call whose events end at the sync point (or with no events
// when the stream starts at or past it); the subscriber sends them, then its sync frame. No
// events and synced false means nothing is new.
func (s *Stream) Next(ctx context.Context, max int, own func(*eventlog.Event) error) (shared []*rooms.Entry, n int, synced bool, err error) {
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		return nil, 0, true, nil
	}
	var ok bool
	if shared, ok = s.sub.After(s.cursor, max); ok {
		if !s.synced {
			// Stop at the sync point so the sync frame follows the head event exactly.
			for i, e := range shared {
				if e.Event.ID.Compare(s.syncAt) > 0 {
					shared = shared[:i]
					break
				}
			}
		}
		if n = len(shared); n > 0 {
			s.cursor = shared[n-1].Event.ID
		}
	} else {
		last := s.cursor
		n, err = s.log.ReadAfterFunc(ctx, s.sub.Room(), s.cursor, max, func(e *eventlog.Event) error {
			if !s.synced && e.ID.Compare(s.syncAt) > 0 {
				return errSyncPoint
			}
			if err := own(e); err != nil {
				return err
			}
			last = e.ID
			return nil
		})
		if err == errSyncPoint {
			err = nil
		}
		if err != nil {
			return nil, 0, false, err
		}
		s.cursor = last
	}
	if !s.synced && s.cursor.Compare(s.syncAt) >= 0 {
		s.synced = true
		synced = true
	}
	return shared, n, synced, nil
}

// errSyncPoint stops a log read at the sync point.
var errSyncPoint = errors.New("sync point")

// Close releases the room subscription.
func (s *Stream) Close() { s.sub.Close() }
