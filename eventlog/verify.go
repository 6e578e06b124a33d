package eventlog

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// defaultVerifyChunk is how many events Verify checks in one read transaction.
const defaultVerifyChunk = 4096

// Verify implements Auditor. For each room it checks, event by event, that keys are ids in strictly
// increasing order, that every record decodes, and that every stored hash equals the hash
// recomputed from the previous one; then that the room's head entry names the last event, its
// hash and the count. With anchors (of room, or of any room when room is ""), it also checks
// that each anchored event is still in its room, at its position, with its hash, so that a room
// cut back to an earlier event fails. The first failure is reported in VerifyReport.Broken.
func (l *BoltLog) Verify(ctx context.Context, room string, anchors ...Anchor) (VerifyReport, error) {
	var rep VerifyReport
	var names []string
	byRoom := anchorsByRoom(room, anchors)
	if room != "" {
		if err := ValidRoom(room); err != nil {
			return rep, fmt.Errorf("eventlog: verify: %w", err)
		}
		names = []string{room}
	} else {
		err := l.view(ctx, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRooms).ForEachBucket(func(k []byte) error {
				names = append(names, string(k))
				return nil
			})
		})
		if err != nil {
			return rep, err
		}
	}
	for _, name := range names {
		if err := errCtx(ctx); err != nil {
			return rep, err
		}
		brk, err := l.verifyRoom(ctx, name, byRoom[name], &rep)
		delete(byRoom, name)
		if err != nil || brk != nil {
			rep.Broken = brk
			return rep, err
		}
	}
	rep.Broken = anchoredRoomsMissing(byRoom)
	return rep, nil
}

// anchorsByRoom groups the anchors of room (of every room when room is "").
func anchorsByRoom(room string, anchors []Anchor) map[string][]Anchor {
	byRoom := map[string][]Anchor{}
	for _, a := range anchors {
		if room == "" || a.Room == room {
			byRoom[a.Room] = append(byRoom[a.Room], a)
		}
	}
	return byRoom
}

// anchorsAt indexes one room's anchors by their position in the room (1-based).
func anchorsAt(anchors []Anchor) map[uint64]Anchor {
	at := make(map[uint64]Anchor, len(anchors))
	for _, a := range anchors {
		at[a.Count] = a
	}
	return at
}

// checkAnchor checks the room's event number count (id, hash) against its anchor, if any, and
// takes that anchor off at.
func checkAnchor(room string, at map[uint64]Anchor, count uint64, id ID, hash [32]byte) *Break {
	a, ok := at[count]
	if !ok {
		return nil
	}
	delete(at, count)
	if a.ID != id || a.Hash != hash {
		return &Break{Room: room, ID: id, Reason: fmt.Sprintf("event %d of the room is %s with hash %x, but the anchor names %s with hash %x: the room was rewritten", count, id, hash[:6], a.ID, a.Hash[:6])}
	}
	return nil
}

// anchorsPast reports an anchor left in at once the room's count events are checked: the room no
// longer reaches it.
func anchorsPast(room string, at map[uint64]Anchor, count uint64) *Break {
	for _, a := range at {
		return &Break{Room: room, ID: a.ID, Reason: fmt.Sprintf("the room has %d events, but the anchor names event %d (%s): events were cut from its end", count, a.Count, a.ID)}
	}
	return nil
}

// anchoredRoomsMissing reports an anchored room the log does not have.
func anchoredRoomsMissing(byRoom map[string][]Anchor) *Break {
	for name, as := range byRoom {
		if len(as) == 0 {
			continue
		}
		a := as[0]
		return &Break{Room: name, ID: a.ID, Reason: fmt.Sprintf("anchored at event %d (%s), but the room is not in the log: it was removed", a.Count, a.ID)}
	}
	return nil
}

