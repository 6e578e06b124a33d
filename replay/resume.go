package replay

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/rooms"
)

// JoinRequest is a session joining a room, as the protocol's join frame asks (docs/protocol.md). The caller has
// checked that the session may read the room.
type JoinRequest struct {
	Room, User, Session string
	Presence            json.RawMessage
	// After is the client's cursor: nil for none (a live join, unless the session has a recorded
	// cursor), the zero ID for the whole room.
	After *eventlog.ID
	// FromSnapshot (with After nil) starts at the room's latest snapshot: the snapshot event,
	// then every event after it. A room without one is joined from its first event.
	FromSnapshot bool
}

// Joined is a session's membership of a room and its stream of the room's events.
type Joined struct {
	Stream  *Stream
	Head    eventlog.ID    // the room's head at the join, its own join event included
	Members []rooms.Member // the members at the join, the joiner included
	Resumed eventlog.ID    // the recorded cursor the stream resumes from; zero when none was used
	Unknown bool           // the cursor is not an event of the room (or is past its head)
	// TooOld: the cursor is older than the room's oldest remaining event (a compaction removed
	// what came after it), so the stream starts at the latest snapshot instead: never a gap.
	TooOld bool
	// Snapshot is the snapshot the stream starts with (FromSnapshot, or TooOld); zero when none.
	Snapshot eventlog.ID
	Rooms    rooms.Joined // what the hub did (Unlogged: the log refused the join event)
	hub      *rooms.Hub
	req      JoinRequest
}

// Resume joins a session to a room and starts its stream; it is the one place that decides where
// a stream starts:
//
//  1. after the client's cursor, when it gave one (the zero ID: the room's first event);
//  2. else after the session's recorded cursor (cursors), when it has one: a device that lost
//     its state resumes where it last acknowledged;
//  3. else at the head: live events only, after the join's own event.
//
// With FromSnapshot (and no cursor) the stream starts at the room's latest snapshot; a cursor a
// compaction left behind (older than the room's floor) is TooOld and starts there too.
//
// A cursor that is not an event of the room is Unknown, and the stream still starts after it
// (every greater id); one past the head is Unknown too and starts at the head, since new events
// get smaller ids than it and honouring it would mute the session. When anything after the hub's
// join fails, the join is undone before Resume returns the error.
func Resume(ctx context.Context, hub *rooms.Hub, cursors eventlog.Cursors, w rooms.Waker, req JoinRequest) (*Joined, error) {
	log := hub.Log()
	j := &Joined{hub: hub, req: req}
	after := req.After
	if after == nil && !req.FromSnapshot {
		recorded, err := cursors.Cursor(ctx, req.User, req.Session, req.Room)
		if err != nil {
			return nil, fmt.Errorf("replay: join %s: recorded cursor: %w", req.Room, err)
		}
		if !recorded.IsZero() {
			after, j.Resumed = &recorded, recorded
		}
	}
	var err error
	if j.Rooms, err = hub.Join(ctx, req.Room, req.User, req.Session, req.Presence); err != nil {
		return nil, err
	}
	start, err := j.start(ctx, log, after)
	if err != nil {
		j.leave()
		return nil, fmt.Errorf("replay: join %s: %w", req.Room, err)
	}
	sub, err := hub.Subscribe(req.Room, w)
	if err != nil {
		j.leave()
		return nil, fmt.Errorf("replay: join %s: %w", req.Room, err)
	}
	j.Members = hub.Members(req.Room)
	j.Stream = NewStream(log, sub, start, j.Head)
	return j, nil
}

// start reads the head and decides the stream's starting cursor (see Resume).
func (j *Joined) start(ctx context.Context, log eventlog.Store, after *eventlog.ID) (eventlog.ID, error) {
	head, err := log.Head(ctx, j.req.Room)
	if err != nil {
		return eventlog.ID{}, err
	}
	j.Head = head.ID
	if j.req.FromSnapshot && after == nil {
		return j.fromSnapshot(ctx, log)
	}
	switch {
	case after == nil:
		return head.ID, nil
	case after.Compare(head.ID) > 0:
		j.Unknown = true
		return head.ID, nil
	}
	floor, err := log.Floor(ctx, j.req.Room)
	if err != nil {
		return eventlog.ID{}, err
	}
	switch {
	case !floor.ID.IsZero() && after.Compare(floor.ID) < 0:
		j.TooOld = true // what followed the cursor was compacted away
		return j.fromSnapshot(ctx, log)
	case !floor.ID.IsZero() && *after == floor.ID:
		return *after, nil // removed, but everything after it is there: no gap
	}
	if after.IsZero() {
		return *after, nil
	}
	found, err := log.Contains(ctx, j.req.Room, *after)
	if err != nil {
		return eventlog.ID{}, err
	}
	j.Unknown = !found
	return *after, nil
}

// fromSnapshot starts the stream right before the room's latest snapshot, which was appended
// right after the event it covers: the stream then holds the snapshot, then every later event.
// Without a snapshot it starts at the room's first event.
func (j *Joined) fromSnapshot(ctx context.Context, log eventlog.Store) (eventlog.ID, error) {
	snap, found, err := log.LatestSnapshot(ctx, j.req.Room)
	if err != nil || !found {
		return eventlog.ID{}, err
	}
	covers, err := eventlog.SnapshotCovers(snap)
	if err != nil {
		return eventlog.ID{}, err
	}
	j.Snapshot = snap.ID
	return covers, nil
}

// Cancel undoes the join: the stream stops and the session leaves (after the grace period, as a
// dropped connection would). For a caller that could not hand the join to its client.
func (j *Joined) Cancel() {
	j.Stream.Close()
	j.hub.Leave(context.Background(), j.req.Room, j.req.User, j.req.Session, false)
}

// leave undoes the hub's join at once: the join failed, so nothing of the room was sent.
func (j *Joined) leave() {
	j.hub.Leave(context.Background(), j.req.Room, j.req.User, j.req.Session, true)
}
