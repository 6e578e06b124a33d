package jetstream

import (
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// roomNames lists the rooms with events, in name order.
func (l *Log) roomNames(ctx context.Context) ([]string, error) {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	info, err := l.stream.Info(ctx, jetstream.WithSubjectFilter(l.subj.allEvents()))
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: rooms: %w", err)
	}
	names := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		room, err := l.subj.roomOf(subj)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", eventlog.ErrCorrupt, err)
		}
		names = append(names, room)
	}
	slices.Sort(names)
	return names, nil
}

// Rooms implements eventlog.Auditor.
func (l *Log) Rooms(ctx context.Context, fn func(eventlog.RoomInfo) error) error {
	if l.isClosed() {
		return eventlog.ErrClosed
	}
	names, err := l.roomNames(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		first, err := l.direct(ctx, getRequest{Seq: 1, NextFor: l.subj.events(name)})
		if err != nil {
			return err
		}
		last, err := l.lastEvent(ctx, name)
		if err != nil {
			return err
		}
		if len(first) == 0 || last == nil {
			continue // emptied meanwhile
		}
		ev, err := last.event(name)
		if err != nil {
			return err
		}
		if err := fn(eventlog.RoomInfo{Name: name, Count: last.count(), First: first[0].id(), Last: ev.ID, Hash: ev.Hash}); err != nil {
			return err
		}
	}
	return nil
}

// scanRoom is one room's place in a Scan's merge.
type scanRoom struct {
	room string
	next uint64           // the sequence to read from
	buf  []eventlog.Event // read, not yet merged
	done bool             // nothing more up to the scan's end
}

// Scan implements eventlog.Auditor: the rooms' events, each room in its order, merged by id.
// It reads the stream up to its last sequence when the scan started.
func (l *Log) Scan(ctx context.Context, f eventlog.ScanFilter, fn func(eventlog.Event) error) error {
	if err := f.Check(); err != nil {
		return err
	}
	if l.isClosed() {
		return eventlog.ErrClosed
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: scan: %w", err)
	}
	end := info.State.LastSeq
	names, err := l.roomNames(ctx)
	if err != nil {
		return err
	}
	after := f.After
	if !f.Since.IsZero() && previous(f.Since).Compare(after) > 0 {
		after = previous(f.Since)
	}
	var h eventlog.RoomMerge[*scanRoom]
	for _, name := range names {
		if !f.MatchesRoom(name) {
			continue
		}
		next, _, _, err := l.locateAfter(ctx, name, after, 1)
		if err != nil {
			return err
		}
		r := &scanRoom{room: name, next: next}
		if err := l.fill(ctx, r, end); err != nil {
			return err
		}
		if len(r.buf) > 0 {
			h.Add(r.buf[0].ID, r)
		}
	}
	n := 0
	for h.Len() > 0 && (f.Limit == 0 || n < f.Limit) {
		_, r := h.Top()
		ev := r.buf[0]
		if !f.Until.IsZero() && ev.ID.Compare(f.Until) >= 0 {
			return nil // every event left is at or after Until
		}
		r.buf = r.buf[1:]
		if f.Matches(&ev) {
			if err := fn(ev); err != nil {
				return err
			}
			n++
		}
		if len(r.buf) == 0 {
			if err := l.fill(ctx, r, end); err != nil {
				return err
			}
		}
		if len(r.buf) == 0 {
			h.Done()
		} else {
			h.Advance(r.buf[0].ID)
		}
	}
	return nil
}

// fill reads r's next page, up to the stream sequence end.
func (l *Log) fill(ctx context.Context, r *scanRoom, end uint64) error {
	if r.done || r.next > end {
		return nil
	}
	page, err := l.direct(ctx, getRequest{Seq: r.next, NextFor: l.subj.events(r.room), Batch: readPage})
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: scan %q: %w", r.room, err)
	}
	r.done = len(page) < readPage
	for _, m := range page {
		if m.seq > end {
			r.done = true
			break
		}
		ev, err := m.event(r.room)
		if err != nil {
			return err
		}
		r.buf = append(r.buf, ev)
		r.next = m.seq + 1
	}
	return nil
}

// Verify implements eventlog.Auditor: each room's chain from its floor to its head as read when
// the room's check began.
func (l *Log) Verify(ctx context.Context, room string, anchors ...eventlog.Anchor) (eventlog.VerifyReport, error) {
	if l.isClosed() {
		return eventlog.VerifyReport{}, eventlog.ErrClosed
	}
	return eventlog.VerifyRooms(ctx, room, anchors, l.roomNames, l.verifyRoom)
}

// verifyRoom checks one room for eventlog.VerifyRooms: its chain from its floor to its head as
// read when the check began.
func (l *Log) verifyRoom(ctx context.Context, room string, anchors []eventlog.Anchor, rep *eventlog.VerifyReport) (*eventlog.Break, bool, error) {
	last, err := l.lastEvent(ctx, room)
	if err != nil || last == nil {
		return nil, false, err
	}
	headEv, err := last.event(room)
	if err != nil {
		return &eventlog.Break{Room: room, Reason: err.Error()}, true, nil
	}
	head := eventlog.Head{ID: headEv.ID, Hash: headEv.Hash, Count: last.count()}
	floor, err := l.Floor(ctx, room)
	if err != nil {
		return nil, true, err
	}
	check, brk := eventlog.NewChainCheck(room, floor, anchors)
	for seq := uint64(1); brk == nil && seq <= last.seq; {
		page, err := l.direct(ctx, getRequest{Seq: seq, NextFor: l.subj.events(room), Batch: readPage})
		if err != nil {
			return nil, true, err
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			if m.seq > last.seq || brk != nil {
				break
			}
			seq = m.seq + 1
			if m.count() <= floor.Count && m.count() != 0 {
				continue // removed by a compaction whose purge has not run yet
			}
			ev, err := m.event(room)
			if err != nil {
				brk = &eventlog.Break{Room: room, ID: m.id(), Reason: err.Error()}
				break
			}
			brk = check.Next(&ev, m.data)
		}
	}
	if brk == nil {
		brk = check.End(head)
	}
	if brk == nil {
		check.AddTo(rep)
	}
	return brk, true, nil
}
