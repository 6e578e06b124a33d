package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/rooms"
)

// conn is one client connection. Its goroutines:
//
//   - readLoop reads and handles client frames, one at a time, for the connection's lifetime;
//   - writeLoop runs only while there is something to write: reply frames and room events;
//   - ackLoop runs only while publishes are in flight, turning their outcomes into replies in
//     the order the publishes were made;
//   - recordAcks runs only while client acks wait to be recorded in the log.
type conn struct {
	s     *Server
	ws    *websocket.Conn
	cc    *corkConn
	codec codec
	id    string

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
	handling    bool     // a handleLoop runs

	// Owned by the writer goroutine: buffers for encoding events read from the log.
	scratch, frame []byte
}

type roomStream struct {
	mu     sync.Mutex // held by the writer while it writes this room's events; by the reader to end it
	stream *replay.Stream
	joined []byte // the joined frame, written before the room's first event
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

func newConn(s *Server, ws *websocket.Conn, cc *corkConn) *conn {
	c := &conn{
		s: s, ws: ws, cc: cc, codec: codecFor(ws.Subprotocol()), id: newConnID(),
	}
	c.cond = sync.NewCond(&c.mu)
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
	for len(c.replies) >= c.s.cfg.SendQueue && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return
	}
	c.replies = append(c.replies, b)
	c.wakeWriterLocked()
}

func (c *conn) replyError(ref, code, format string, args ...any) {
	c.reply(&errorFrame{Type: "error", Ref: ref, Code: code, Message: fmt.Sprintf(format, args...)})
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
	time.AfterFunc(c.s.cfg.StallTimeout, func() { c.cc.Conn.Close() })
}

// ---- reading ----

var errFrameTooLarge = errors.New("frame too large")

// readFrame reads one data frame of at most MaxFrame bytes.
func (c *conn) readFrame(buf []byte) ([]byte, error) {
	_, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	limit := c.s.cfg.MaxFrame
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, errFrameTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, errFrameTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// recoverFrame turns a panic while handling a client's frame into the end of that connection:
// a bug triggered by one client must not take the server down.
func (c *conn) recoverFrame() {
	if r := recover(); r != nil {
		c.panicked(r)
	}
}

func (c *conn) panicked(r any) {
	c.s.logger.Error("panic handling a client frame; closing the connection", "conn", c.id, "user", c.user, "panic", r, "stack", string(debug.Stack()))
	c.shutdown(&byeFrame{Type: "bye", Code: CodeInternal, Reason: "internal error"}, websocket.CloseInternalServerErr)
}

// readLoop reads frames for the connection's lifetime. It stays shallow, so that the stack an idle
// connection keeps is small: the handshake and the frames' handling run on goroutines that exist
// only while there is work (hello below, handleLoop).
func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.cleanup()
	c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
	data, err := c.readFrame(nil)
	if err != nil {
		if errors.Is(err, errFrameTooLarge) {
			c.tooLarge("")
		}
		return
	}
	welcomed := make(chan bool, 1)
	go func() {
		defer c.recoverFrame()
		var f clientFrame
		if err := c.codec.decode(data, &f); err != nil || f.Type != "hello" {
			c.s.metrics.authFailures.Inc()
			c.shutdown(&byeFrame{Type: "bye", Code: CodeUnauthenticated, Reason: "the first frame must be hello"}, websocket.ClosePolicyViolation)
			welcomed <- false
			return
		}
		welcomed <- c.hello(&f)
	}()
	if !<-welcomed {
		return
	}
	hb := c.s.cfg.Heartbeat
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(2 * hb)) })
	c.schedulePing()
	for {
		c.ws.SetReadDeadline(time.Now().Add(2 * hb))
		data, err := c.readFrame(nil)
		if err != nil {
			if errors.Is(err, errFrameTooLarge) {
				c.tooLarge("")
			}
			return
		}
		if !c.queueFrame(data) {
			return // closing
		}
	}
}

// inboxLimit bounds the frames read but not yet handled; past it the read loop waits, and TCP
// pushes back on the client.
const inboxLimit = 256

// queueFrame hands a frame to the handler, starting it if needed; false means the connection is
// closing and reads should stop.
func (c *conn) queueFrame(data []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.inbox) >= inboxLimit && c.closing == nil && !c.closed {
		c.cond.Wait()
	}
	if c.closing != nil || c.closed {
		return false
	}
	c.inbox = append(c.inbox, data)
	if !c.handling {
		c.handling = true
		c.s.wg.Add(1)
		go c.handleLoop()
	}
	return true
}

