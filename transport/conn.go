package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/time/rate"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/wsio"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/wire"
)

// conn is one client connection. It has a goroutine only while it has work, each started on
// demand by its worker (see worker):
//
//   - readReady runs while there are bytes to read (the poller starts it; see startReading);
//   - handleLoop (inbox.handler) runs while read frames wait to be handled, one at a time, in
//     order;
//   - writeLoop (writer) runs only while there is something to write: replies and room events;
//   - ackLoop (publishes.acker) runs only while publishes are in flight, turning their outcomes
//     into replies in the order the publishes were made;
//   - recordReceipts (receipts.recorder) runs only while receipt cursors (from the client's ack
//     frames) wait to be recorded.
//
// The parts with methods of their own (the inbox, the reply queue, the publishes in flight, the
// receipts, the timers) are in conn_parts.go.
//
// Lock contract: fields under mu are read and written with mu held; a method named ...Locked
// expects it held. The other groups say who owns them. A conn's mu is never taken under a lock of
// package rooms: a room's feed calls Wake after releasing its own.
type conn struct {
	// Fixed at creation.
	s     *Server
	cc    *wsio.CorkConn
	raw   syscall.RawConn // cc's socket, for the poller; nil when it has none
	codec codec
	id    string

	// The read side, owned by the running readReady (at most one; readState says who starts
	// the next), except token, set once at registration.
	in        wsio.Reader
	polled    bool
	token     wsio.Token
	lastHeard atomic.Int64 // unix nanoseconds when bytes last came in (read by the pinger too)

	// The handler side, owned by the running handleLoop (one at a time, frames in order).
	helloDone     bool          // the first frame was handled
	user, session string        // set by hello, then only read (by every side)
	limiter       *rate.Limiter // the write rate limit, made at the first publish or presence
	signalLimiter *rate.Limiter // the signal rate limit, made at the first signal

	// The writer's buffers for encoding events read from the log, owned by the running writeLoop.
	scratch, frames, frame []byte

	mu   sync.Mutex
	cond *sync.Cond // signalled when reply queue space frees, a worker stops or the connection closes

	// Under mu: the session.
	grants        auth.Grants
	claims        *auth.Claims // the token's, for revocations; set with grants
	welcomed      bool
	holdsUserSlot bool // counted in the server's connections of c.user
	timers        sessionTimers

	// Under mu: the read side's hand-off to the handler.
	readState int8
	inbox     frameInbox

	// Under mu: what the writer writes, and how the connection ends.
	streams map[string]*roomStream // made at the first join
	order   []string               // joined rooms in join order: the writer's round-robin
	replies replyQueue
	wakeup  bool // something new to write since the writer last looked
	writer  worker
	// Room events and the write interval (Config.WriteInterval): eventsDue says a joined room
	// may have events the writer has not taken; the writer takes them no earlier than
	// nextEvents, and eventTimer (when eventTimerArmed) wakes it then.
	eventsDue       bool
	nextEvents      time.Time
	eventTimer      *time.Timer
	eventTimerArmed bool
	closing         *closeRequest
	closed          bool // the network connection is closed

	// Under mu: publishes in flight, answered by their acker, and receipt cursors waiting for
	// their recorder.
	publishes publishQueue
	receipts  receiptBook
}

type closeRequest struct {
	bye       []byte // written last, when set
	closeCode int
	reason    string
}

func newConnID() string { return ulid.Make().String() }

func newConn(s *Server, subprotocol string, cc *wsio.CorkConn) *conn {
	c := &conn{s: s, cc: cc, codec: codecFor(subprotocol), id: newConnID()}
	c.in.MaxMessage = s.cfg.MaxFrame
	c.cond = sync.NewCond(&c.mu)
	if sc, ok := cc.Conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c
}

// Wake implements rooms.Waker: a joined room has new events.
func (c *conn) Wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eventsDue = true
	if c.eventTimerArmed {
		return // the timer wakes the writer
	}
	if !c.writer.running && c.holdEventsLocked() {
		return // no goroutine until the timer fires
	}
	c.wakeWriterLocked()
}

// takeEventsLocked reports whether the writer takes the rooms' events now: some are due and
// the write interval since it last wrote events has passed (see wroteEventsLocked).
func (c *conn) takeEventsLocked() bool {
	if !c.eventsDue || c.holdEventsLocked() {
		return false
	}
	c.eventsDue = false
	return true
}

// holdEventsLocked reports whether the rooms' events must wait for the write interval, and
// then arms the event timer for when they may go.
func (c *conn) holdEventsLocked() bool {
	if c.s.cfg.WriteInterval <= 0 || c.nextEvents.IsZero() { // no interval, or nothing to wait after
		return false
	}
	wait := time.Until(c.nextEvents)
	if wait <= 0 {
		return false
	}
	c.armEventTimerLocked(wait)
	return true
}

// wroteEventsLocked records a write pass of the rooms' events: more says a room has further
// events now (a backlog), which go on at once; otherwise, when the pass wrote events, the next
// ones wait for the write interval.
func (c *conn) wroteEventsLocked(events int, more bool) {
	switch {
	case more:
		c.wakeup, c.eventsDue, c.nextEvents = true, true, time.Time{}
	case events > 0 && c.s.cfg.WriteInterval > 0:
		c.nextEvents = time.Now().Add(c.s.cfg.WriteInterval)
	}
}

