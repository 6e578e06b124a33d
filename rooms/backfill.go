package rooms

import (
	"context"
	"sync"

	"github.com/roomlog/roomlog/eventlog"
)

// backfill keeps the pages a room's lagging subscribers read from the log, so that many of them
// catching up over the same stretch (a crowd reconnecting after a restart) read, decode and encode
// each event once between them, not once each.
//
// Invariant: a page holds exactly the room's events with id in (after, last id], in order: it was
// read from the log in one transaction, and a room's later events always get greater ids, so the
// stretch never changes. A cursor equal to a page's after, or to one of its ids, continues in it.
type backfill struct {
	log  eventlog.Log
	room string
	max  int // entries kept, across pages

	mu       sync.Mutex
	pages    []*page // oldest first
	kept     int
	index    map[eventlog.ID]pos // page starts (after) and entry ids
	inflight map[eventlog.ID]*read
}

type page struct {
	after   eventlog.ID
	entries []*Entry
}

type pos struct {
	p *page
	i int // the cursor is before entries[i]
}

// read is a log read in progress that others with the same cursor wait for.
type read struct {
	done    chan struct{}
	entries []*Entry
	err     error
}

const pageSize = 256

func newBackfill(log eventlog.Log, room string, max int) *backfill {
	return &backfill{log: log, room: room, max: max, index: map[eventlog.ID]pos{}, inflight: map[eventlog.ID]*read{}}
}

// after returns up to max events after cursor, from a kept page or from the log. atEnd is true
// only when the answer is a read of the log that found nothing more than it returned: a kept page
// may end before the log does.
func (b *backfill) after(ctx context.Context, cursor eventlog.ID, max int) (entries []*Entry, atEnd bool, err error) {
	b.mu.Lock()
	if at, ok := b.index[cursor]; ok {
		end := min(len(at.p.entries), at.i+max)
		out := append([]*Entry(nil), at.p.entries[at.i:end]...)
		b.mu.Unlock()
		return out, false, nil
	}
	if r, ok := b.inflight[cursor]; ok {
		b.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		n := min(len(r.entries), max)
		return r.entries[:n], n == len(r.entries) && len(r.entries) < pageSize, r.err
	}
	r := &read{done: make(chan struct{})}
	b.inflight[cursor] = r
	b.mu.Unlock()

	evs, err := b.log.ReadAfter(ctx, b.room, cursor, pageSize)
	if err == nil {
		r.entries = make([]*Entry, len(evs))
		for i := range evs {
			r.entries[i] = &Entry{Event: evs[i]}
		}
	}
	r.err = err
	b.mu.Lock()
	delete(b.inflight, cursor)
	if err == nil && len(r.entries) > 0 {
		b.keep(&page{after: cursor, entries: r.entries})
	}
	b.mu.Unlock()
	close(r.done)
	n := min(len(r.entries), max)
	return r.entries[:n], n == len(r.entries) && len(r.entries) < pageSize, err
}

// keep adds a page and drops the oldest beyond the budget. Called with b.mu held.
func (b *backfill) keep(p *page) {
	b.pages = append(b.pages, p)
	b.kept += len(p.entries)
	b.index[p.after] = pos{p, 0}
	for i, e := range p.entries {
		if i+1 < len(p.entries) {
			b.index[e.Event.ID] = pos{p, i + 1}
		}
	}
	for b.kept > b.max && len(b.pages) > 1 {
		old := b.pages[0]
		b.pages[0] = nil
		b.pages = b.pages[1:]
		b.kept -= len(old.entries)
		if at, ok := b.index[old.after]; ok && at.p == old {
			delete(b.index, old.after)
		}
		for _, e := range old.entries {
			if at, ok := b.index[e.Event.ID]; ok && at.p == old {
				delete(b.index, e.Event.ID)
			}
		}
	}
}