// handleLoop handles queued frames in order, one at a time, and exits when none is left.
//
// It clears handling in the same critical section in which it finds the inbox empty: a frame
// queued after that sees handling false and starts a new loop. (Clearing it later, after
// unlocking, would strand a frame queued in between.)
func (c *conn) handleLoop() {
	defer c.s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			c.mu.Lock()
			c.handling = false
			c.cond.Broadcast()
			c.mu.Unlock()
			c.panicked(r)
		}
	}()
	for {
		c.mu.Lock()
		if len(c.inbox) == 0 || c.closing != nil || c.closed {
			c.inbox = nil
			c.handling = false
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		data := c.inbox[0]
		c.inbox[0] = nil
		c.inbox = c.inbox[1:]
		c.cond.Broadcast()
		c.mu.Unlock()
		var f clientFrame
		if err := c.codec.decode(data, &f); err != nil {
			c.s.metrics.badFrames.Inc()
			c.replyError(f.Ref, CodeBadFrame, "%v", err)
			continue
		}
		c.handle(&f)
	}
}

func (c *conn) tooLarge(ref string) {
	c.s.metrics.badFrames.Inc()
	c.replyError(ref, CodeFrameTooLarge, "frames are limited to %d bytes", c.s.cfg.MaxFrame)
	c.shutdown(nil, websocket.CloseMessageTooBig)
}

// hello authenticates the connection; false means it was refused.
func (c *conn) hello(f *clientFrame) bool {
	claims, err := c.s.auth.Verify(f.Token)
	if err != nil {
		c.s.metrics.authFailures.Inc()
		code := CodeUnauthenticated
		if errors.Is(err, ErrTokenExpired) {
			code = CodeTokenExpired
		}
		c.shutdown(&byeFrame{Type: "bye", Code: code, Reason: err.Error()}, websocket.ClosePolicyViolation)
		return false
	}
	session := f.Session
	if len(session) > eventlog.MaxSessionLen || !utf8.ValidString(session) || containsNUL(session) {
		c.shutdown(&byeFrame{Type: "bye", Code: CodeUnauthenticated, Reason: "session must be at most 128 bytes of UTF-8"}, websocket.ClosePolicyViolation)
		return false
	}
	if session == "" {
		session = c.id
	}
	c.user, c.session = claims.Subject, session
	c.mu.Lock()
	c.grants = claims.Grants()
	c.mu.Unlock()
	c.armExpiry(claims.Expiry())
	c.reply(&welcomeFrame{Type: "welcome", Conn: c.id, User: c.user, Session: c.session,
		HeartbeatMS: c.s.cfg.Heartbeat.Milliseconds(), MaxFrame: c.s.cfg.MaxFrame})
	return true
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

func (c *conn) armExpiry(exp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.expiry = time.AfterFunc(time.Until(exp), func() {
		c.shutdown(&byeFrame{Type: "bye", Code: CodeTokenExpired, Reason: "the token expired; reconnect with a fresh one"}, websocket.ClosePolicyViolation)
	})
}

func (c *conn) schedulePing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.pinger = time.AfterFunc(c.s.cfg.Heartbeat, func() {
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.StallTimeout)); err != nil {
			c.cc.Conn.Close()
			return
		}
		c.schedulePing()
	})
}

// cleanup runs when the read loop ends: the member sessions leave after the grace period.
func (c *conn) cleanup() {
	c.mu.Lock()
	c.inbox = nil // frames not handled yet are dropped with the connection
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
		deadline := time.AfterFunc(c.s.cfg.StallTimeout, func() { c.cc.Conn.Close() })
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

// ---- writing ----

// writeBatch bounds the events one room contributes to one write, so rooms take turns.
const writeBatch = 128

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	ctx := context.Background()
	for {
		c.mu.Lock()
		if !c.wakeup || c.closed {
			c.scratch, c.frame = nil, nil // an idle connection keeps no buffers
			c.writing = false
			c.cond.Broadcast()
			c.mu.Unlock()
			c.cc.release()
			return
		}
		c.wakeup = false
		replies := c.replies
		c.replies = nil
		c.cond.Broadcast()
		streams := make([]*roomStream, 0, len(c.order))
		for _, room := range c.order {
			streams = append(streams, c.streams[room])
		}
		var closing *closeRequest
		if c.closing != nil && len(c.inflight) == 0 {
			closing = c.closing
		}
		c.mu.Unlock()

		deadline := time.Now().Add(c.s.cfg.StallTimeout)
		c.ws.SetWriteDeadline(deadline)      // frames gorilla writes
		c.cc.Conn.SetWriteDeadline(deadline) // frames written directly
		c.cc.cork()
		err := c.writeReplies(replies)
		more := false
		for _, rs := range streams {
			if err != nil || closing != nil {
				break
			}
			var m bool
			m, err = c.writeRoom(ctx, rs)
			more = more || m
		}
		if err == nil && closing != nil {
			err = c.writeClose(closing)
		}
		if uerr := c.cc.uncork(); err == nil {
			err = uerr
		}
		if err != nil || closing != nil {
			c.writeFailed(err, closing != nil)
			return
		}
		if more {
			c.mu.Lock()
			c.wakeup = true
			c.mu.Unlock()
		}
	}
}

