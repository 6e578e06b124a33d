package jetstream

import (
	"slices"
	"sync"

	"github.com/roomlog/roomlog/eventlog"
)

// Catch-up reads go through a small cache: members of a room that fall behind (or resume from an
// old cursor) read the same stretch of the room, and a batched direct get costs the server about
// as much for 128 events as for 1,024. A read keeps what it read from the stream; a read that
// goes on where the room's cached run ends asks for readAhead events at once, hands out what
// was asked and keeps the rest; a read after any id in the run is answered from memory.
//
// Invariant: a room's run holds consecutive events of the room (no event of the room lies
// between two of them, nor between before and the first), as read from the stream, so a read
// after an id in [before, last] is exact from memory.

const (
	readAhead      = 1024 // events a catch-up read asks the stream for
	maxRunEvents   = 8192 // events kept per room
	maxCachedRooms = 64   // rooms kept, the least recently read dropped first
	maxCachedBytes = 64 << 20
)

type run struct {
	before eventlog.ID // the id just before evs[0] in the room (zero: evs[0] is the room's first)
	evs    []cachedEvent
	bytes  int
	used   uint64 // when it was last read, in reads
}

type cachedEvent struct {
	ev  eventlog.Event
	seq uint64
}

type readCache struct {
	mu    sync.Mutex
	rooms map[string]*run
	bytes int
	reads uint64
}

func newReadCache() *readCache { return &readCache{rooms: map[string]*run{}} }

// after returns up to limit events of room after id from memory, and the stream sequence to
// read on from; ok is false when the cache cannot answer exactly.
func (c *readCache) after(room string, id eventlog.ID, limit int) (evs []eventlog.Event, next uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	if r == nil || len(r.evs) == 0 {
		return nil, 0, false
	}
	// The first event after id: exact when id is at or past before (nothing of the room lies
	// between before and the run's first event, nor between two of the run's).
	if id.Compare(r.before) < 0 && !r.before.IsZero() {
		return nil, 0, false
	}
	i, _ := slices.BinarySearchFunc(r.evs, id, func(ce cachedEvent, id eventlog.ID) int {
		if ce.ev.ID.Compare(id) <= 0 {
			return -1
		}
		return 1
	})
	if i == len(r.evs) {
		return nil, 0, false // at or past its end: what follows is not in memory
	}
	c.reads++
	r.used = c.reads
	for _, ce := range r.evs[i:min(len(r.evs), i+limit)] {
		evs = append(evs, ce.ev)
	}
	return evs, r.evs[i+len(evs)-1].seq + 1, true
}

// continues reports whether id ends room's run: a reader going through the room in order, worth
// reading ahead for.
func (c *readCache) continues(room string, id eventlog.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	return r != nil && len(r.evs) > 0 && r.evs[len(r.evs)-1].ev.ID == id
}

// add records page, consecutive events of room read from the stream right after before.
func (c *readCache) add(room string, before eventlog.ID, page []cachedEvent) {
	if len(page) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	switch {
	case r != nil && len(r.evs) > 0 && r.evs[len(r.evs)-1].ev.ID == before:
		// It goes on from the run.
	default:
		if r != nil {
			c.bytes -= r.bytes
		}
		r = &run{before: before}
		c.rooms[room] = r
	}
	for _, ce := range page {
		r.evs = append(r.evs, ce)
		r.bytes += size(&ce.ev)
		c.bytes += size(&ce.ev)
	}
	if n := len(r.evs) - maxRunEvents; n > 0 {
		for _, ce := range r.evs[:n] {
			r.bytes -= size(&ce.ev)
			c.bytes -= size(&ce.ev)
		}
		r.before = r.evs[n-1].ev.ID
		r.evs = append([]cachedEvent(nil), r.evs[n:]...)
	}
	c.reads++
	r.used = c.reads
	for len(c.rooms) > maxCachedRooms || c.bytes > maxCachedBytes && len(c.rooms) > 1 {
		c.dropLeastUsedLocked(room)
	}
}

func (c *readCache) dropLeastUsedLocked(keep string) {
	var victim string
	var oldest uint64
	for name, r := range c.rooms {
		if name != keep && (victim == "" || r.used < oldest) {
			victim, oldest = name, r.used
		}
	}
	if victim == "" {
		return
	}
	c.bytes -= c.rooms[victim].bytes
	delete(c.rooms, victim)
}

// forget drops a room (after a compaction removed some of its events).
func (c *readCache) forget(room string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rooms[room]; r != nil {
		c.bytes -= r.bytes
		delete(c.rooms, room)
	}
}

func size(e *eventlog.Event) int {
	return 128 + len(e.Kind) + len(e.User) + len(e.Session) + len(e.Key) + len(e.Body)
}
