package boltlog

import (
	"bytes"
	"context"
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// defaultCompactChunk bounds the events one compaction step removes: one transaction each, so a
// compaction of millions of events neither holds the writer long nor builds a huge commit.
const defaultCompactChunk = 10000

// LatestSnapshot implements eventlog.Compactor.
func (l *Log) LatestSnapshot(ctx context.Context, room string) (eventlog.Event, bool, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return eventlog.Event{}, false, err
	}
	var ev eventlog.Event
	var ok bool
	err := l.view(ctx, func(tx *bolt.Tx) error {
		b := l.roomBucket(tx, room)
		if b == nil {
			return nil
		}
		v := b.Get(keySnapshot)
		if v == nil {
			return nil
		}
		if len(v) != 16 {
			return fmt.Errorf("eventlog: room %q: %w: snapshot entry of %d bytes", room, eventlog.ErrCorrupt, len(v))
		}
		ev = eventlog.Event{ID: eventlog.ID(v), Room: room}
		rec := b.Get(v)
		if rec == nil {
			return fmt.Errorf("eventlog: room %q: %w: the snapshot entry names missing event %s", room, eventlog.ErrCorrupt, ev.ID)
		}
		ok = true
		return eventlog.DecodeRecord(&ev, bytes.Clone(rec))
	})
	return ev, ok, err
}

// Floor implements eventlog.Compactor.
func (l *Log) Floor(ctx context.Context, room string) (eventlog.Head, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return eventlog.Head{}, err
	}
	var h eventlog.Head
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		h, err = roomFloor(l.roomBucket(tx, room))
		return err
	})
	return h, err
}

// roomFloor reads a room bucket's floor (the zero Head when nothing was removed, or b is nil).
func roomFloor(b *bolt.Bucket) (eventlog.Head, error) {
	if b == nil {
		return eventlog.Head{}, nil
	}
	v := b.Get(keyFloor)
	if v == nil {
		return eventlog.Head{}, nil
	}
	return decodeHead(v)
}

// compactStep is one step of a compaction, applied by the writer.
type compactStep struct {
	room, by string
	removed  int // by the earlier steps of this Compact

	// Set by applyCompactStep.
	result eventlog.CompactResult
	done   bool
}

// Compact implements eventlog.Compactor.
func (l *Log) Compact(ctx context.Context, room, by string) (eventlog.CompactResult, error) {
	if err := eventlog.ValidRoom(room); err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact: %w", err)
	}
	if err := eventlog.CheckUser(by); err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact: %w", err)
	}
	step := &compactStep{room: room, by: by}
	for !step.done {
		op := &writeOp{compact: step, compactDone: make(chan error, 1)}
		if err := l.enqueue(op); err != nil {
			return step.result, err
		}
		select {
		case err := <-op.compactDone:
			if err != nil {
				return step.result, fmt.Errorf("eventlog: compact %q: %w", room, err)
			}
		case <-ctx.Done():
			return step.result, ctx.Err() // the step in flight completes or not; the room stays consistent
		}
		step.removed = step.result.Removed
	}
	return step.result, nil
}

// applyCompactStep removes up to l.compactChunk of the events the room's latest snapshot covers
// and moves the floor to the last one removed, in this transaction. The step that reaches the
// covered event also appends the compaction record, so the record is written exactly when the
// compaction completes, whether it took one Compact or several (after a crash).
func (l *Log) applyCompactStep(b *batch, op *writeOp) error {
	s := op.compact
	s.done = true
	rw, err := b.room(s.room, false)
	if err != nil {
		return err
	}
	var snap eventlog.ID
	if rw != nil {
		if v := rw.bucket.Get(keySnapshot); len(v) == 16 {
			snap = eventlog.ID(v)
		}
	}
	if snap.IsZero() {
		op.err = fmt.Errorf("%w: room %q has no snapshot to compact to", eventlog.ErrNoSnapshot, s.room)
		return nil
	}
	snapEv, covers, err := snapshotCovers(rw.bucket.Get(snap[:]))
	if err != nil {
		return fmt.Errorf("room %q snapshot %s: %w", s.room, snap, err)
	}
	floor, err := roomFloor(rw.bucket)
	if err != nil {
		return fmt.Errorf("room %q: %w", s.room, err)
	}
	s.result = eventlog.CompactResult{Snapshot: snap, SnapshotBy: snapEv.User, Floor: floor, Removed: s.removed}
	if floor.ID.Compare(covers) >= 0 {
		return nil // compacted to this snapshot already
	}
	var doomed [][]byte
	c := rw.bucket.Cursor()
	for k, v := c.First(); len(k) == 16 && bytes.Compare(k, covers[:]) <= 0 && len(doomed) < l.compactChunk; k, v = c.Next() {
		doomed = append(doomed, bytes.Clone(k))
		floor = eventlog.Head{ID: eventlog.ID(k), Hash: eventlog.RecordHash(v), Count: floor.Count + 1}
	}
	for _, k := range doomed {
		if err := rw.bucket.Delete(k); err != nil {
			return err
		}
	}
	if err := rw.bucket.Put(keyFloor, encodeHead(floor)); err != nil {
		return err
	}
	s.result.Floor = floor
	s.result.Removed += len(doomed)
	if floor.ID != covers {
		s.done = false // more to remove, in the next step
		return nil
	}
	body := eventlog.CompactionBody(snap, snapEv.User, floor, s.result.Removed)
	req, err := eventlog.Normalize(eventlog.AppendRequest{Room: s.room, User: s.by, Kind: eventlog.KindCompaction, Body: body, System: true}, len(body)+1)
	if err != nil {
		return err
	}
	rec := &writeOp{req: req}
	if err := l.applyAppend(b, rec); err != nil {
		return err
	}
	s.result.Record = rec.result.Event
	return nil
}

// snapshotCovers decodes a snapshot record and the id it covers.
func snapshotCovers(rec []byte) (eventlog.Event, eventlog.ID, error) {
	if rec == nil {
		return eventlog.Event{}, eventlog.ID{}, fmt.Errorf("%w: the snapshot event is missing", eventlog.ErrCorrupt)
	}
	var ev eventlog.Event
	if err := eventlog.DecodeRecord(&ev, bytes.Clone(rec)); err != nil {
		return eventlog.Event{}, eventlog.ID{}, err
	}
	covers, err := eventlog.SnapshotCovers(ev)
	return ev, covers, err
}