func (c *conn) writeReplies(replies [][]byte) error {
	mt := c.codec.messageType()
	for _, b := range replies {
		if err := c.ws.WriteMessage(mt, b); err != nil {
			return err
		}
	}
	return nil
}

// writeRoom writes the room's next events; more reports that it may have further ones now.
func (c *conn) writeRoom(ctx context.Context, rs *roomStream) (more bool, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ended {
		return false, nil
	}
	mt := c.codec.messageType()
	if rs.joined != nil {
		if err := c.ws.WriteMessage(mt, rs.joined); err != nil {
			return false, err
		}
		rs.joined = nil
	}
	batch, synced, err := rs.stream.Next(ctx, writeBatch)
	if err != nil {
		c.s.logger.Error("cannot read room events", "room", rs.stream.Room(), "err", err)
		return false, nil // the stream keeps its cursor; the next wake-up retries
	}
	slot := c.codec.slot()
	for _, e := range batch.Shared {
		if err := c.cc.writeFrame(e.Encoded(slot, c.frameEvent).([]byte)); err != nil {
			return false, err
		}
	}
	// Events read from the log for this connection alone: encoded into a reused buffer.
	for i := range batch.Own {
		c.scratch = c.codec.appendEvent(c.scratch[:0], &batch.Own[i])
		c.frame = appendFrame(c.frame[:0], mt, c.scratch)
		if err := c.cc.writeFrame(c.frame); err != nil {
			return false, err
		}
	}
	c.s.metrics.deliveries.Add(float64(batch.Len()))
	c.s.metrics.replayed.Add(float64(len(batch.Own)))
	if synced {
		b, _ := c.codec.encode(&syncedFrame{Type: "synced", Room: rs.stream.Room(), Cursor: rs.stream.Cursor().String()})
		if err := c.ws.WriteMessage(mt, b); err != nil {
			return false, err
		}
	}
	return batch.Len() == writeBatch || synced, nil
}

// frameEvent encodes an event as a whole WebSocket frame; the room's entry caches it per codec,
// so members of a room share one encoding.
func (c *conn) frameEvent(e *eventlog.Event) any {
	payload := c.codec.appendEvent(make([]byte, 0, 160+len(e.Body)), e)
	return appendFrame(make([]byte, 0, len(payload)+10), c.codec.messageType(), payload)
}

func (c *conn) writeClose(cr *closeRequest) error {
	if cr.bye != nil {
		if err := c.ws.WriteMessage(c.codec.messageType(), cr.bye); err != nil {
			return err
		}
	}
	return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(cr.closeCode, cr.reason), time.Now().Add(time.Second))
}

// closeLinger is how long a closing connection keeps reading (and discarding) what the client
// still sends, so that closing the socket with unread input does not reset the connection and
// destroy the frames that explain the close.
const closeLinger = 2 * time.Second

// writeFailed ends the connection after a write error or a completed close.
func (c *conn) writeFailed(err error, closed bool) {
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.s.metrics.slowConsumers.Inc()
		c.s.logger.Warn("slow consumer disconnected", "conn", c.id, "user", c.user, "stalled", c.s.cfg.StallTimeout)
	}
	if tcp, ok := c.cc.Conn.(*net.TCPConn); ok && err == nil && closed {
		// Closing handshake: our close frame is out; send FIN and let the read side see the
		// client's close frame (the read loop, or cleanup's drain) before the socket goes.
		tcp.CloseWrite()
		time.AfterFunc(closeLinger, func() { c.cc.Conn.Close() })
	} else {
		c.cc.Conn.Close() // the read loop ends and cleans up
	}
	c.mu.Lock()
	c.writing = false
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
}
