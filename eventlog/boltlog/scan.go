package boltlog

import (
	"context"
	"fmt"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// scanChunk is how many events Scan reads in one read transaction before handing them to the
// callback outside it: no transaction is ever held while a slow consumer writes them out.
const scanChunk = 512

// Scan implements eventlog.Auditor. It merges the matching rooms by id (eventlog.RoomMerge, with
// each room's name as its cursor), so memory grows with the number of rooms, not events.
func (l *Log) Scan(ctx context.Context, f eventlog.ScanFilter, fn func(eventlog.Event) error) error {
	if err := f.Check(); err != nil {
		return err
	}
	var h eventlog.RoomMerge[string]
	err := l.view(ctx, func(tx *bolt.Tx) error {
		// The snapshot: ids up to the last one committed now. Ids commit in order, so every
		// smaller id is committed too.
		var last eventlog.ID
		copy(last[:], tx.Bucket(bucketMeta).Get(keyLast))
		if bound := last.Next(); f.Until.IsZero() || bound.Compare(f.Until) < 0 {
			f.Until = bound
		}
		start := f.After
		if f.Since.Compare(f.After) > 0 {
			start = f.Since.Prev()
		}
		rooms := tx.Bucket(bucketRooms)
		return rooms.ForEachBucket(func(name []byte) error {
			room := string(name)
			if !f.MatchesRoom(room) {
				return nil
			}
			if next, ok := firstAfter(rooms.Bucket(name), start); ok && f.InRange(next) {
				h.Add(next, room)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	sent := 0
	batch := make([]eventlog.Event, 0, scanChunk)
	for h.Len() > 0 {
		if err := errCtx(ctx); err != nil {
			return err
		}
		batch = batch[:0]
		err := l.view(ctx, func(tx *bolt.Tx) (err error) {
			batch, err = scanRun(tx, &h, &f, batch)
			return err
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

// scanRun appends to batch the matching events of the merge's next rooms, up to scanChunk of
// them (or as many as 50 ms of reading gives), in id order, and moves the merge past them.
func scanRun(tx *bolt.Tx, h *eventlog.RoomMerge[string], f *eventlog.ScanFilter, batch []eventlog.Event) ([]eventlog.Event, error) {
	rooms := tx.Bucket(bucketRooms)
	var a arena
	deadline := time.Now().Add(50 * time.Millisecond)
	for h.Len() > 0 && len(batch) < scanChunk && time.Now().Before(deadline) {
		next, room := h.Top()
		b := rooms.Bucket([]byte(room))
		if b == nil {
			return batch, fmt.Errorf("eventlog: scan: %w: room %q vanished", eventlog.ErrCorrupt, room)
		}
		// Read this room's run of events up to the next room's next id with one cursor.
		limit := h.Runner()
		c := b.Cursor()
		k, v := c.Seek(next[:])
		for examined := 0; ; examined++ {
			var id eventlog.ID
			if len(k) != 16 || copy(id[:], k) != 16 || !f.InRange(id) {
				h.Done() // this room is done
				break
			}
			if (!limit.IsZero() && id.Compare(limit) > 0) || len(batch) == scanChunk || examined == 8*scanChunk {
				h.Advance(id) // another room is next, or this chunk is full
				break
			}
			ev, err := a.decode(room, k, v)
			if err != nil {
				return batch, err
			}
			if f.Matches(&ev) {
				batch = append(batch, ev)
			}
			k, v = c.Next()
		}
	}
	return batch, nil
}

// firstAfter returns the first event id of room bucket b greater than after.
func firstAfter(b *bolt.Bucket, after eventlog.ID) (eventlog.ID, bool) {
	c := b.Cursor()
	k, _ := seekAfter(c, after)
	for ; k != nil; k, _ = c.Next() {
		if len(k) == 16 {
			var id eventlog.ID
			copy(id[:], k)
			return id, true
		}
	}
	return eventlog.ID{}, false
}
