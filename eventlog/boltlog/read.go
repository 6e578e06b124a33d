package boltlog

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// arena copies records out of bbolt's memory map into a few allocations instead of one per event;
// decoded events point into it. It is never written again once handed out. Callers that know the
// total size reserve it first, so that a page of events holds exactly its own memory (a room
// feed keeps events for long; a chunk larger than they need would stay pinned with them).
type arena struct{ buf []byte }

const arenaChunk = 64 << 10

// reserve makes room for n bytes in one allocation.
func (a *arena) reserve(n int) { a.buf = make([]byte, 0, n) }

func (a *arena) copy(v []byte) []byte {
	if cap(a.buf)-len(a.buf) < len(v) {
		if len(v) > arenaChunk/4 {
			return bytes.Clone(v)
		}
		a.buf = make([]byte, 0, arenaChunk)
	}
	n := len(a.buf)
	a.buf = append(a.buf, v...)
	return a.buf[n:len(a.buf):len(a.buf)]
}

// decodeAt copies and decodes the record v of event k in room.
func (a *arena) decode(room string, k, v []byte) (eventlog.Event, error) {
	ev := eventlog.Event{Room: room}
	if len(k) != 16 {
		return ev, fmt.Errorf("eventlog: room %q: %w: key of %d bytes", room, eventlog.ErrCorrupt, len(k))
	}
	copy(ev.ID[:], k)
	if err := eventlog.DecodeRecord(&ev, a.copy(v)); err != nil {
		return ev, fmt.Errorf("eventlog: room %q event %s: %w: %v", room, ev.ID, eventlog.ErrCorrupt, err)
	}
	return ev, nil
}

// viewRoom checks a read of up to limit events of room, and runs fn on the room's bucket in a
// read transaction, when the room exists.
func (l *Log) viewRoom(ctx context.Context, room string, limit int, fn func(*bolt.Bucket) error) error {
	if err := eventlog.CheckRead(room, limit); err != nil {
		return err
	}
	if err := errCtx(ctx); err != nil {
		return err
	}
	return l.view(ctx, func(tx *bolt.Tx) error {
		if b := l.roomBucket(tx, room); b != nil {
			return fn(b)
		}
		return nil
	})
}

// seekAfter places c on the first entry after the id after.
func seekAfter(c *bolt.Cursor, after eventlog.ID) ([]byte, []byte) {
	k, v := c.Seek(after[:])
	if k != nil && bytes.Equal(k, after[:]) {
		k, v = c.Next()
	}
	return k, v
}

