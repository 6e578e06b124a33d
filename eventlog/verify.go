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

// verifyRoom walks one room in read transactions of verifyChunk events (appends and compactions
// go on between them) through a ChainCheck, adding what it checked to rep.
func (l *BoltLog) verifyRoom(ctx context.Context, room string, anchors []Anchor, rep *VerifyReport) (*Break, error) {
	var (
		check *ChainCheck // nil until the room's head and floor are read
		brk   *Break
		done  bool
	)
	for !done && brk == nil {
		if err := errCtx(ctx); err != nil {
			return nil, err
		}
		err := l.view(ctx, func(tx *bolt.Tx) error {
			b := l.roomBucket(tx, room)
			switch {
			case b == nil && check == nil:
				done = true // an unknown room: nothing to verify
				return nil
			case b == nil:
				brk = &Break{Room: room, ID: check.Last(), Reason: "room vanished during verification"}
				return nil
			case check == nil:
				check, brk = startRoomCheck(b, room, anchors, rep)
				if brk != nil {
					return nil
				}
			}
			done, brk = l.verifyEvents(b, check, rep)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if brk == nil && check == nil {
		brk = anchoredRoomsMissing(map[string][]Anchor{room: anchors})
	}
	if brk != nil || check == nil {
		return brk, nil
	}
	if brk = check.EndWalk(); brk != nil {
		return brk, nil
	}
	rep.Events += check.Checked()
	return nil, nil
}

// startRoomCheck reads the room's head and floor: the chain goes on from the floor (the last event
// a compaction removed), and the walk must reach the head as it is now.
func startRoomCheck(b *bolt.Bucket, room string, anchors []Anchor, rep *VerifyReport) (*ChainCheck, *Break) {
	hv := b.Get(keyHead)
	if hv == nil {
		return nil, &Break{Room: room, Reason: "room has no head entry"}
	}
	head, err := decodeHead(hv)
	if err != nil {
		return nil, &Break{Room: room, Reason: fmt.Sprintf("head entry: %v", err)}
	}
	floor, err := roomFloor(b)
	if err != nil {
		return nil, &Break{Room: room, Reason: fmt.Sprintf("floor entry: %v", err)}
	}
	rep.Rooms++
	rep.Compacted += floor.Count
	check, brk := NewChainCheck(room, floor, anchors)
	check.ExpectHead(head)
	return check, brk
}

// verifyEvents checks up to l.verifyChunk events of the room after the last one checked; done
// reports that it reached the room's end.
func (l *BoltLog) verifyEvents(b *bolt.Bucket, check *ChainCheck, rep *VerifyReport) (done bool, brk *Break) {
	c := b.Cursor()
	last := check.Last()
	k, v := c.First()
	if !last.IsZero() {
		// Resume after the last event checked (or after the floor).
		k, v = c.Seek(last[:])
		switch floor, err := roomFloor(b); {
		case bytes.Equal(k, last[:]):
			k, v = c.Next()
		case err == nil && floor.ID.Compare(last) >= 0:
			// A compaction ran meanwhile and removed it: go on from the new floor (Seek found the
			// first event after it).
			removed, brk := check.Refloor(floor)
			rep.Compacted += removed
			if brk != nil {
				return false, brk
			}
		default:
			return false, &Break{Room: check.room, ID: last, Reason: "event vanished during verification"}
		}
	}
	for range l.verifyChunk {
		if k == nil || len(k) == 17 && k[0] >= keyFloor[0] { // the room's own entries follow its events
			return true, nil
		}
		if len(k) != 16 {
			return false, &Break{Room: check.room, ID: check.Last(), Reason: fmt.Sprintf("key %x after event %s is not an id", k, check.Last())}
		}
		ev := Event{ID: ID(k), Room: check.room}
		rec := bytes.Clone(v)
		if err := decodeRecord(&ev, rec); err != nil {
			return false, &Break{Room: check.room, ID: ev.ID, Reason: fmt.Sprintf("record does not decode: %v", err)}
		}
		if brk := check.Next(&ev, rec); brk != nil {
			return false, brk
		}
		if rep.First.IsZero() || ev.ID.Compare(rep.First) < 0 {
			rep.First = ev.ID
		}
		if ev.ID.Compare(rep.Last) > 0 {
			rep.Last = ev.ID
		}
		k, v = c.Next()
	}
	return false, nil
}