func (l *BoltLog) verifyRoom(ctx context.Context, room string, anchors []Anchor, rep *VerifyReport) (*Break, error) {
	at := anchorsAt(anchors)
	var (
		prev    [32]byte // hash of the previous event; zero before the first
		last    ID
		count   uint64
		head    *Head
		brk     *Break
		done    bool
		started bool   // the walk has begun: it resumes after last
		removed uint64 // events before the floor
	)
	broken := func(id ID, format string, args ...any) {
		brk = &Break{Room: room, ID: id, Reason: fmt.Sprintf(format, args...)}
	}
	for !done && brk == nil {
		if err := errCtx(ctx); err != nil {
			return nil, err
		}
		err := l.view(ctx, func(tx *bolt.Tx) error {
			b := l.roomBucket(tx, room)
			if b == nil {
				if count == 0 && head == nil {
					done = true // an unknown room: nothing to verify
					return nil
				}
				broken(last, "room vanished during verification")
				return nil
			}
			if head == nil {
				hv := b.Get(keyHead)
				if hv == nil {
					broken(ID{}, "room has no head entry")
					return nil
				}
				h, err := decodeHead(hv)
				if err != nil {
					broken(ID{}, "head entry: %v", err)
					return nil
				}
				head = &h
				rep.Rooms++
				// A compacted room's chain goes on from its floor: the last event removed.
				floor, err := roomFloor(b)
				if err != nil {
					broken(ID{}, "floor entry: %v", err)
					return nil
				}
				prev, last, count, removed = floor.Hash, floor.ID, floor.Count, floor.Count
				rep.Compacted += floor.Count
				if brk = anchorsBelowFloor(room, at, floor); brk != nil {
					return nil
				}
			}
			c := b.Cursor()
			var k, v []byte
			if !started {
				started = true
				k, v = c.First()
			} else {
				// Resume after the last verified event.
				k, v = c.Seek(last[:])
				switch floor, err := roomFloor(b); {
				case bytes.Equal(k, last[:]):
					k, v = c.Next()
				case err == nil && floor.ID.Compare(last) >= 0:
					// A compaction ran meanwhile and removed it: go on from the new floor (Seek
					// found the first event after it).
					prev, last, count = floor.Hash, floor.ID, floor.Count
					rep.Compacted += floor.Count - removed
					removed = floor.Count
					if brk = anchorsBelowFloor(room, at, floor); brk != nil {
						return nil
					}
				default:
					broken(last, "event vanished during verification")
					return nil
				}
			}
			for n := 0; n < l.verifyChunk; n++ {
				if k == nil || len(k) == 17 && k[0] >= keyFloor[0] { // the room's own entries follow its events
					done = true
					return nil
				}
				var id ID
				if len(k) != 16 {
					broken(last, "key %x after event %s is not an id", k, last)
					return nil
				}
				copy(id[:], k)
				if !last.IsZero() && id.Compare(last) <= 0 {
					broken(id, "id does not increase after %s", last)
					return nil
				}
				ev := Event{ID: id, Room: room}
				rec := bytes.Clone(v)
				if err := decodeRecord(&ev, rec); err != nil {
					broken(id, "record does not decode: %v", err)
					return nil
				}
				if want := chainHash(rec, &prev, room, id); want != ev.Hash {
					broken(id, "hash does not chain to the previous event (stored %x, computed %x): the event, or one before it, was changed, removed or moved", ev.Hash[:6], want[:6])
					return nil
				}
				prev, last = ev.Hash, id
				count++
				if brk = checkAnchor(room, at, count, id, ev.Hash); brk != nil {
					return nil
				}
				// Appends during a long walk move the head on; check the head entry as read at
				// the start against the event it named then.
				if count == head.Count && (head.ID != id || head.Hash != ev.Hash) {
					broken(id, "room head entry names %s with another hash, but event %d of the room is %s", head.ID, count, id)
					return nil
				}
				if rep.First.IsZero() || id.Compare(rep.First) < 0 {
					rep.First = id
				}
				if id.Compare(rep.Last) > 0 {
					rep.Last = id
				}
				k, v = c.Next()
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if brk == nil && head == nil {
		brk = anchoredRoomsMissing(map[string][]Anchor{room: anchors})
	}
	if brk != nil || head == nil {
		return brk, nil
	}
	if count < head.Count {
		broken(last, "room head says %d events, found %d: events were removed", head.Count, count)
		return brk, nil
	}
	if brk = anchorsPast(room, at, count); brk != nil {
		return brk, nil
	}
	rep.Events += count - removed
	return brk, nil
}

// anchorsBelowFloor checks the anchors a compaction reached: the one at the floor's position must
// name the floor's event, with its hash (the chain goes on from it); those before it name events
// removed, which can no longer be checked, and are taken off.
func anchorsBelowFloor(room string, at map[uint64]Anchor, floor Head) *Break {
	for n, a := range at {
		if n > floor.Count {
			continue
		}
		delete(at, n)
		if n == floor.Count && (a.ID != floor.ID || a.Hash != floor.Hash) {
			return &Break{Room: room, ID: floor.ID, Reason: fmt.Sprintf("the room was compacted to event %d (%s, hash %x), but the anchor names %s with hash %x there", n, floor.ID, floor.Hash[:6], a.ID, a.Hash[:6])}
		}
	}
	return nil
}
