package transport

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/wsio"
	"github.com/roomlog/roomlog/wire"
)

// This file is the reading side of a connection: frames in, the handshake, handling in order,
// heartbeats.

// panicked turns a panic while handling a client's frame into the end of that connection: a
// bug triggered by one client must not take the server down.
func (c *conn) panicked(r any) {
	c.s.logger.Error("panic handling a client frame; closing the connection", "conn", c.id, "user", c.user, "panic", r, "stack", string(debug.Stack()))
	c.shutdown(&wire.Bye{Type: "bye", Code: wire.CodeInternal, Reason: "internal error"}, websocket.CloseInternalServerErr)
}

// Read-side states (conn.readState, under conn.mu). One goroutine at most runs readReady; the
// state says who starts the next: the poller (armed), the handler once the inbox drains (paused),
// or no one (ended).
const (
	readArmed   = iota // waiting for bytes: registered with the poller, or about to read
	readRunning        // readReady runs
	readPaused         // the inbox is full; handleLoop resumes reading when it drains
	readEnded          // cleanup has started
)

// startReading begins the read side. The handler has returned by then: between frames, an
// idle connection is its socket, its state here and, with the poller, no goroutine at all.
func (c *conn) startReading() {
	c.timers.handshake = time.AfterFunc(c.s.cfg.HandshakeTimeout, func() {
		c.mu.Lock()
		welcomed := c.welcomed
		c.mu.Unlock()
		if !welcomed {
			c.refuseHello(wire.CodeUnauthenticated, fmt.Sprintf("no hello within %s", c.s.cfg.HandshakeTimeout))
		}
	})
	c.lastHeard.Store(time.Now().UnixNano())
	if p := c.s.poller(); p != nil && c.raw != nil {
		c.mu.Lock()
		c.readState = readArmed
		c.mu.Unlock()
		c.polled = true // before the poller can start a reader
		if err := p.Register(c.raw, c, &c.token); err == nil {
			if wsio.ReadableNow(c.raw) { // the hello is often there already: see wsio.ReadableNow
				c.Readable()
			}
			return
		}
		c.polled = false // no reader started: registration failed
	}
	c.mu.Lock()
	c.readState = readRunning
	c.mu.Unlock()
	go c.readReady()
}

// Readable is the poller's call (wsio.Readable): the connection has bytes (or an end) to read.
func (c *conn) Readable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readState == readArmed {
		c.readState = readRunning
		go c.readReady()
	}
}

// resumeReadingLocked starts a reader for a paused or armed read side; the caller holds mu.
func (c *conn) resumeReadingLocked() {
	if c.readState == readArmed || c.readState == readPaused {
		c.readState = readRunning
		go c.readReady()
	}
}

// closeSocket closes the network connection and makes sure the read side sees it, even when no
// reader runs (a closed socket leaves the poller without telling it).
func (c *conn) closeSocket() {
	c.cc.Conn.Close()
	c.mu.Lock()
	c.resumeReadingLocked()
	c.mu.Unlock()
}

// readReady reads and handles whatever the client sent, until the socket has nothing more (then
// it re-arms the poller and returns), the inbox is full (it pauses), or the connection ends.
func (c *conn) readReady() {
	for {
		for {
			op, payload, err := c.in.Next()
			if err != nil {
				c.readFailed(err)
				return
			}
			if op == 0 {
				break
			}
			switch c.frameIn(op, payload) {
			case frameQueued:
			case framePaused:
				return
			case frameStop:
				c.endRead()
				return
			}
		}
		n, err := c.readSome(c.in.Space())
		if err == wsio.ErrWouldBlock {
			c.in.Idle()
			if c.armReader() {
				return
			}
			continue
		}
		if err != nil {
			c.endRead()
			return
		}
		c.lastHeard.Store(time.Now().UnixNano())
		c.in.Received(n)
	}
}

// readSome reads without waiting when the poller watches the connection, else blocking.
func (c *conn) readSome(b []byte) (int, error) {
	if c.polled {
		return wsio.ReadNonblocking(c.raw, b)
	}
	return c.cc.Conn.Read(b)
}

