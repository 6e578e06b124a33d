package boltlog

import (
	"bytes"
	"context"
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// defaultVerifyChunk is how many events Verify checks in one read transaction.
const defaultVerifyChunk = 4096

// Verify implements eventlog.Auditor. For each room it checks, event by event, that keys are ids in strictly
// increasing order, that every record decodes, and that every stored hash equals the hash
// recomputed from the previous one; then that the room's head entry names the last event, its
// hash and the count. With anchors (of room, or of any room when room is ""), it also checks
// that each anchored event is still in its room, at its position, with its hash, so that a room
// cut back to an earlier event fails. The first failure is reported in VerifyReport.Broken.
func (l *Log) Verify(ctx context.Context, room string, anchors ...eventlog.Anchor) (eventlog.VerifyReport, error) {
	return eventlog.VerifyRooms(ctx, room, anchors, l.roomNames, l.verifyRoom)
}

// roomNames lists the rooms, in name order.
func (l *Log) roomNames(ctx context.Context) ([]string, error) {
	var names []string
	err := l.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	return names, err
}

// verifyRoom walks one room in read transactions of verifyChunk events (appends and compactions
// go on between them) through a ChainCheck, for eventlog.VerifyRooms.
func (l *Log) verifyRoom(ctx context.Context, room string, anchors []eventlog.Anchor, rep *eventlog.VerifyReport) (brk *eventlog.Break, found bool, err error) {
	var check *eventlog.ChainCheck // nil until the room's head and floor are read
	for done := false; !done && brk == nil; {
		if err := ctx.Err(); err != nil {
			return nil, true, err
		}
		err := l.view(ctx, func(tx *bolt.Tx) error {
			b := l.roomBucket(tx, room)
			switch {
			case b == nil && check == nil:
				done = true // an unknown room: nothing to verify
				return nil
			case b == nil:
				brk = &eventlog.Break{Room: room, ID: check.Last(), Reason: "room vanished during verification"}
				return nil
			case check == nil:
				if check, brk = startRoomCheck(b, room, anchors); brk != nil {
					return nil
				}
			}
			done, brk = l.verifyEvents(b, check)
			return nil
		})
		if err != nil {
			return nil, true, err
		}
	}
	if check == nil || brk != nil {
		return brk, check != nil, nil
	}
	if brk = check.EndWalk(); brk == nil {
		check.AddTo(rep)
	}
	return brk, true, nil
}

// startRoomCheck reads the room's head and floor: the chain goes on from the floor (the last event
// a compaction removed), and the walk must reach the head as it is now.
func startRoomCheck(b *bolt.Bucket, room string, anchors []eventlog.Anchor) (*eventlog.ChainCheck, *eventlog.Break) {
	hv := b.Get(keyHead)
	if hv == nil {
		return nil, &eventlog.Break{Room: room, Reason: "room has no head entry"}
	}
	head, err := decodeHead(hv)
	if err != nil {
		return nil, &eventlog.Break{Room: room, Reason: fmt.Sprintf("head entry: %v", err)}
	}
	floor, err := roomFloor(b)
	if err != nil {
		return nil, &eventlog.Break{Room: room, Reason: fmt.Sprintf("floor entry: %v", err)}
	}
	check, brk := eventlog.NewChainCheck(room, floor, anchors)
	check.ExpectHead(head)
	return check, brk
}

// verifyEvents checks up to l.verifyChunk events of the room after the last one checked; done
// reports that it reached the room's end.
func (l *Log) verifyEvents(b *bolt.Bucket, check *eventlog.ChainCheck) (done bool, brk *eventlog.Break) {
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
			if brk := check.Refloor(floor); brk != nil {
				return false, brk
			}
		default:
			return false, &eventlog.Break{Room: check.Room(), ID: last, Reason: "event vanished during verification"}
		}
	}
	for range l.verifyChunk {
		if k == nil || len(k) == 17 && k[0] >= keyFloor[0] { // the room's own entries follow its events
			return true, nil
		}
		if len(k) != 16 {
			return false, &eventlog.Break{Room: check.Room(), ID: check.Last(), Reason: fmt.Sprintf("key %x after event %s is not an id", k, check.Last())}
		}
		ev := eventlog.Event{ID: eventlog.ID(k), Room: check.Room()}
		rec := bytes.Clone(v)
		if err := eventlog.DecodeRecord(&ev, rec); err != nil {
			return false, &eventlog.Break{Room: check.Room(), ID: ev.ID, Reason: fmt.Sprintf("record does not decode: %v", err)}
		}
		if brk := check.Next(&ev, rec); brk != nil {
			return false, brk
		}
		k, v = c.Next()
	}
	return false, nil
}
