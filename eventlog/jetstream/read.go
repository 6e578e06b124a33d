package jetstream

import (
	"context"
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
)

// readPage is how many events one direct get asks for while paging backwards or scanning.
const readPage = 256

// slack is how many events a read asks for beyond its limit when it starts from an id's hint:
// events appended in one batch share a hint, so a few before the wanted one may come back.
const slack = 8

// ReadAfter implements eventlog.Log.
func (l *Log) ReadAfter(ctx context.Context, room string, after eventlog.ID, limit int) ([]eventlog.Event, error) {
	var out []eventlog.Event
	_, err := l.ReadAfterFunc(ctx, room, after, limit, func(e *eventlog.Event) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// ReadAfterFunc implements eventlog.Log.
func (l *Log) ReadAfterFunc(ctx context.Context, room string, after eventlog.ID, limit int, fn func(*eventlog.Event) error) (int, error) {
	if err := eventlog.CheckRead(room, limit); err != nil {
		return 0, err
	}
	if l.isClosed() {
		return 0, eventlog.ErrClosed
	}
	n := 0
	var next uint64
	var page []stored
	exhausted := false
	if evs, seq, ok := l.cache.after(room, after, limit); ok {
		for i := range evs {
			if err := fn(&evs[i]); err != nil {
				return n, err
			}
			n++
		}
		if n == limit {
			return n, nil
		}
		after, next = evs[n-1].ID, seq // and on from the stream
	}
	ask := min(limit, readPage) + slack
	if l.cache.continues(room, after) {
		ask = readAhead // a reader going through the room in order
	}
	if next == 0 {
		var err error
		if next, page, exhausted, err = l.locateAfter(ctx, room, after, ask); err != nil {
			return 0, err
		}
	}
	// Read a page ahead of what was asked: the whole page goes into the cache.
	var read []cachedEvent
	defer func() { l.cache.add(room, after, read) }()
	for n < limit {
		var err error
		if len(page) == 0 && exhausted {
			// The stream had no more; unless this node knows of more than a replica had.
			if page, err = l.behind(ctx, room, next); err != nil || len(page) == 0 {
				return n, err
			}
		} else if len(page) == 0 {
			if page, err = l.direct(ctx, getRequest{Seq: next, NextFor: l.subj.events(room), Batch: ask}); err != nil {
				return n, fmt.Errorf("eventlog/jetstream: read %q: %w", room, err)
			}
			exhausted = len(page) < ask
		}
		for _, m := range page {
			next = m.seq + 1
			ev, err := m.event(room)
			if err != nil {
				return n, err
			}
			if ev.ID.Compare(after) <= 0 {
				continue
			}
			read = append(read, cachedEvent{ev: ev, seq: m.seq})
			if n < limit {
				if err := fn(&ev); err != nil {
					return n, err
				}
				n++
			}
		}
		page = nil
	}
	return n, nil
}

// behind returns the room's message at or after seq from the stream leader when this node knows
// the room has one there that the replica it read did not have yet; nothing otherwise.
func (l *Log) behind(ctx context.Context, room string, seq uint64) ([]stored, error) {
	if l.watch.known(room) < seq {
		return nil, nil
	}
	m, err := l.leader(ctx, getRequest{Seq: seq, NextFor: l.subj.events(room)})
	if err != nil || m == nil {
		return nil, err
	}
	return []stored{*m}, nil
}

// locateAfter finds where the room's events after id start: it returns the sequence from which
// every event of the room has an id > after (and below which none has), the first messages of
// the room from there on when it read them already, and whether those were all the stream had
// (the last direct get came back short of batch).
func (l *Log) locateAfter(ctx context.Context, room string, after eventlog.ID, batch int) (next uint64, page []stored, exhausted bool, err error) {
	if after.IsZero() {
		return 1, nil, false, nil
	}
	subj := l.subj.events(room)
	from := hintSeq(after) + 1
	for {
		page, err := l.direct(ctx, getRequest{Seq: from, NextFor: subj, Batch: batch})
		if err != nil {
			return 0, nil, false, fmt.Errorf("eventlog/jetstream: read %q: %w", room, err)
		}
		short := len(page) < batch
		i := 0
		for i < len(page) && page[i].id().Compare(after) <= 0 {
			i++
		}
		switch {
		case i > 0 && i < len(page):
			return page[i].seq, page[i:], short, nil // page[i-1] is at or before after, page[i] after it
		case i > 0 && !short:
			from = page[len(page)-1].seq + 1 // all at or before after, and there is more
			continue
		case i > 0:
			return page[len(page)-1].seq + 1, nil, true, nil // nothing after it yet
		}
		// Nothing read at or before after: check the event before the hint.
		prev, err := l.lastUpTo(ctx, room, from-1)
		if err != nil {
			return 0, nil, false, err
		}
		switch {
		case (prev == nil || prev.id().Compare(after) <= 0) && len(page) > 0:
			return page[0].seq, page, short, nil
		case prev == nil:
			return 1, nil, false, nil // nothing before the hint: read from the start
		case prev.id().Compare(after) <= 0:
			return prev.seq + 1, nil, true, nil
		}
		// The hint was wrong (an id made elsewhere): search the stream.
		seq, err := l.search(ctx, room, prev.seq, func(m *stored) bool { return m.id().Compare(after) > 0 })
		return seq, nil, false, err
	}
}

// lastUpTo is the room's last event at or below seq, or nil.
func (l *Log) lastUpTo(ctx context.Context, room string, seq uint64) (*stored, error) {
	if seq == 0 {
		return nil, nil
	}
	page, err := l.direct(ctx, getRequest{MultiLast: []string{l.subj.events(room)}, UpToSeq: seq, Batch: 1})
	if err != nil || len(page) == 0 {
		return nil, err
	}
	return &page[0], nil
}

// search returns the smallest sequence s <= hi at which the room's last event up to s satisfies
// ok, given that the one at hi does and that ok stays true for every later event (a binary search
// over the stream: about log2(hi) direct gets).
func (l *Log) search(ctx context.Context, room string, hi uint64, ok func(*stored) bool) (uint64, error) {
	lo := uint64(1)
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := l.lastUpTo(ctx, room, mid)
		if err != nil {
			return 0, err
		}
		if m != nil && ok(m) {
			hi = m.seq // the event at or below mid: it satisfies ok, and s is at most its sequence
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// ReadBefore implements eventlog.Log.
func (l *Log) ReadBefore(ctx context.Context, room string, before eventlog.ID, limit int) ([]eventlog.Event, error) {
	if err := eventlog.CheckRead(room, limit); err != nil {
		return nil, err
	}
	if l.isClosed() {
		return nil, eventlog.ErrClosed
	}
	var last *stored
	var err error
	if before.IsZero() {
		last, err = l.lastEvent(ctx, room)
	} else {
		var end uint64
		if end, _, _, err = l.locateAfter(ctx, room, previous(before), 1); err == nil {
			last, err = l.lastUpTo(ctx, room, end-1)
		}
	}
	if err != nil || last == nil {
		return nil, err
	}
	want := last.count() - uint64(min(int(last.count())-1, limit-1)) // position of the page's first event
	start, err := l.search(ctx, room, last.seq, func(m *stored) bool { return m.count() >= want })
	if err != nil {
		return nil, err
	}
	var out []eventlog.Event
	for seq := start; len(out) < limit && seq <= last.seq; {
		page, err := l.direct(ctx, getRequest{Seq: seq, NextFor: l.subj.events(room), Batch: min(limit-len(out), readPage)})
		if err != nil || len(page) == 0 {
			return out, err
		}
		for _, m := range page {
			if m.seq > last.seq || len(out) == limit {
				break
			}
			ev, err := m.event(room)
			if err != nil {
				return out, err
			}
			out = append(out, ev)
			seq = m.seq + 1
		}
	}
	return out, nil
}

// previous is the id just below id (id must not be zero).
func previous(id eventlog.ID) eventlog.ID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]--
		if id[i] != 0xff {
			break
		}
	}
	return id
}

// Contains implements eventlog.Log.
func (l *Log) Contains(ctx context.Context, room string, id eventlog.ID) (bool, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return false, err
	}
	if id.IsZero() {
		return false, nil
	}
	got, err := l.ReadAfter(ctx, room, previous(id), 1)
	return len(got) == 1 && got[0].ID == id, err
}

// lastEvent is the room's last event, or nil for an empty room.
func (l *Log) lastEvent(ctx context.Context, room string) (*stored, error) {
	page, err := l.direct(ctx, getRequest{LastFor: l.subj.events(room)})
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: head of %q: %w", room, err)
	}
	known := l.watch.known(room)
	switch {
	case len(page) > 0 && page[0].seq >= known:
		return &page[0], nil
	case len(page) == 0 && known == 0:
		return nil, nil
	}
	return l.leader(ctx, getRequest{LastFor: l.subj.events(room)}) // the replica is behind

}

// Head implements eventlog.Log.
func (l *Log) Head(ctx context.Context, room string) (eventlog.Head, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return eventlog.Head{}, err
	}
	if l.isClosed() {
		return eventlog.Head{}, eventlog.ErrClosed
	}
	if h, ok := l.watch.head(room); ok {
		return h, nil // a watched room: its last event as announced, no request
	}
	m, err := l.lastEvent(ctx, room)
	if err != nil || m == nil {
		return eventlog.Head{}, err
	}
	ev, err := m.event(room)
	return eventlog.Head{ID: ev.ID, Hash: ev.Hash, Count: m.count()}, err
}
