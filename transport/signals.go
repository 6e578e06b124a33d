package transport

import (
	"encoding/json"

	"golang.org/x/time/rate"

	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/wire"
)

// This file is the ephemeral side of a room: signals (awareness: cursors, selections, who is
// typing) relayed to the room's other members, never logged.

// MaxSignal bounds a signal's body, in bytes of JSON, as MaxPresence bounds a presence state.
const MaxSignal = MaxPresence

// signal relays a member's signal to the room's other members. It is answered (ok) only when it
// has a ref: a signal is best effort, and awareness sends many.
func (c *conn) signal(f *wire.ClientFrame) {
	if !c.joinedRoom(f, "sending signals to it") {
		return
	}
	body := json.RawMessage(f.Body)
	switch {
	case len(body) == 0:
		c.replyError(f.Ref, wire.CodeBadFrame, "a signal needs a body")
		return
	case len(body) > MaxSignal:
		c.replyError(f.Ref, wire.CodeFrameTooLarge, "signal body is %d bytes; the limit is %d", len(body), MaxSignal)
		return
	}
	if c.signalLimiter == nil && c.s.cfg.SignalRate > 0 {
		c.signalLimiter = rate.NewLimiter(rate.Limit(c.s.cfg.SignalRate), int(max(c.s.cfg.SignalRate, 1)))
	}
	if c.signalLimiter != nil && !c.signalLimiter.Allow() {
		c.replyError(f.Ref, wire.CodeRateLimited, "more than %g signals per second", c.s.cfg.SignalRate)
		return
	}
	c.s.metrics.signals.WithLabelValues("sent").Inc()
	c.s.hub.Signal(c, &rooms.Signal{Room: f.Room, User: c.user, Session: c.session, Body: body})
	if f.Ref != "" {
		c.reply(&wire.Reply{Type: wire.TypeOK, Ref: f.Ref, Room: f.Room})
	}
}

// Signal implements rooms.SignalReceiver: it queues the signal for the writer unless the
// connection has not (or no longer) joined the room, or its reply queue is full (best effort:
// a signal never waits, and never holds up the sender).
func (c *conn) Signal(s *rooms.Signal) {
	b, err := c.codec.Encode(&wire.Signal{Type: wire.TypeSignal, Room: s.Room, User: s.User, Session: s.Session, Body: wire.RawJSON(s.Body)})
	if err != nil {
		c.s.logger.Error("cannot encode a signal", "conn", c.id, "err", err)
		return
	}
	c.mu.Lock()
	_, joined := c.streams[s.Room]
	full := c.replyQueueFullLocked(len(b))
	ok := joined && !full && !c.closed && c.closing == nil
	if ok {
		c.replies.push(b)
		c.wakeWriterLocked()
	}
	c.mu.Unlock()
	switch {
	case ok:
		c.s.metrics.signals.WithLabelValues("delivered").Inc()
	case joined && full:
		c.s.metrics.signals.WithLabelValues("dropped").Inc()
	}
}
