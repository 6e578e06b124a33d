package eventlog

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Building blocks for backends kept outside this package (eventlog/jetstream): the same
// validation, the same record format and hash chain, and the same chain check, so an event
// hashes the same and verifies the same wherever it is stored, and a backend need not copy any
// of it. The record layout is in the package comment.

// Normalize validates req as every backend must before storing it, and returns it with the
// default kind filled in and the body compacted (a "null" body becomes none). Its errors wrap
// the ErrBad... values. A backend stores exactly what it returns.
func Normalize(req AppendRequest, maxBody int) (AppendRequest, error) { return normalize(req, maxBody) }

// EncodeRecord appends the record of req (normalized) to dst, with its hash left zero for
// ChainRecord to fill in.
func EncodeRecord(dst []byte, req *AppendRequest) []byte { return encodeRecord(dst, req) }

// ChainRecord computes the chain hash of record rec, stored as event id of room after an event
// whose hash is prev (32 zero bytes for a room's first event), writes it into rec and returns it.
func ChainRecord(rec []byte, prev *[32]byte, room string, id ID) [32]byte {
	return chain(rec, prev, room, id)
}

// DecodeRecord fills e's kind, user, session, key, body and hash from rec; e.ID and e.Room are
// the caller's. The strings and body of e point into rec, which must not change afterwards.
func DecodeRecord(e *Event, rec []byte) error { return decodeRecord(e, rec) }

// CompactionBody is the body of the compaction event a backend appends when it has removed
// removed events of a room up to floor, compacting it to snapshot, which snapshotBy wrote.
func CompactionBody(snapshot ID, snapshotBy string, floor Head, removed int) json.RawMessage {
	body, _ := json.Marshal(compactionBody{
		Snapshot: snapshot.String(), SnapshotBy: snapshotBy, Floor: floor.ID.String(), Hash: hex.EncodeToString(floor.Hash[:]),
		Count: floor.Count, Removed: removed,
	})
	return body
}

// Check validates the filter's room patterns and limit, as Scan does before it reads.
func (f *ScanFilter) Check() error { return f.check() }

// ChainCheck verifies one room's hash chain, event by event in log order, and the anchors an
// auditor kept for the room (Auditor.Verify): the one verification every backend runs. Start it
// with NewChainCheck at the room's floor, call Next with every remaining event and its record,
// then End with the room's head. A backend that walks the room in several reads while appends go
// on gives the head as read before the walk to ExpectHead instead, and ends with EndWalk; one
// whose floor a compaction moved between two reads goes on with Refloor. The first broken link
// found is returned, and the check is over.
type ChainCheck struct {
	room  string
	at    map[uint64]Anchor
	prev  [32]byte
	last  ID
	count uint64 // the position of last in the room
	floor uint64
	head  *Head // see ExpectHead
	First ID    // the smallest id checked
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
	c.prev, c.last = ev.Hash, ev.ID
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

// ExpectHead gives the room's head as read before a walk that appends may outlast: Next checks
// the event at its position against it, and EndWalk that the walk reached it.
func (c *ChainCheck) ExpectHead(head Head) { c.head = &head }

// Refloor goes on from floor, where a compaction moved the room's floor while the walk was
// between two reads: the chain goes on from it. It returns how many more events the compaction
// removed, and a break when an anchor names its event with another hash.
func (c *ChainCheck) Refloor(floor Head) (removed uint64, brk *Break) {
	removed = floor.Count - c.floor
	c.prev, c.last, c.count, c.floor = floor.Hash, floor.ID, floor.Count, floor.Count
	return removed, anchorsBelowFloor(c.room, c.at, floor)
}

// EndWalk ends a check started with ExpectHead: the walk reached the head as read before it, and
// no anchor names an event past the last one checked.
func (c *ChainCheck) EndWalk() *Break {
	if c.head != nil && c.count < c.head.Count {
		return &Break{Room: c.room, ID: c.last, Reason: fmt.Sprintf("room head says %d events, found %d: events were removed", c.head.Count, c.count)}
	}
	return anchorsPast(c.room, c.at, c.count)
}

// Checked is how many events Next has checked.
func (c *ChainCheck) Checked() uint64 { return c.count - c.floor }

// End checks the room's head, as the backend records it, against the last event checked, and
// that no anchor names an event past it.
func (c *ChainCheck) End(head Head) *Break {
	if head.Count != c.count || head.ID != c.last || head.Hash != c.prev {
		return &Break{Room: c.room, ID: c.last, Reason: fmt.Sprintf("the room's head names event %d (%s), but the chain ends at event %d (%s): events were removed or added around it", head.Count, head.ID, c.count, c.last)}
	}
	return anchorsPast(c.room, c.at, c.count)
}

// MissingAnchoredRoom reports a break for the first anchor whose room is not in have (the rooms
// a Verify of every room found): the room was removed.
func MissingAnchoredRoom(anchors []Anchor, have func(room string) bool) *Break {
	byRoom := map[string][]Anchor{}
	for _, a := range anchors {
		if !have(a.Room) {
			byRoom[a.Room] = append(byRoom[a.Room], a)
		}
	}
	return anchoredRoomsMissing(byRoom)
}

// CheckRead validates a read's room and limit as every backend does (ErrBadRoom, ErrBadLimit).
func CheckRead(room string, limit int) error { return checkRead(room, limit) }

// CheckCursor validates a Cursors.SetCursor as every backend does.
func CheckCursor(user, session, room string, id ID) error { return checkAck(user, session, room, id) }

// CheckUser validates the user a system action is recorded under (Compactor.Compact's by).
func CheckUser(user string) error { return validText(ErrBadUser, "user", user, 1, MaxUserLen) }

// NewPending returns an append in flight for a backend's AppendAsync to complete, once, with
// Complete.
func NewPending() *Pending { return &Pending{done: make(chan struct{})} }

// Complete sets the outcome of an append made with NewPending and closes Done. Only the backend
// that made the Pending calls it, and only once.
func (p *Pending) Complete(r AppendResult, err error) { p.complete(r, err) }

// Failed returns a Pending that failed with err.
func Failed(err error) *Pending { return failed(err) }
