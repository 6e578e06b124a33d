package jetstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Compaction on JetStream: Compact publishes the room's new floor (P.floor.R) and the compaction
// record in one atomic batch, then purges the room's subject below the event the snapshot
// covers. A crash between the two leaves the floor moved and the old events still stored:
// readers of the chain skip events at or below the floor, and the next Compact finishes the
// purge. The purge is one request to JetStream, however many events it removes.

var errFloorMoved = errors.New("another compaction of the room moved its floor")

// LatestSnapshot implements eventlog.Compactor.
func (l *Log) LatestSnapshot(ctx context.Context, room string) (eventlog.Event, bool, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return eventlog.Event{}, false, err
	}
	if l.isClosed() {
		return eventlog.Event{}, false, eventlog.ErrClosed
	}
	m, err := l.leader(ctx, getRequest{LastFor: l.subj.snapshot(room)})
	if err != nil || m == nil {
		return eventlog.Event{}, false, err
	}
	if len(m.data) != 16 {
		return eventlog.Event{}, false, fmt.Errorf("%w: snapshot pointer of %q is %d bytes", eventlog.ErrCorrupt, room, len(m.data))
	}
	id := eventlog.ID(m.data)
	evs, err := l.ReadAfter(ctx, room, previous(id), 1)
	if err != nil {
		return eventlog.Event{}, false, err
	}
	if len(evs) == 0 || evs[0].ID != id {
		return eventlog.Event{}, false, fmt.Errorf("%w: the snapshot %s of %q is missing", eventlog.ErrCorrupt, id, room)
	}
	return evs[0], true, nil
}

// Floor implements eventlog.Compactor.
func (l *Log) Floor(ctx context.Context, room string) (eventlog.Head, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return eventlog.Head{}, err
	}
	floor, _, err := l.floor(ctx, room)
	return floor, err
}

// floor reads the room's floor marker and its sequence (zero values when there is none).
func (l *Log) floor(ctx context.Context, room string) (eventlog.Head, uint64, error) {
	m, err := l.leader(ctx, getRequest{LastFor: l.subj.floor(room)})
	if err != nil || m == nil {
		return eventlog.Head{}, 0, err
	}
	if len(m.data) != 16+32+8 {
		return eventlog.Head{}, 0, fmt.Errorf("%w: floor of %q is %d bytes", eventlog.ErrCorrupt, room, len(m.data))
	}
	h := eventlog.Head{ID: eventlog.ID(m.data[:16]), Hash: [32]byte(m.data[16:48]), Count: binary.BigEndian.Uint64(m.data[48:])}
	return h, m.seq, nil
}

func encodeFloor(h eventlog.Head) []byte {
	b := append(h.ID[:], h.Hash[:]...)
	return binary.BigEndian.AppendUint64(b, h.Count)
}

// floorMoved reports whether the room's floor marker is past seq.
func (l *Log) floorMoved(ctx context.Context, room string, seq uint64) (bool, error) {
	_, now, err := l.floor(ctx, room)
	return now != seq, err
}

// Compact implements eventlog.Compactor.
func (l *Log) Compact(ctx context.Context, room, by string) (eventlog.CompactResult, error) {
	if err := eventlog.ValidRoom(room); err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog/jetstream: compact: %w", err)
	}
	if err := eventlog.CheckUser(by); err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog/jetstream: compact: %w", err)
	}
	if l.opts.ReadOnly {
		return eventlog.CompactResult{}, ErrReadOnly
	}
	snap, ok, err := l.LatestSnapshot(ctx, room)
	if err != nil {
		return eventlog.CompactResult{}, err
	}
	if !ok {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog/jetstream: compact %q: %w: the room has no snapshot to compact to", room, eventlog.ErrNoSnapshot)
	}
	covers, err := eventlog.SnapshotCovers(snap)
	if err != nil {
		return eventlog.CompactResult{}, err
	}
	floor, floorSeq, err := l.floor(ctx, room)
	if err != nil {
		return eventlog.CompactResult{}, err
	}
	res := eventlog.CompactResult{Snapshot: snap.ID, SnapshotBy: snap.User, Floor: floor}
	if floor.ID.Compare(covers) >= 0 {
		return res, l.purgeTo(ctx, room, floor) // done already; finish a purge a crash interrupted
	}
	_, page, _, err := l.locateAfter(ctx, room, previous(covers), 1)
	if err != nil {
		return res, err
	}
	if len(page) == 0 || page[0].id() != covers {
		return res, fmt.Errorf("%w: the event %s the snapshot of %q covers is missing", eventlog.ErrCorrupt, covers, room)
	}
	covered, err := page[0].event(room)
	if err != nil {
		return res, err
	}
	next := eventlog.Head{ID: covers, Hash: covered.Hash, Count: page[0].count()}
	removed := int(next.Count - floor.Count)
	body := eventlog.CompactionBody(snap.ID, snap.User, next, removed)
	req, err := eventlog.Normalize(eventlog.AppendRequest{Room: room, User: by, Kind: eventlog.KindCompaction, Body: body, System: true}, len(body)+1)
	if err != nil {
		return res, err
	}
	if l.isClosed() {
		return res, eventlog.ErrClosed
	}
	rec, err := l.enqueue(&appendOp{req: req, p: eventlog.NewPending(), compaction: &compaction{floor: next, floorSeq: floorSeq}}).Wait(ctx)
	if errors.Is(err, errFloorMoved) {
		return l.Compact(ctx, room, by) // another node compacted meanwhile: see how far
	}
	if err != nil {
		return res, err
	}
	res.Floor, res.Removed, res.Record = next, removed, rec.Event
	return res, l.purgeTo(ctx, room, next)
}

// purgeTo removes the room's events up to and including floor's.
func (l *Log) purgeTo(ctx context.Context, room string, floor eventlog.Head) error {
	if floor.ID.IsZero() {
		return nil
	}
	_, page, _, err := l.locateAfter(ctx, room, floor.ID, 1)
	if err != nil {
		return err
	}
	var keep uint64 // the first sequence kept
	if len(page) > 0 {
		keep = page[0].seq
	} else if last, err := l.lastEvent(ctx, room); err != nil || last == nil {
		return err
	} else {
		keep = last.seq + 1
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	defer l.cache.forget(room)
	if err := l.stream.Purge(ctx, jetstream.WithPurgeSubject(l.subj.events(room)), jetstream.WithPurgeSequence(keep)); err != nil {
		return fmt.Errorf("eventlog/jetstream: compact %q: purge: %w", room, err)
	}
	return nil
}
