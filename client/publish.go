package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/roomlog/roomlog/wire"
)

// Publish publishes body (any JSON value) to room with the given kind ("" for message) and
// returns once the server has acked it durably, or with a permanent error (forbidden, conflict,
// bad_frame, bad_room). Until then the publish stays in the outbox under an idempotency key and is
// resent after every reconnect, so it appears exactly once; it also survives a restart of the
// application with a file store (package filestore). Publishes to one room are acked in the order they were made.
//
// When ctx ends first, Publish returns ctx's error but the publish stays queued.
func (c *Client) Publish(ctx context.Context, room, kind string, body any) (Ack, error) {
	return c.PublishOutgoing(ctx, Outgoing{Room: room, Kind: kind}, body)
}

// PublishExpect is Publish with a conditional append: it applies only if the room's last event id
// is expect ("" for an empty room); otherwise the error is an *Error with Code "conflict" and the
// current Head.
func (c *Client) PublishExpect(ctx context.Context, room, kind string, body any, expect string) (Ack, error) {
	return c.PublishOutgoing(ctx, Outgoing{Room: room, Kind: kind, Expect: &expect}, body)
}

// PublishOutgoing publishes o (its Key and Body are filled in).
func (c *Client) PublishOutgoing(ctx context.Context, o Outgoing, body any) (Ack, error) {
	s, err := c.send(o, body)
	if err != nil {
		return Ack{}, err
	}
	return s.Wait(ctx)
}

// Sending is a publish on its way; Wait for its ack.
type Sending struct {
	c *Client
	p *pending
}

// Key is the publish's idempotency key.
func (s *Sending) Key() string { return s.p.o.Key }

// Wait returns the ack, a permanent error, or ctx's error (the publish then stays queued).
func (s *Sending) Wait(ctx context.Context) (Ack, error) {
	select {
	case r := <-s.p.done:
		s.p.done <- r // Wait may be called again
		return r.ack, r.err
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	case <-s.c.ctx.Done():
		return Ack{}, ErrClosed
	}
}

// Send queues a publish and returns without waiting for its ack: publishes sent one after
// another are appended in that order, however many are in flight. It is Publish without the
// wait, for pipelining (an editor sending keystrokes, a service streaming updates).
func (c *Client) Send(room, kind string, body any) (*Sending, error) {
	return c.send(Outgoing{Room: room, Kind: kind}, body)
}

func (c *Client) send(o Outgoing, body any) (*Sending, error) {
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		o.Body = b
	}
	// The key and the outbox order are set under sendMu, so keys increase in send order.
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	o.Key = newKey()
	if err := c.store.AddOutgoing(o); err != nil {
		return nil, err
	}
	p := &pending{o: o, done: make(chan result, 1)}
	c.mu.Lock()
	c.outbox = append(c.outbox, p)
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.write(p.frame()) // a failure reconnects, and the outbox is resent then
	}
	return &Sending{c: c, p: p}, nil
}

// Pending is the number of publishes waiting for their ack.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

func (p *pending) frame() wire.ClientFrame {
	return wire.ClientFrame{Type: wire.TypePublish, Ref: p.o.Key, Room: p.o.Room, Key: p.o.Key, Kind: p.o.Kind,
		Body: wire.RawJSON(p.o.Body), Expect: p.o.Expect}
}

// take removes the outbox entry with key.
func (c *Client) take(key string) *pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.outbox {
		if p.o.Key == key {
			c.outbox = append(c.outbox[:i:i], c.outbox[i+1:]...)
			return p
		}
	}
	return nil
}

func (c *Client) acked(f frame) {
	p := c.take(f.Ref)
	if p == nil {
		return // a resend's second ack
	}
	if err := c.store.RemoveOutgoing(p.o.Key); err != nil {
		c.logger.Warn("roomlog cannot update the outbox", "err", err)
	}
	p.done <- result{ack: Ack{Room: f.Room, ID: f.ID, Key: p.o.Key, Duplicate: f.Duplicate}}
}

// publishFailed handles an error answering a publish; false when the error is not for one.
func (c *Client) publishFailed(f frame) bool {
	key := f.Ref
	c.mu.Lock()
	var p *pending
	for _, q := range c.outbox {
		if q.o.Key == key {
			p = q
			break
		}
	}
	c.mu.Unlock()
	if p == nil {
		return false
	}
	e := errorOf(f)
	if e.Temporary() {
		// Resend after a pause, on whatever connection is current then.
		time.AfterFunc(c.backoff(3), func() {
			c.mu.Lock()
			cn := c.conn
			c.mu.Unlock()
			if cn != nil && c.ctx.Err() == nil {
				c.sendMu.Lock()
				cn.write(p.frame())
				c.sendMu.Unlock()
			}
		})
		return true
	}
	// A permanent refusal: not retried.
	c.take(key)
	if err := c.store.RemoveOutgoing(key); err != nil {
		c.logger.Warn("roomlog cannot update the outbox", "err", err)
	}
	p.done <- result{err: e}
	return true
}

// IsPermanent reports whether err is a server refusal that retrying will not change.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && !e.Temporary()
}

// ErrDeliveryUncertain is wrapped by the error of a publish the client stopped resending because
// it is older than the server's key retention: it may or may not be in the log (see
// Options.Uncertain).
var ErrDeliveryUncertain = errors.New("roomlog: delivery uncertain")

// handBackUncertain takes out of the outbox every entry too old to resend safely under a key
// retention of retention, and hands each to the application. A minute (or a tenth of a short
// retention) is kept in hand for the clocks of client and server to differ.
func (c *Client) handBackUncertain(retention time.Duration) {
	if retention <= 0 {
		return
	}
	cutoff := time.Now().Add(-retention + min(time.Minute, retention/10))
	c.mu.Lock()
	var old []*pending
	keep := make([]*pending, 0, len(c.outbox))
	for _, p := range c.outbox {
		if keyTime(p.o.Key).Before(cutoff) {
			old = append(old, p)
		} else {
			keep = append(keep, p)
		}
	}
	c.outbox = keep
	c.mu.Unlock()
	for _, p := range old {
		if err := c.store.RemoveOutgoing(p.o.Key); err != nil {
			c.logger.Warn("roomlog cannot update the outbox", "err", err)
		}
		// Uncertain first: the application has been told by the time the publish's Wait returns.
		if c.opts.Uncertain != nil {
			c.opts.Uncertain(p.o)
		} else {
			c.logger.Warn("roomlog dropped a publish older than the server's key retention: it may be in the log or not",
				"room", p.o.Room, "key", p.o.Key, "body_bytes", len(p.o.Body), "retention", retention)
		}
		p.done <- result{err: fmt.Errorf("%w: publish %s to %q is older than the server's key retention (%s); it may be in the log or not",
			ErrDeliveryUncertain, p.o.Key, p.o.Room, retention)}
	}
}

// keyTime is when a publish was made, from its key (a ULID); the zero time for a key that is not
// one (an entry written by something else), which is then treated as old.
func keyTime(key string) time.Time {
	id, err := ulid.ParseStrict(key)
	if err != nil {
		return time.Time{}
	}
	return ulid.Time(id.Time())
}