func (c *conn) armEventTimerLocked(wait time.Duration) {
	if c.eventTimerArmed || c.closed {
		return
	}
	c.eventTimerArmed = true
	if c.eventTimer == nil {
		c.eventTimer = time.AfterFunc(wait, c.eventTimerFired)
	} else {
		c.eventTimer.Reset(wait)
	}
}

// eventTimerFired runs on the timer's own goroutine, which becomes the writer: a busy
// connection's every write would otherwise start two goroutines.
func (c *conn) eventTimerFired() {
	c.mu.Lock()
	c.eventTimerArmed = false
	if !c.eventsDue || c.closed {
		c.mu.Unlock()
		return
	}
	c.wakeup = true
	run := c.writer.claimLocked(&c.s.wg)
	c.mu.Unlock()
	if run {
		defer c.s.wg.Done()
		c.writeLoop()
	}
}

func (c *conn) wakeWriterLocked() {
	c.wakeup = true
	if !c.closed {
		c.writer.startLocked(&c.s.wg, c.writeLoop)
	}
}

// maxReplyBytes bounds the bytes of the reply queue as SendQueue bounds its frames (one frame
// always fits): history pages are large.
const maxReplyBytes = 4 << 20

// reply queues an encoded frame. It blocks while the reply queue is full: a client that does not
// read its replies is not read from either.
func (c *conn) reply(v any) {
	b, err := c.codec.Encode(v)
	if err != nil {
		c.s.logger.Error("cannot encode a frame", "conn", c.id, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queueReplyLocked(b)
}

// replyQueueFullLocked reports whether a reply of n more bytes must wait (see replyQueue.fullFor).
func (c *conn) replyQueueFullLocked(n int) bool {
	return c.replies.fullFor(n, c.s.cfg.SendQueue)
}

// queueReplyLocked queues the encoded reply b for the writer, waiting (c.mu released meanwhile)
// while the queue is full. It reports false when the connection closed instead.
func (c *conn) queueReplyLocked(b []byte) bool {
	for c.replyQueueFullLocked(len(b)) && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return false
	}
	c.replies.push(b)
	c.wakeWriterLocked()
	return true
}

func (c *conn) replyError(ref, code, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.refusedFrame(code, msg)
	c.reply(&wire.Error{Type: "error", Ref: ref, Code: code, Message: msg})
}

// shutdown asks the writer to finish: write what is queued, wait for in-flight publishes to be
// acked, write bye (when given) and close with closeCode.
func (c *conn) shutdown(bye *wire.Bye, closeCode int) {
	var b []byte
	reason := ""
	if bye != nil {
		b, _ = c.codec.Encode(bye)
		reason = bye.Code
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing != nil || c.closed {
		return
	}
	c.closing = &closeRequest{bye: b, closeCode: closeCode, reason: reason}
	c.wakeWriterLocked()
	// Whatever happens to the writer, the connection goes within the stall time.
	time.AfterFunc(c.s.cfg.StallTimeout, c.closeSocket)
}

// cleanup runs when the read side ends: the member sessions leave after the grace period.
func (c *conn) cleanup() {
	c.mu.Lock()
	c.inbox.dropLocked() // frames not handled yet are dropped with the connection
	for c.inbox.handler.running {
		c.cond.Wait()
	}
	streams := c.streams
	c.streams = nil
	c.order = nil
	c.timers.stopLocked()
	c.mu.Unlock()
	for room, rs := range streams {
		rs.end()
		if err := c.s.hub.Leave(context.Background(), room, c.user, c.session, false); err != nil && !errors.Is(err, rooms.ErrNotJoined) {
			c.s.logger.Warn("leave on disconnect failed", "room", room, "user", c.user, "err", err)
		}
	}
	// Let the writer finish a requested close; otherwise close now.
	c.mu.Lock()
	wait := c.closing != nil && c.writer.running
	c.mu.Unlock()
	if wait {
		deadline := time.AfterFunc(c.s.cfg.StallTimeout, func() { c.cc.Conn.Close() }) // the read side has ended
		c.waitWriter()
		deadline.Stop()
	}
	c.mu.Lock()
	closing := c.closing != nil
	c.mu.Unlock()
	if closing {
		// The read loop has stopped reading; discard what the client still sends until it
		// closes too (see closeLinger).
		c.cc.Conn.SetReadDeadline(time.Now().Add(closeLinger))
		io.Copy(io.Discard, c.cc.Conn)
	}
	c.cc.Conn.Close()
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	slot := c.holdsUserSlot
	c.holdsUserSlot = false
	c.mu.Unlock()
	if slot {
		c.s.releaseUserSlot(c.user)
	}
	c.s.removeConn(c)
}

func (c *conn) waitWriter() {
	c.mu.Lock()
	for c.writer.running {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

func (rs *roomStream) end() {
	rs.mu.Lock()
	if !rs.ended {
		rs.ended = true
		rs.stream.Close()
	}
	rs.mu.Unlock()
}
