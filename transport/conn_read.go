package transport

import (
	"errors"
	"io"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/roomlog/roomlog/eventlog"
)

// This file is the reading side of a connection: frames in, the handshake, handling in order,
// heartbeats.

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

// inboxLimit and inboxMaxBytes bound the frames read but not yet handled (one frame always
// fits); past them the read loop waits, and TCP pushes back on the client.
const (
	inboxLimit    = 256
	inboxMaxBytes = 1 << 20
)

// queueFrame hands a frame to the handler, starting it if needed; false means the connection is
// closing and reads should stop.
func (c *conn) queueFrame(data []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.inbox) > 0 && (len(c.inbox) >= inboxLimit || c.inboxBytes+len(data) > inboxMaxBytes) && c.closing == nil && !c.closed {
		c.cond.Wait()
	}
	if c.closing != nil || c.closed {
		return false
	}
	c.inbox = append(c.inbox, data)
	c.inboxBytes += len(data)
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
			c.inbox, c.inboxBytes = nil, 0
			c.handling = false
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		data := c.inbox[0]
		c.inboxBytes -= len(data)
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
