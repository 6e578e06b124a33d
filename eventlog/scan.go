package eventlog

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// scanChunk is how many events Scan reads in one read transaction before handing them to the
// callback outside it: no transaction is ever held while a slow consumer writes them out.
const scanChunk = 512

// roomCursor is one room's position in the merge: next is the id of its next unread event.
type roomCursor struct {
	room string
	next ID
}

type cursorHeap []*roomCursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return h[i].next.Compare(h[j].next) < 0 }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*roomCursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Scan implements Auditor. It merges the matching rooms by id with a heap holding one cursor per
// room, so memory grows with the number of rooms, not events.
func (l *BoltLog) Scan(ctx context.Context, f ScanFilter, fn func(Event) error) error {
	if err := f.check(); err != nil {
		return err
	}
	var h cursorHeap
	err := l.view(ctx, func(tx *bolt.Tx) error {
		// The snapshot: ids up to the last one committed now. Ids commit in order, so every
		// smaller id is committed too.
		var last ID
		copy(last[:], tx.Bucket(bucketMeta).Get(keyLast))
		if bound := nextID(last); f.Until.IsZero() || bound.Compare(f.Until) < 0 {
			f.Until = bound
		}
		start := f.After
		if f.Since.Compare(f.After) > 0 {
			start = prevID(f.Since)
		}
		rooms := tx.Bucket(bucketRooms)
		return rooms.ForEachBucket(func(name []byte) error {
			room := string(name)
			if !f.MatchesRoom(room) {
				return nil
			}
			if next, ok := firstAfter(rooms.Bucket(name), start); ok && f.inRange(next) {
				h = append(h, &roomCursor{room: room, next: next})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	heap.Init(&h)
	sent := 0
	batch := make([]Event, 0, scanChunk)
	for h.Len() > 0 {
		if err := errCtx(ctx); err != nil {
			return err
		}
		batch = batch[:0]
		err := l.view(ctx, func(tx *bolt.Tx) error {
			rooms := tx.Bucket(bucketRooms)
			var a arena
			deadline := time.Now().Add(50 * time.Millisecond)
			for h.Len() > 0 && len(batch) < scanChunk && time.Now().Before(deadline) {
				rc := h[0]
				b := rooms.Bucket([]byte(rc.room))
				if b == nil {
					return fmt.Errorf("eventlog: scan: %w: room %q vanished", ErrCorrupt, rc.room)
				}
				// Read this room's run of events up to the next room's next id with one cursor.
				limit := ID{}
				if h.Len() > 1 {
					limit = minNext(h)
				}
				c := b.Cursor()
				k, v := c.Seek(rc.next[:])
				for examined := 0; ; examined++ {
					var id ID
					if len(k) != 16 || copy(id[:], k) != 16 || !f.inRange(id) {
						heap.Pop(&h) // this room is done
						break
					}
					if (!limit.IsZero() && id.Compare(limit) > 0) || len(batch) == scanChunk || examined == 8*scanChunk {
						rc.next = id // another room is next, or this chunk is full
						heap.Fix(&h, 0)
						break
					}
					ev, err := a.decode(rc.room, k, v)
					if err != nil {
						return err
					}
					if f.Matches(&ev) {
						batch = append(batch, ev)
					}
					k, v = c.Next()
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, ev := range batch {
			if f.Limit > 0 && sent >= f.Limit {
				return nil
			}
			if err := fn(ev); err != nil {
				return err
			}
			sent++
		}
	}
	return nil
}

// minNext is the smallest next id among the heap's entries other than the top.
func minNext(h cursorHeap) ID {
	m := h[1].next
	if len(h) > 2 && h[2].next.Compare(m) < 0 {
		m = h[2].next
	}
	return m
}

// firstAfter returns the first event id of room bucket b greater than after.
func firstAfter(b *bolt.Bucket, after ID) (ID, bool) {
	c := b.Cursor()
	k, _ := c.Seek(after[:])
	if k != nil && bytes.Equal(k, after[:]) {
		k, _ = c.Next()
	}
	for ; k != nil; k, _ = c.Next() {
		if len(k) == 16 {
			var id ID
			copy(id[:], k)
			return id, true
		}
	}
	return ID{}, false
}
