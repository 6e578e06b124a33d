package jetstream

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/roomlog/roomlog/eventlog"
)

// watchers signal the Watches of a node when events are stored, by whichever node: the stream
// republishes the headers of every stored event (on P.live.R), and each node subscribes to them.
// A republished notice is a core NATS message, which a slow or reconnecting subscriber can lose;
// a backstop compares the stream's last sequence with the last one announced, once per
// Options.Backstop, and wakes every watch when one went missing. A woken reader reads after its
// cursor, so a notice more or less never costs an event.
//
// Lock order: the registry's lock (reg) before mu: reg's OnFirst and OnLast take mu; nothing
// holding mu calls into reg.
type watchers struct {
	l    *Log
	sub  *nats.Subscription
	done chan struct{}
	wg   sync.WaitGroup
	reg  eventlog.Watchers // the Watches, by room ("" watches every room)

	mu      sync.Mutex
	heads   map[string]*announced // watched rooms: the last event announced
	highest uint64                // the highest sequence announced or appended
}

// announced is the last event of a watched room that this node saw stored. Head answers from it
// while it is current (a notice may be lost: the backstop then marks every one stale).
type announced struct {
	head    eventlog.Head
	seq     uint64
	current bool
}

func startWatchers(l *Log, last uint64) (*watchers, error) {
	ws := &watchers{l: l, done: make(chan struct{}), heads: map[string]*announced{}, highest: last}
	ws.reg.OnFirst, ws.reg.OnLast = ws.follow, ws.unfollow
	sub, err := l.nc.Subscribe(l.subj.live(), ws.announced)
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, 64<<20)
	if err := l.nc.Flush(); err != nil { // the server has the subscription when Open returns
		sub.Unsubscribe()
		return nil, err
	}
	ws.sub = sub
	ws.wg.Add(1)
	go ws.backstop()
	return ws, nil
}

// announced handles a republished event header.
func (ws *watchers) announced(m *nats.Msg) {
	room, err := ws.l.subj.roomOf(m.Subject)
	if err != nil {
		return
	}
	seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	ws.l.ids.seen(seq)
	var head *eventlog.Head
	sm := stored{hdr: m.Header}
	if id, hash, ok := sm.idAndHash(); ok {
		head = &eventlog.Head{ID: id, Hash: hash, Count: sm.count()}
	}
	ws.appended(room, seq, head)
}

// appended records that room has an event at seq (head, when known) and wakes its watches.
func (ws *watchers) appended(room string, seq uint64, head *eventlog.Head) {
	ws.mu.Lock()
	ws.highest = max(ws.highest, seq)
	if a := ws.heads[room]; a != nil && seq > a.seq {
		a.seq, a.current = seq, head != nil
		if head != nil {
			a.head = *head
		}
	}
	ws.mu.Unlock()
	ws.reg.Notify(room)
}

// sawSeq records that the stream has a message at seq (not an event: a marker).
func (ws *watchers) sawSeq(seq uint64) {
	ws.mu.Lock()
	ws.highest = max(ws.highest, seq)
	ws.mu.Unlock()
}

// known is the last sequence of a watched room this node has seen announced (0 when none, or
// when the room is not watched here): a read that ends before it read from a replica behind.
func (ws *watchers) known(room string) uint64 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if a := ws.heads[room]; a != nil {
		return a.seq
	}
	return 0
}

// head is a watched room's head as last announced, when that is current.
func (ws *watchers) head(room string) (eventlog.Head, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if a := ws.heads[room]; a != nil && a.current {
		return a.head, true
	}
	return eventlog.Head{}, false
}

// follow starts following the head of a room that got its first watch (reg's OnFirst).
func (ws *watchers) follow(room string) {
	if room == "" {
		return
	}
	ws.mu.Lock()
	ws.heads[room] = &announced{}
	ws.mu.Unlock()
}

// unfollow stops following the head of a room whose last watch closed (reg's OnLast).
func (ws *watchers) unfollow(room string) {
	ws.mu.Lock()
	delete(ws.heads, room)
	ws.mu.Unlock()
}

// backstop wakes every watch when the stream holds more than was announced.
func (ws *watchers) backstop() {
	defer ws.wg.Done()
	t := time.NewTicker(ws.l.opts.Backstop)
	defer t.Stop()
	for {
		select {
		case <-ws.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ws.l.opts.Timeout)
		info, err := ws.l.stream.Info(ctx)
		cancel()
		if err != nil {
			continue
		}
		ws.mu.Lock()
		missed := info.State.LastSeq > ws.highest
		ws.highest = max(ws.highest, info.State.LastSeq)
		if missed {
			for _, a := range ws.heads {
				a.current = false // which room missed its notice is not known
			}
		}
		ws.mu.Unlock()
		if missed {
			ws.reg.NotifyAll()
		}
	}
}

func (ws *watchers) stop() {
	ws.sub.Unsubscribe()
	close(ws.done)
	ws.wg.Wait()
}

// Watch implements eventlog.Log.
func (l *Log) Watch(room string) *eventlog.Watch { return l.watch.reg.Add(room) }