// armReader hands the connection back to the poller; false means the caller must keep reading
// (there are bytes already, or the socket was closed and the read that follows sees it).
func (c *conn) armReader() bool {
	c.mu.Lock()
	c.readState = readArmed
	c.mu.Unlock()
	if err := c.s.poller().Arm(c.raw, c.token); err == nil && !wsio.ReadableNow(c.raw) {
		return true
	}
	// The socket was closed meanwhile, or bytes came in before the poller was armed (which it
	// may not pass on: see wsio.ReadableNow). Keep reading, unless another reader took over.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readState == readArmed {
		c.readState = readRunning
		return false
	}
	return true
}

type frameOutcome int

const (
	frameQueued frameOutcome = iota // go on reading
	framePaused                     // the inbox is full: stop until the handler drains it
	frameStop                       // the connection is ending: stop reading
)

// frameIn takes one message or control frame.
func (c *conn) frameIn(op byte, payload []byte) frameOutcome {
	switch op {
	case wsio.OpPing:
		c.cc.WriteControl(wsio.AppendFrame(nil, wsio.OpPong, payload), c.s.cfg.StallTimeout)
		return frameQueued
	case wsio.OpPong:
		return frameQueued // lastHeard is what liveness needs
	case wsio.OpClose:
		c.closeFrame(wsio.EchoClose(payload))
		return frameStop
	}
	return c.queueFrame(payload)
}

// readFailed ends the read side after a frame the server refuses.
func (c *conn) readFailed(err error) {
	var ce *wsio.CloseError
	switch {
	case errors.Is(err, wsio.ErrMessageTooLarge):
		c.tooLarge("")
	case errors.As(err, &ce):
		c.s.metrics.badFrames.Inc()
		c.closeFrame(wsio.ClosePayload(ce.Code, ce.Reason))
	}
	c.endRead()
}

// closeFrame writes a close frame, unless the server has closed (or is closing) already.
func (c *conn) closeFrame(payload []byte) {
	c.mu.Lock()
	closing := c.closing != nil || c.closed
	c.mu.Unlock()
	if !closing {
		c.cc.WriteControl(wsio.AppendFrame(nil, wsio.OpClose, payload), time.Second)
	}
}

// endRead ends the read side: the connection's cleanup runs, once.
func (c *conn) endRead() {
	c.mu.Lock()
	c.readState = readEnded
	c.mu.Unlock()
	c.in = wsio.Reader{} // drop a partial frame's buffer
	if c.polled {
		c.s.poller().Deregister(c.raw, c.token)
	}
	c.cleanup()
	c.s.wg.Done()
}

// inboxLimit and inboxMaxBytes bound the frames read but not yet handled (one frame always
// fits); past them reading pauses, and TCP pushes back on the client.
const (
	inboxLimit    = 256
	inboxMaxBytes = 1 << 20
)

// queueFrame hands a frame to the handler, starting it if needed.
func (c *conn) queueFrame(data []byte) frameOutcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing != nil || c.closed {
		return frameStop
	}
	if c.inbox.pushLocked(data, &c.s.wg, c.handleLoop) {
		c.readState = readPaused
		return framePaused
	}
	return frameQueued
}

// handleLoop handles queued frames in order, one at a time, and exits when none is left.
//
// It stops its worker in the same critical section in which it finds the inbox empty (see
// worker).
func (c *conn) handleLoop() {
	defer func() {
		if r := recover(); r != nil {
			c.mu.Lock()
			c.inbox.handler.stopLocked()
			c.cond.Broadcast()
			c.mu.Unlock()
			c.panicked(r)
		}
	}()
	for {
		data, ok := c.nextInbound()
		if !ok {
			return
		}
		var f wire.ClientFrame
		err := c.codec.DecodeClient(data, &f)
		switch {
		case !c.helloDone:
			c.helloDone = true
			c.firstFrame(&f, err)
		case err != nil:
			c.s.metrics.badFrames.Inc()
			c.replyError(f.Ref, wire.CodeBadFrame, "%v", err)
		default:
			c.handle(&f)
		}
	}
}

// nextInbound takes the next frame read from the inbox, resuming a paused read side once the
// inbox has room again. ok is false when there is none (or the connection is closing): the
// handler then stops, in the same critical section (see worker).
func (c *conn) nextInbound() (data []byte, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing != nil || c.closed {
		c.inbox.dropLocked()
	}
	data, ok = c.inbox.popLocked()
	c.cond.Broadcast()
	if !ok {
		c.inbox.handler.stopLocked()
		if c.readState == readPaused {
			c.resumeReadingLocked() // to see the end, if that is why the loop stops
		}
		return nil, false
	}
	if c.readState == readPaused && c.inbox.hasRoomLocked() {
		c.resumeReadingLocked()
	}
	return data, true
}

