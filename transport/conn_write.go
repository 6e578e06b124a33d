package transport

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/wsio"
	"github.com/roomlog/roomlog/wire"
)

// This file is the writing side of a connection: replies and room events out, many frames per
// system call, slow consumers detected by a write that makes no progress.

// writeBatch bounds the events one room contributes to one write, so rooms take turns.
const writeBatch = 128

func (c *conn) writeLoop() {
	ctx := context.Background()
	for {
		c.mu.Lock()
		if !c.wakeup || c.closed {
			c.scratch, c.frames, c.frame = nil, nil, nil // an idle connection keeps no buffers
			c.writer.stopLocked()
			c.cond.Broadcast()
			c.mu.Unlock()
			c.cc.Release()
			return
		}
		c.wakeup = false
		replies := c.replies.take()
		c.cond.Broadcast()
		var streams []*roomStream
		if c.takeEventsLocked() {
			streams = make([]*roomStream, 0, len(c.order))
			for _, room := range c.order {
				streams = append(streams, c.streams[room])
			}
		}
		var closing *closeRequest
		if c.closing != nil && c.publishes.emptyLocked() {
			closing = c.closing
		}
		c.mu.Unlock()

		c.cc.Cork() // its writes time out after StallTimeout without progress
		err := c.writeReplies(replies)
		more, events := false, 0
		for _, rs := range streams {
			if err != nil || closing != nil {
				break
			}
			var m bool
			var n int
			n, m, err = c.writeRoom(ctx, rs)
			more, events = more || m, events+n
		}
		if err == nil && closing != nil {
			err = c.writeClose(closing)
		}
		if uerr := c.cc.Uncork(); err == nil {
			err = uerr
		}
		if err != nil || closing != nil {
			c.writeFailed(err, closing != nil)
			return
		}
		if more || events > 0 {
			c.mu.Lock()
			c.wroteEventsLocked(events, more)
			c.mu.Unlock()
		}
	}
}

func (c *conn) writeReplies(replies [][]byte) error {
	mt := c.codec.MessageType()
	for _, b := range replies {
		if err := c.writeMessage(mt, b); err != nil {
			return err
		}
	}
	return nil
}

// writeRoom writes the room's next events, n of them; more reports that it may have further
// ones now.
func (c *conn) writeRoom(ctx context.Context, rs *roomStream) (n int, more bool, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ended {
		return 0, false, nil
	}
	mt := c.codec.MessageType()
	// Events read from the log for this connection alone are encoded, inside the read, into a
	// reused buffer of frames, written after it.
	c.frames = c.frames[:0]
	shared, n, synced, err := rs.stream.Next(ctx, writeBatch, func(e *eventlog.Event) error {
		c.scratch = c.codec.appendEvent(c.scratch[:0], e)
		c.frames = wsio.AppendFrame(c.frames, mt, c.scratch)
		return nil
	})
	if err != nil {
		c.s.logger.Error("cannot read room events", "room", rs.stream.Room(), "err", err)
		return 0, false, nil // the stream keeps its cursor; the next wake-up retries
	}
	slot := c.codec.slot()
	for _, e := range shared {
		if err := c.cc.WriteFrame(e.Encoded(slot, c.frameEvent)); err != nil {
			return 0, false, err
		}
	}
	if len(c.frames) > 0 {
		if err := c.cc.WriteFrame(c.frames); err != nil {
			return 0, false, err
		}
		c.s.metrics.replayed.Add(float64(n))
	}
	c.s.metrics.deliveries.Add(float64(n))
	if synced {
		b, _ := c.codec.Encode(&wire.Synced{Type: "synced", Room: rs.stream.Room(), Cursor: rs.stream.Cursor().String()})
		if err := c.writeMessage(mt, b); err != nil {
			return 0, false, err
		}
	}
	return n, n == writeBatch || synced, nil
}

// frameEvent encodes an event as a whole WebSocket frame; the room's entry caches it per codec,
// so members of a room share one encoding.
func (c *conn) frameEvent(e *eventlog.Event) []byte {
	payload := c.codec.appendEvent(make([]byte, 0, 160+len(e.Body)), e)
	return wsio.AppendFrame(make([]byte, 0, len(payload)+10), c.codec.MessageType(), payload)
}

// writeMessage frames a payload into the connection's (corked) output.
func (c *conn) writeMessage(messageType int, payload []byte) error {
	c.frame = wsio.AppendFrame(c.frame[:0], messageType, payload)
	return c.cc.WriteFrame(c.frame)
}

func (c *conn) writeClose(cr *closeRequest) error {
	if cr.bye != nil {
		if err := c.writeMessage(c.codec.MessageType(), cr.bye); err != nil {
			return err
		}
	}
	return c.writeMessage(wsio.OpClose, wsio.ClosePayload(cr.closeCode, cr.reason))
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
	if hc, ok := c.cc.Conn.(interface{ CloseWrite() error }); ok && err == nil && closed {
		// Closing handshake: our close frame is out; send FIN and let the read side see the
		// client's close frame (the read loop, or cleanup's drain) before the socket goes.
		hc.CloseWrite()
		time.AfterFunc(closeLinger, c.closeSocket)
	} else {
		c.closeSocket() // the read side ends and cleans up
	}
	c.mu.Lock()
	c.writer.stopLocked()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
}