// ReadAfter implements eventlog.Log.
func (l *Log) ReadAfter(ctx context.Context, room string, after eventlog.ID, limit int) ([]eventlog.Event, error) {
	var out []eventlog.Event
	err := l.viewRoom(ctx, room, limit, func(b *bolt.Bucket) error {
		c := b.Cursor()
		first := func() ([]byte, []byte) { return seekAfter(c, after) }
		// Count first, then copy into one allocation of exactly the size needed.
		n, size := 0, 0
		for k, v := first(); len(k) == 16 && n < limit; k, v = c.Next() {
			n, size = n+1, size+len(v)
		}
		if n == 0 {
			return nil
		}
		var a arena
		a.reserve(size)
		out = make([]eventlog.Event, 0, n)
		for k, v := first(); len(k) == 16 && len(out) < n; k, v = c.Next() {
			ev, err := a.decode(room, k, v)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// ReadAfterFunc implements eventlog.Log. The events point into bbolt's memory map, valid during the read
// transaction the calls run in; fn must not block for long (it holds that transaction).
func (l *Log) ReadAfterFunc(ctx context.Context, room string, after eventlog.ID, limit int, fn func(*eventlog.Event) error) (int, error) {
	n := 0
	err := l.viewRoom(ctx, room, limit, func(b *bolt.Bucket) error {
		c := b.Cursor()
		k, v := seekAfter(c, after)
		var ev eventlog.Event
		for ; len(k) == 16 && n < limit; k, v = c.Next() {
			ev = eventlog.Event{Room: room}
			copy(ev.ID[:], k)
			if err := eventlog.DecodeRecord(&ev, v); err != nil {
				return fmt.Errorf("eventlog: room %q event %s: %w: %v", room, ev.ID, eventlog.ErrCorrupt, err)
			}
			if err := fn(&ev); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// ReadBefore implements eventlog.Log.
func (l *Log) ReadBefore(ctx context.Context, room string, before eventlog.ID, limit int) ([]eventlog.Event, error) {
	var out []eventlog.Event
	err := l.viewRoom(ctx, room, limit, func(b *bolt.Bucket) error {
		var a arena
		c := b.Cursor()
		var k, v []byte
		if before.IsZero() {
			k, v = c.Last()
		} else if k, _ = c.Seek(before[:]); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for k != nil && len(k) != 16 { // the head entry
			k, v = c.Prev()
		}
		for ; len(k) == 16 && len(out) < limit; k, v = c.Prev() {
			ev, err := a.decode(room, k, v)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// Contains implements eventlog.Log.
func (l *Log) Contains(ctx context.Context, room string, id eventlog.ID) (bool, error) {
	var found bool
	err := l.viewRoom(ctx, room, 1, func(b *bolt.Bucket) error {
		found = b.Get(id[:]) != nil
		return nil
	})
	return found, err
}

// Head implements eventlog.Log.
func (l *Log) Head(ctx context.Context, room string) (eventlog.Head, error) {
	var h eventlog.Head
	err := l.viewRoom(ctx, room, 1, func(b *bolt.Bucket) error {
		v := b.Get(keyHead)
		if v == nil {
			return nil
		}
		var err error
		h, err = decodeHead(v)
		if err != nil {
			return fmt.Errorf("eventlog: room %q: %w", room, err)
		}
		return nil
	})
	return h, err
}

// Cursor implements eventlog.Cursors.
func (l *Log) Cursor(ctx context.Context, user, session, room string) (eventlog.ID, error) {
	var id eventlog.ID
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketAcks).Get(ackKey(user, session, room)); len(v) == 16 {
			copy(id[:], v)
		}
		return nil
	})
	return id, err
}

// Rooms implements eventlog.Auditor.
func (l *Log) Rooms(ctx context.Context, fn func(eventlog.RoomInfo) error) error {
	// Collect in bounded slices so that no read transaction is held while fn runs.
	var after []byte
	for {
		var infos []eventlog.RoomInfo
		err := l.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRooms).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(infos) < 256; k, v = c.Next() {
				if v != nil {
					continue // not a bucket
				}
				name := string(k)
				b := tx.Bucket(bucketRooms).Bucket(k)
				hv := b.Get(keyHead)
				if hv == nil {
					continue // created by a transaction that added no event
				}
				h, err := decodeHead(hv)
				if err != nil {
					return fmt.Errorf("eventlog: room %q: %w", name, err)
				}
				info := eventlog.RoomInfo{Name: name, Count: h.Count, Last: h.ID, Hash: h.Hash}
				rc := b.Cursor()
				if fk, _ := rc.First(); len(fk) == 16 {
					copy(info.First[:], fk)
				}
				infos = append(infos, info)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, info := range infos {
			if err := errCtx(ctx); err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		if len(infos) < 256 {
			return nil
		}
		after = []byte(infos[len(infos)-1].Name)
	}
}

// Sessions implements eventlog.SessionIndex.
func (l *Log) Sessions(ctx context.Context, fn func(eventlog.Session) error) error {
	var all []eventlog.Session
	err := l.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			parts := strings.SplitN(string(k), "\x00", 3)
			if len(parts) != 3 || len(v) != 16 {
				return fmt.Errorf("eventlog: %w: session entry %q", eventlog.ErrCorrupt, k)
			}
			s := eventlog.Session{Room: parts[0], User: parts[1], Session: parts[2]}
			copy(s.Joined[:], v)
			all = append(all, s)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, s := range all {
		if err := fn(s); err != nil {
			return err
		}
	}
	return nil
}