// firstFrame handles the connection's first frame (decoded f, or the decoding error err): a
// hello, or the end of the connection.
func (c *conn) firstFrame(f *wire.ClientFrame, err error) {
	if err != nil || f.Type != "hello" {
		reason := "the first frame must be hello"
		if err != nil {
			reason = "the first frame must be hello; it is a " + err.Error()
		}
		c.refuseHello(wire.CodeUnauthenticated, reason)
		return
	}
	c.hello(f)
}

func (c *conn) tooLarge(ref string) {
	c.s.metrics.badFrames.Inc()
	c.replyError(ref, wire.CodeFrameTooLarge, "frames are limited to %d bytes", c.s.cfg.MaxFrame)
	c.shutdown(nil, websocket.CloseMessageTooBig)
}

// hello authenticates the connection, or refuses it with bye.
func (c *conn) hello(f *wire.ClientFrame) {
	claims, err := c.s.auth.Verify(f.Token)
	if err != nil {
		c.refuseHello(tokenCode(err), err.Error())
		return
	}
	if reason := checkSession(f.Session); reason != "" {
		c.refuseHello(wire.CodeUnauthenticated, reason)
		return
	}
	session := f.Session
	if session == "" {
		session = c.id
	}
	if !c.s.claimUserSlot(claims.Subject) {
		c.refuseHello(wire.CodeTooManyConnections, fmt.Sprintf("user %q holds %d connections to this server, the most it allows (--max-conns-per-user)", claims.Subject, c.s.cfg.MaxConnsPerUser))
		return
	}
	c.user, c.session = claims.Subject, session
	c.mu.Lock()
	c.holdsUserSlot = true // released by cleanup
	if c.closing != nil || c.closed {
		c.mu.Unlock()
		return // the handshake timed out meanwhile (a slow JWKS fetch)
	}
	c.grants, c.claims = claims.Grants(), claims
	c.welcomed = true
	if c.timers.handshake != nil {
		c.timers.handshake.Stop()
		c.timers.handshake = nil
	}
	c.mu.Unlock()
	c.armExpiry(claims.Expiry())
	c.reply(&wire.Welcome{Type: "welcome", Conn: c.id, User: c.user, Session: c.session,
		HeartbeatMS: c.s.cfg.Heartbeat.Milliseconds(), MaxFrame: c.s.cfg.MaxFrame, KeyRetentionMS: c.s.cfg.KeyRetention.Milliseconds()})
	c.schedulePing()
}

// refuseHello ends a connection that did not authenticate: bye with code and reason, counted and
// logged as a refused connection.
func (c *conn) refuseHello(code, reason string) {
	c.s.metrics.authFailures.Inc()
	c.s.refusedConnection(code, "conn", c.id, "remote", c.cc.RemoteAddr().String(), "reason", reason)
	c.shutdown(&wire.Bye{Type: "bye", Code: code, Reason: reason}, websocket.ClosePolicyViolation)
}

// checkSession says what is wrong with a hello's session id, or "".
func checkSession(session string) string {
	switch {
	case len(session) > eventlog.MaxSessionLen:
		return fmt.Sprintf("session is %d bytes; the limit is %d", len(session), eventlog.MaxSessionLen)
	case !utf8.ValidString(session):
		return "session is not valid UTF-8"
	case containsNUL(session):
		return "session contains a NUL byte"
	}
	return ""
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
	if c.timers.expiry != nil {
		c.timers.expiry.Stop()
	}
	c.timers.expiry = time.AfterFunc(time.Until(exp), func() {
		c.shutdown(&wire.Bye{Type: "bye", Code: wire.CodeTokenExpired, Reason: "the token expired; reconnect with a fresh one"}, websocket.ClosePolicyViolation)
	})
}

// schedulePing sends a WebSocket ping every heartbeat, and closes a connection from which
// nothing was heard for two.
func (c *conn) schedulePing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	hb := c.s.cfg.Heartbeat
	c.timers.pinger = time.AfterFunc(hb, func() {
		if time.Since(time.Unix(0, c.lastHeard.Load())) > 2*hb {
			c.closeSocket()
			return
		}
		if err := c.cc.WriteControl(wsio.AppendFrame(nil, wsio.OpPing, nil), c.s.cfg.StallTimeout); err != nil {
			c.closeSocket()
			return
		}
		c.schedulePing()
	})
}
