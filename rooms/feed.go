package rooms

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// MaxEncodings is how many encodings of an event an Entry caches: one per encoding its
// consumer makes (the transport: one per wire codec). The hub never looks inside them.
const MaxEncodings = 4

// Entry is one committed event as the feed fans it out: read from the log once, shared by every
// member, encoded at most once per encoding.
type Entry struct {
	Event eventlog.Event
	enc   [MaxEncodings]atomic.Pointer[[]byte]
}

// Encoded returns the entry's encoding number slot (0 to MaxEncodings-1, numbered by the
// consumer), making it with encode the first time. Two goroutines racing may both encode; one
// result wins and both are equal.
func (e *Entry) Encoded(slot int, encode func(*eventlog.Event) []byte) []byte {
	if p := e.enc[slot].Load(); p != nil {
		return *p
	}
	v := encode(&e.Event)
	e.enc[slot].CompareAndSwap(nil, &v)
	return *e.enc[slot].Load()
}

// Waker is told when a room it subscribed to has new entries. Wake must not block.
type Waker interface{ Wake() }

// feed keeps a room's recent events in a ring and wakes the room's subscribers. It runs while the
// room has subscribers.
//
// Invariant: the ring holds every event of the room with id in (floor, head], in order. A reader
// whose cursor is >= floor can take its next events from the ring; any other reads the log.
type feed struct {
	log  eventlog.Log
	room string
	max  int

	mu    sync.RWMutex
	ring  []*Entry // oldest first; at most max
	floor eventlog.ID
	head  eventlog.ID
	subs  map[Waker]struct{}

	stop chan struct{}
	done chan struct{}
}

func newFeed(log eventlog.Log, room string, ringSize int) *feed {
	return &feed{log: log, room: room, max: ringSize, subs: map[Waker]struct{}{}}
}

// start reads the room's head and begins following it.
func (f *feed) start(logger *slog.Logger) error {
	// Watch first: a commit after the head is read then always signals.
	w := f.log.Watch(f.room)
	h, err := f.log.Head(context.Background(), f.room)
	if err != nil {
		w.Close()
		return err
	}
	f.floor, f.head = h.ID, h.ID
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.run(w, logger)
	return nil
}

func (f *feed) run(w *eventlog.Watch, logger *slog.Logger) {
	defer close(f.done)
	defer w.Close()
	for {
		select {
		case <-f.stop:
			return
		case _, ok := <-w.C():
			if !ok {
				return // the log closed
			}
		}
		if !f.catchUp(logger) {
			return
		}
	}
}

// Backoff of the feed's retries after a failed read.
const (
	feedMinRetry = 100 * time.Millisecond
	feedMaxRetry = 5 * time.Second
)

// catchUp reads and pushes the room's events after the feed's head until there are none. A
// failed read is retried with backoff, not left for the next commit: in a quiet room that may
// never come, and the subscribers would wait for events already committed. It returns false
// when the feed was stopped meanwhile.
func (f *feed) catchUp(logger *slog.Logger) bool {
	retry := feedMinRetry
	for {
		evs, err := f.log.ReadAfter(context.Background(), f.room, f.head, 256)
		if err != nil {
			logger.Error("room feed cannot read the log; retrying", "room", f.room, "err", err, "retry_in", retry)
			select {
			case <-f.stop:
				return false
			case <-time.After(retry):
			}
			retry = min(2*retry, feedMaxRetry)
			continue
		}
		retry = feedMinRetry
		if len(evs) > 0 {
			f.push(evs)
		}
		if len(evs) < 256 {
			return true
		}
	}
}

func (f *feed) push(evs []eventlog.Event) {
	f.mu.Lock()
	for _, ev := range evs {
		if len(f.ring) == f.max {
			// Drop the oldest quarter at once, so that pushing costs O(1) amortised.
			drop := max(f.max/4, 1)
			f.floor = f.ring[drop-1].Event.ID
			n := copy(f.ring, f.ring[drop:])
			clear(f.ring[n:])
			f.ring = f.ring[:n]
		}
		f.ring = append(f.ring, &Entry{Event: ev})
		f.head = ev.ID
	}
	subs := make([]Waker, 0, len(f.subs))
	for s := range f.subs {
		subs = append(subs, s)
	}
	f.mu.Unlock()
	for _, s := range subs {
		s.Wake()
	}
}

// after returns up to max entries with id > cursor from the ring. ok is false when the ring does
// not cover cursor (the reader must read the log).
func (f *feed) after(cursor eventlog.ID, max int) (out []*Entry, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if cursor.Compare(f.floor) < 0 {
		return nil, false
	}
	i := sort.Search(len(f.ring), func(i int) bool { return f.ring[i].Event.ID.Compare(cursor) > 0 })
	end := min(len(f.ring), i+max)
	return append([]*Entry(nil), f.ring[i:end]...), true
}

func (f *feed) halt() {
	close(f.stop)
	<-f.done
}
