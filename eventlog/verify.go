package eventlog

import (
	"context"
	"fmt"
)

// Verification written once: every backend's Auditor.Verify is VerifyRooms walking the rooms, and
// each room's events go through a ChainCheck; a backend supplies only its room list and its walk
// of one room. The checks themselves (ids increase, hashes chain, the head and the anchors
// agree) are in this file and anchor.go.

// VerifyRooms is Auditor.Verify, written once. It validates room, then checks it (or, when room is
// "", every room names lists, in its order) with verifyRoom, and ends at the first break or
// error; when all rooms pass it reports an anchored room the log does not have.
//
// verifyRoom checks one room, given that room's anchors, through a ChainCheck; it adds the room
// to rep with ChainCheck.AddTo when the room passes, and reports found=false for a room the log
// does not have (whose anchors then break the verification).
func VerifyRooms(ctx context.Context, room string, anchors []Anchor,
	names func(context.Context) ([]string, error),
	verifyRoom func(ctx context.Context, room string, anchors []Anchor, rep *VerifyReport) (brk *Break, found bool, err error),
) (VerifyReport, error) {
	var rep VerifyReport
	list := []string{room}
	if room != "" {
		if err := ValidRoom(room); err != nil {
			return rep, fmt.Errorf("eventlog: verify: %w", err)
		}
	} else {
		var err error
		if list, err = names(ctx); err != nil {
			return rep, err
		}
	}
	byRoom := anchorsByRoom(room, anchors)
	for _, name := range list {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		brk, found, err := verifyRoom(ctx, name, byRoom[name], &rep)
		if err != nil || brk != nil {
			rep.Broken = brk
			return rep, err
		}
		if found {
			delete(byRoom, name)
		}
	}
	rep.Broken = anchoredRoomsMissing(byRoom)
	return rep, nil
}

// ChainCheck verifies one room's hash chain, event by event in log order, and the anchors an
// auditor kept for the room (Auditor.Verify): the one verification every backend runs. Start it
// with NewChainCheck at the room's floor, call Next with every remaining event and its record,
// then End with the room's head. A backend that walks the room in several reads while appends go
// on gives the head as read before the walk to ExpectHead instead, and ends with EndWalk; one
// whose floor a compaction moved between two reads goes on with Refloor. The first broken link
// found is returned, and the check is over.
type ChainCheck struct {
	room   string
	at     map[uint64]Anchor
	prev   [32]byte
	last   ID
	count  uint64 // the position of last in the room
	floor  uint64
	head   *Head // see ExpectHead
	First  ID    // the smallest id checked
	newest ID    // the last id Next accepted (zero before any)
}

// NewChainCheck starts a check of room from floor (the zero Head when nothing was compacted),
// against the room's anchors (of other rooms are ignored).
func NewChainCheck(room string, floor Head, anchors []Anchor) (*ChainCheck, *Break) {
	var mine []Anchor
	for _, a := range anchors {
		if a.Room == room {
			mine = append(mine, a)
		}
	}
	c := &ChainCheck{room: room, at: anchorsAt(mine), prev: floor.Hash, last: floor.ID, count: floor.Count, floor: floor.Count}
	return c, anchorsBelowFloor(room, c.at, floor)
}

// Next checks ev, whose record as stored is rec: its id follows the last one (or the floor's),
// and its stored hash is the one computed from the previous event.
func (c *ChainCheck) Next(ev *Event, rec []byte) *Break {
	if !c.last.IsZero() && ev.ID.Compare(c.last) <= 0 {
		return &Break{Room: c.room, ID: ev.ID, Reason: fmt.Sprintf("id does not increase after %s", c.last)}
	}
	if want := chainHash(rec, &c.prev, c.room, ev.ID); want != ev.Hash {
		return &Break{Room: c.room, ID: ev.ID, Reason: fmt.Sprintf("hash does not chain to the previous event (stored %x, computed %x): the event, or one before it, was changed, removed or moved", ev.Hash[:6], want[:6])}
	}
	c.prev, c.last, c.newest = ev.Hash, ev.ID, ev.ID
	c.count++
	if c.First.IsZero() {
		c.First = ev.ID
	}
	if h := c.head; h != nil && c.count == h.Count && (h.ID != ev.ID || h.Hash != ev.Hash) {
		return &Break{Room: c.room, ID: ev.ID, Reason: fmt.Sprintf("room head entry names %s with another hash, but event %d of the room is %s", h.ID, c.count, ev.ID)}
	}
	return checkAnchor(c.room, c.at, c.count, ev.ID, ev.Hash)
}

// Last is the id of the last event checked (the floor's before any).
func (c *ChainCheck) Last() ID { return c.last }

// Room is the room checked.
func (c *ChainCheck) Room() string { return c.room }

// ExpectHead gives the room's head as read before a walk that appends may outlast: Next checks
// the event at its position against it, and EndWalk that the walk reached it.
func (c *ChainCheck) ExpectHead(head Head) { c.head = &head }

// Refloor goes on from floor, where a compaction moved the room's floor while the walk was
// between two reads: the chain goes on from it. It returns a break when an anchor names an event
// the compaction removed with another hash.
func (c *ChainCheck) Refloor(floor Head) *Break {
	c.prev, c.last, c.count, c.floor = floor.Hash, floor.ID, floor.Count, floor.Count
	return anchorsBelowFloor(c.room, c.at, floor)
}

// EndWalk ends a check started with ExpectHead: the walk reached the head as read before it, and
// no anchor names an event past the last one checked.
func (c *ChainCheck) EndWalk() *Break {
	if c.head != nil && c.count < c.head.Count {
		return &Break{Room: c.room, ID: c.last, Reason: fmt.Sprintf("room head says %d events, found %d: events were removed", c.head.Count, c.count)}
	}
	return anchorsPast(c.room, c.at, c.count)
}

// Checked is how many events Next has checked (past the floor).
func (c *ChainCheck) Checked() uint64 { return c.count - c.floor }

// AddTo adds the room, once its check ended without a break, to rep: one room, the events
// checked, those compaction removed (the final floor), and the smallest and largest ids seen.
func (c *ChainCheck) AddTo(rep *VerifyReport) {
	rep.Rooms++
	rep.Events += c.Checked()
	rep.Compacted += c.floor
	if !c.First.IsZero() && (rep.First.IsZero() || c.First.Compare(rep.First) < 0) {
		rep.First = c.First
	}
	if c.newest.Compare(rep.Last) > 0 {
		rep.Last = c.newest
	}
}

// End checks the room's head, as the backend records it, against the last event checked, and
// that no anchor names an event past it.
func (c *ChainCheck) End(head Head) *Break {
	if head.Count != c.count || head.ID != c.last || head.Hash != c.prev {
		return &Break{Room: c.room, ID: c.last, Reason: fmt.Sprintf("the room's head names event %d (%s), but the chain ends at event %d (%s): events were removed or added around it", head.Count, head.ID, c.count, c.last)}
	}
	return anchorsPast(c.room, c.at, c.count)
}
