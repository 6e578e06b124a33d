package transport

import (
	"sync"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/replay"
)

// The parts of a conn that are more than a field: each is under the conn's mu, so its methods
// are ...Locked or are called with mu held, and those that own a worker start and stop it
// themselves, keeping the worker's invariant.

// worker starts a connection's goroutine on demand: at most one runs at a time. Its state is
// under the conn's mu.
//
// Invariant: a loop run by a worker calls stopLocked in the same critical section in which it
// finds no work left, so work queued after that finds the worker stopped and starts it again
// (stopping later, after unlocking, would strand work queued in between).
type worker struct{ running bool }

// startLocked runs loop on a new goroutine, counted in wg, unless one runs already.
func (w *worker) startLocked(wg *sync.WaitGroup, loop func()) {
	if w.running {
		return
	}
	w.running = true
	wg.Add(1)
	go func() {
		defer wg.Done()
		loop()
	}()
}

// claimLocked makes the calling goroutine the worker, counted in wg, unless one runs already;
// it reports whether it did, and the caller then runs the loop and calls wg.Done.
func (w *worker) claimLocked(wg *sync.WaitGroup) bool {
	if w.running {
		return false
	}
	w.running = true
	wg.Add(1)
	return true
}

// stopLocked records that the loop is ending.
func (w *worker) stopLocked() { w.running = false }

type roomStream struct {
	mu     sync.Mutex // held by the writer while it writes this room's events; by the reader to end it
	stream *replay.Stream
	ended  bool
}

// replyQueue is the encoded replies (acks, errors, joined...) and signals waiting for the
// writer, in order.
type replyQueue struct {
	frames [][]byte
	bytes  int // in frames
}

// fullFor reports whether a frame of n more bytes must wait: the queue holds max frames or
// maxReplyBytes bytes (one frame always fits an empty queue).
func (q *replyQueue) fullFor(n, max int) bool {
	return len(q.frames) > 0 && (len(q.frames) >= max || q.bytes+n > maxReplyBytes)
}

func (q *replyQueue) push(b []byte) {
	q.frames = append(q.frames, b)
	q.bytes += len(b)
}

// take empties the queue and returns what it held.
func (q *replyQueue) take() [][]byte {
	frames := q.frames
	q.frames, q.bytes = nil, 0
	return frames
}

// frameInbox is the frames the read side has read, waiting for the handler (handleLoop), which
// its worker runs.
type frameInbox struct {
	frames  [][]byte
	bytes   int // in frames
	handler worker
}

// pushLocked queues a frame and starts the handler, running loop, if it is not running; it
// reports whether the inbox is now full (the read side then pauses).
func (in *frameInbox) pushLocked(data []byte, wg *sync.WaitGroup, loop func()) (full bool) {
	in.frames = append(in.frames, data)
	in.bytes += len(data)
	in.handler.startLocked(wg, loop)
	return len(in.frames) >= inboxLimit || in.bytes >= inboxMaxBytes
}

// popLocked takes the oldest frame; ok is false when there is none.
func (in *frameInbox) popLocked() (data []byte, ok bool) {
	if len(in.frames) == 0 {
		return nil, false
	}
	data = in.frames[0]
	in.bytes -= len(data)
	in.frames[0] = nil
	in.frames = in.frames[1:]
	return data, true
}

// hasRoomLocked reports whether the inbox is below its bounds (a paused read side may resume).
func (in *frameInbox) hasRoomLocked() bool {
	return len(in.frames) < inboxLimit && in.bytes < inboxMaxBytes
}

// dropLocked forgets the frames not handled yet.
func (in *frameInbox) dropLocked() { in.frames, in.bytes = nil, 0 }

// inflight is a publish waiting for the log.
type inflight struct {
	ref, room string
	pending   *eventlog.Pending
	start     time.Time
}

// publishQueue is a connection's publishes in flight, answered in the order they were made by
// its acker (ackLoop).
type publishQueue struct {
	pending []inflight
	acker   worker
}

// pushLocked queues a publish and starts the acker, running loop, if it is not running.
func (q *publishQueue) pushLocked(in inflight, wg *sync.WaitGroup, loop func()) {
	q.pending = append(q.pending, in)
	q.acker.startLocked(wg, loop)
}

// frontLocked returns the oldest publish in flight. When there is none, ok is false and the
// acker is stopped, in the same critical section (see worker).
func (q *publishQueue) frontLocked() (in inflight, ok bool) {
	if len(q.pending) == 0 {
		q.acker.stopLocked()
		return inflight{}, false
	}
	return q.pending[0], true
}

// popLocked drops the oldest publish, answered.
func (q *publishQueue) popLocked() { q.pending = q.pending[1:] }

// emptyLocked reports whether no publish is in flight.
func (q *publishQueue) emptyLocked() bool { return len(q.pending) == 0 }

// receiptBook is the receipt cursors a client's ack frames asked to record, coalesced by room
// (the highest per room) until its recorder (recordReceipts) writes them.
type receiptBook struct {
	cursors  map[string]eventlog.ID // made at the first
	recorder worker
}

// noteLocked records id as room's receipt unless a later one is waiting, and starts the
// recorder, running loop, if it is not running.
func (b *receiptBook) noteLocked(room string, id eventlog.ID, wg *sync.WaitGroup, loop func()) {
	if b.cursors == nil {
		b.cursors = map[string]eventlog.ID{}
	}
	if cur, ok := b.cursors[room]; !ok || id.Compare(cur) > 0 {
		b.cursors[room] = id
	}
	b.recorder.startLocked(wg, loop)
}

// takeLocked returns the receipts waiting and forgets them. When there is none, it returns nil
// and stops the recorder, in the same critical section (see worker).
func (b *receiptBook) takeLocked() map[string]eventlog.ID {
	cursors := b.cursors
	b.cursors = nil
	if len(cursors) == 0 {
		b.recorder.stopLocked()
		return nil
	}
	return cursors
}

// sessionTimers are a connection's timers: the handshake's bound until welcome, the token's
// expiry, and the next heartbeat ping. Each is nil until armed.
type sessionTimers struct {
	handshake *time.Timer // until welcomed
	expiry    *time.Timer // the token's exp
	pinger    *time.Timer
}

// stopLocked stops every timer armed.
func (t *sessionTimers) stopLocked() {
	for _, tm := range []*time.Timer{t.handshake, t.expiry, t.pinger} {
		if tm != nil {
			tm.Stop()
		}
	}
}
