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

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/wsio"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/rooms"
)

// conn is one client connection. It has a goroutine only while it has work:
//
//   - readReady runs while there are bytes to read (the poller starts it; see startReading);
//   - handleLoop runs while read frames wait to be handled, one at a time, in order;
//   - writeLoop runs only while there is something to write: reply frames and room events;
//   - ackLoop runs only while publishes are in flight, turning their outcomes into replies in
//     the order the publishes were made;
//   - recordAcks runs only while client acks wait to be recorded in the log.
type conn struct {
	s     *Server
	cc    *wsio.CorkConn
	raw   syscall.RawConn // cc's socket, for the poller; nil when it has none
	codec codec
	id    string

	// The read side: in and polled are owned by the running readReady, token by the poller.
	in        wsio.Reader
	polled    bool
	token     wsio.Token
	lastHeard atomic.Int64 // unix nanoseconds when bytes last came in
	helloDone bool         // owned by the handler: the first frame was handled

	// Set by the handshake, then only read.
	user, session string

	limiter *rate.Limiter // made at the first publish; owned by the read loop

	mu          sync.Mutex
	cond        *sync.Cond // signalled when reply queue space frees or the connection closes
	grants      rooms.Grants
	streams     map[string]*roomStream // made at the first join
	order       []string               // joined rooms in join order: the writer's round-robin
	replies     [][]byte
	inflight    []inflight
	ackWaiting  bool
	writing     bool
	wakeup      bool
	closing     *closeRequest
	closed      bool                   // the network connection is closed
	acks        map[string]eventlog.ID // made at the first ack
	ackRecorder bool
	expiry      *time.Timer
	pinger      *time.Timer
	inbox       [][]byte // frames read, waiting for the handler
	inboxBytes  int
	handling    bool // a handleLoop runs
	replyBytes  int  // bytes in replies
	readState   int8
	welcomed    bool
	handshake   *time.Timer // until welcomed

	// Owned by the writer goroutine: buffers for encoding events read from the log.
	scratch, frames, frame []byte
}

type roomStream struct {
	mu     sync.Mutex // held by the writer while it writes this room's events; by the reader to end it
	stream *replay.Stream
	ended  bool
}

type inflight struct {
	ref, room string
	pending   *eventlog.Pending
	start     time.Time
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
	c.wakeWriterLocked()
	c.mu.Unlock()
}

func (c *conn) wakeWriterLocked() {
	c.wakeup = true
	if !c.writing && !c.closed {
		c.writing = true
		c.s.wg.Add(1)
		go c.writeLoop()
	}
}

// maxReplyBytes bounds the bytes of the reply queue as SendQueue bounds its frames (one frame
// always fits): history pages are large.
const maxReplyBytes = 4 << 20

// reply queues an encoded frame. It blocks while the reply queue is full: a client that does not
// read its replies is not read from either.
func (c *conn) reply(v any) {
	b, err := c.codec.encode(v)
	if err != nil {
		c.s.logger.Error("cannot encode a frame", "conn", c.id, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queueReplyLocked(b)
}

// queueReplyLocked queues the encoded reply b for the writer, waiting (c.mu released meanwhile)
// while the queue is full. It reports false when the connection closed instead.
func (c *conn) queueReplyLocked(b []byte) bool {
	for len(c.replies) > 0 && (len(c.replies) >= c.s.cfg.SendQueue || c.replyBytes+len(b) > maxReplyBytes) && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return false
	}
	c.replies = append(c.replies, b)
	c.replyBytes += len(b)
	c.wakeWriterLocked()
	return true
}

func (c *conn) replyError(ref, code, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.refusedFrame(code, msg)
	c.reply(&errorFrame{Type: "error", Ref: ref, Code: code, Message: msg})
}

// shutdown asks the writer to finish: write what is queued, wait for in-flight publishes to be
// acked, write bye (when given) and close with closeCode.
func (c *conn) shutdown(bye *byeFrame, closeCode int) {
	var b []byte
	reason := ""
	if bye != nil {
		b, _ = c.codec.encode(bye)
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
	c.inbox, c.inboxBytes = nil, 0 // frames not handled yet are dropped with the connection
	for c.handling {
		c.cond.Wait()
	}
	streams := c.streams
	c.streams = nil
	c.order = nil
	if c.expiry != nil {
		c.expiry.Stop()
	}
	if c.pinger != nil {
		c.pinger.Stop()
	}
	if c.handshake != nil {
		c.handshake.Stop()
	}
	c.mu.Unlock()
	for room, rs := range streams {
		rs.end()
		if err := c.s.hub.Leave(context.Background(), room, c.user, c.session, false); err != nil && !errors.Is(err, rooms.ErrNotJoined) {
			c.s.logger.Warn("leave on disconnect failed", "room", room, "user", c.user, "err", err)
		}
	}
	// Let the writer finish a requested close; otherwise close now.
	c.mu.Lock()
	wait := c.closing != nil && c.writing
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
	c.mu.Unlock()
	c.s.removeConn(c)
}

func (c *conn) waitWriter() {
	c.mu.Lock()
	for c.writing {
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
