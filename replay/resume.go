package replay

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/rooms"
)

// JoinRequest is a session joining a room, as PROTOCOL.md's join frame asks. The caller has
// checked that the session may read the room.
type JoinRequest struct {
	Room, User, Session string
	Presence            json.RawMessage
	// After is the client's cursor: nil for none (a live join, unless the session has a recorded
	// cursor), the zero ID for the whole room.
	After *eventlog.ID
}

// Joined is a session's membership of a room and its stream of the room's events.
type Joined struct {
	Stream  *Stream
	Head    eventlog.ID    // the room's head at the join, its own join event included
	Members []rooms.Member // the members at the join, the joiner included
	Resumed eventlog.ID    // the recorded cursor the stream resumes from; zero when none was used
	Unknown bool           // the cursor is not an event of the room (or is past its head)
	Rooms   rooms.Joined   // what the hub did (Unlogged: the log refused the join event)
	hub     *rooms.Hub
	req     JoinRequest
}

// Resume joins a session to a room and starts its stream; it is the one place that decides where
// a stream starts:
//
//  1. after the client's cursor, when it gave one (the zero ID: the room's first event);
//  2. else after the session's recorded cursor (cursors), when it has one: a device that lost
//     its state resumes where it last acknowledged;
//  3. else at the head: live events only, after the join's own event.
//
// A cursor that is not an event of the room is Unknown, and the stream still starts after it
// (every greater id); one past the head is Unknown too and starts at the head, since new events
// get smaller ids than it and honouring it would mute the session. When anything after the hub's
// join fails, the join is undone before Resume returns the error.
func Resume(ctx context.Context, hub *rooms.Hub, cursors eventlog.Cursors, w rooms.Waker, req JoinRequest) (*Joined, error) {
	log := hub.Log()
	j := &Joined{hub: hub, req: req}
	after := req.After
	if after == nil {
		recorded, err := cursors.Ack(ctx, req.User, req.Session, req.Room)
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
func (j *Joined) start(ctx context.Context, log eventlog.Log, after *eventlog.ID) (eventlog.ID, error) {
	head, err := log.Head(ctx, j.req.Room)
	if err != nil {
		return eventlog.ID{}, err
	}
	j.Head = head.ID
	switch {
	case after == nil:
		return head.ID, nil
	case after.Compare(head.ID) > 0:
		j.Unknown = true
		return head.ID, nil
	case after.IsZero():
		return *after, nil
	}
	found, err := log.Contains(ctx, j.req.Room, *after)
	if err != nil {
		return eventlog.ID{}, err
	}
	j.Unknown = !found
	return *after, nil
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
