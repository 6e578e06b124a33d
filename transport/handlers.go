package transport

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/wire"
)

// opTimeout bounds the log operations one client frame waits for.
const opTimeout = 30 * time.Second

// handle answers one client frame. A bad frame gets an error and changes nothing.
func (c *conn) handle(f *wire.ClientFrame) {
	switch f.Type {
	case "join":
		c.join(f)
	case "leave":
		c.leave(f)
	case "presence":
		c.presence(f)
	case "signal":
		c.signal(f)
	case "publish":
		c.publish(f)
	case "ack":
		c.receipt(f)
	case "history":
		c.history(f)
	case "refresh":
		c.refresh(f)
	case "ping":
		c.reply(&wire.Reply{Type: "pong", Ref: f.Ref})
	case "hello":
		c.replyError(f.Ref, wire.CodeBadFrame, "already authenticated")
	case "":
		c.s.metrics.badFrames.Inc()
		c.replyError(f.Ref, wire.CodeBadFrame, "a frame needs a string field type")
	default:
		c.s.metrics.badFrames.Inc()
		c.replyError(f.Ref, wire.CodeBadFrame, "unknown frame type %q", f.Type)
	}
}

func (c *conn) grantsNow() auth.Grants {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grants
}

// actionContext is the context of the connection's room actions: it names the session, for an
// authoriser that asks the application.
func (c *conn) actionContext() context.Context {
	return rooms.WithSession(context.Background(), c.session)
}

// checkRoom validates the room name; false means an error was sent.
func (c *conn) checkRoom(f *wire.ClientFrame) bool {
	if err := eventlog.ValidRoom(f.Room); err != nil {
		c.replyError(f.Ref, wire.CodeBadRoom, "%v", err)
		return false
	}
	return true
}

// authorized checks the room name and asks the hub whether the connection may take action on
// the room (for doing what, in errors); false means an error was sent. No deadline is armed per
// frame: an Authorizer that calls out bounds its own time.
func (c *conn) authorized(f *wire.ClientFrame, action auth.Action, what string) bool {
	if !c.checkRoom(f) {
		return false
	}
	if err := c.s.hub.Authorize(c.actionContext(), c.grantsNow(), action, f.Room); err != nil {
		c.fail(f.Ref, f.Room, what, err)
		return false
	}
	return true
}

func (c *conn) join(f *wire.ClientFrame) {
	if !c.authorized(f, auth.Join, "join") {
		return
	}
	var after *eventlog.ID
	if f.After != nil {
		id, err := eventlog.ParseID(*f.After)
		if err != nil {
			c.replyError(f.Ref, wire.CodeBadFrame, "after: %v", err)
			return
		}
		after = &id
	}
	switch {
	case f.From != "" && f.From != wire.FromSnapshot:
		c.replyError(f.Ref, wire.CodeBadFrame, "from must be %q", wire.FromSnapshot)
		return
	case f.From != "" && after != nil:
		c.replyError(f.Ref, wire.CodeBadFrame, "a join has after or from, not both")
		return
	}
	if !c.checkPresence(f.Ref, json.RawMessage(f.Presence)) {
		return
	}
	c.mu.Lock()
	_, already := c.streams[f.Room]
	joined := len(c.streams)
	c.mu.Unlock()
	switch {
	case already:
		c.replyError(f.Ref, wire.CodeBadFrame, "already joined %q on this connection; leave first", f.Room)
		return
	case c.s.cfg.MaxRoomsPerConn > 0 && joined >= c.s.cfg.MaxRoomsPerConn:
		c.replyError(f.Ref, wire.CodeLimitExceeded, "this connection is joined to %d rooms, the most the server allows (--max-rooms-per-conn); leave one first", joined)
		return
	}
	if !c.allowWrite(f.Ref) { // a join appends its join event
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	j, err := replay.Resume(ctx, c.s.hub, c.s.cfg.Cursors, c, replay.JoinRequest{
		Room: f.Room, User: c.user, Session: c.session, Presence: json.RawMessage(f.Presence), After: after,
		FromSnapshot: f.From == wire.FromSnapshot,
	})
	if err != nil {
		c.fail(f.Ref, f.Room, "join", err)
		return
	}
	members, truncated := memberFrames(j.Members, c.s.cfg.MaxMembersListed)
	count := 0
	if truncated {
		count = len(j.Members)
	}
	joinedFrame, _ := c.codec.Encode(&wire.Joined{
		Type: "joined", Ref: f.Ref, Room: f.Room, Head: j.Head.String(), Members: members, MembersTruncated: truncated, MemberCount: count,
		ResumedFrom: j.Resumed.String(), UnknownCursor: j.Unknown, Unlogged: j.Rooms.Unlogged,
		CursorTooOld: j.TooOld, Snapshot: j.Snapshot.String(),
	})
	rs := &roomStream{stream: j.Stream}
	c.mu.Lock()
	// joined goes in the reply queue, in frame order with the other answers (a leave sent right
	// after it is answered after it), and the stream is added in the same critical section: the
	// writer takes both in one snapshot and writes replies first, so joined precedes the room's
	// first event.
	if !c.queueReplyLocked(joinedFrame) {
		c.mu.Unlock()
		j.Cancel()
		return
	}
	if c.streams == nil {
		c.streams = map[string]*roomStream{}
	}
	c.streams[f.Room] = rs
	c.order = append(c.order, f.Room)
	c.eventsDue, c.nextEvents = true, time.Time{} // the room's backlog starts at once
	c.mu.Unlock()
	c.s.metrics.joins.Inc()
}

// dropStream removes the room's stream from the connection; nil when it was not joined.
func (c *conn) dropStream(room string) *roomStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.streams[room]
	if rs == nil {
		return nil
	}
	delete(c.streams, room)
	for i, r := range c.order {
		if r == room {
			c.order = append(c.order[:i:i], c.order[i+1:]...)
			break
		}
	}
	return rs
}

func (c *conn) leave(f *wire.ClientFrame) {
	// Joined first, so that leaving a room the connection is not in spends no rate.
	if !c.joinedRoom(f, "leaving it") || !c.allowWrite(f.Ref) { // a leave appends its leave event
		return
	}
	rs := c.dropStream(f.Room)
	if rs == nil {
		c.replyError(f.Ref, wire.CodeNotJoined, "not joined to %q", f.Room)
		return
	}
	rs.end()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.s.hub.Leave(ctx, f.Room, c.user, c.session, true); err != nil && !errors.Is(err, rooms.ErrNotJoined) {
		c.fail(f.Ref, f.Room, "leave", err)
		return
	}
	c.reply(&wire.Reply{Type: "left", Ref: f.Ref, Room: f.Room})
}

// joinedRoom checks the room name and that this connection joined it (for doing what); false
// means an error was sent.
func (c *conn) joinedRoom(f *wire.ClientFrame, doing string) bool {
	if !c.checkRoom(f) {
		return false
	}
	c.mu.Lock()
	_, joined := c.streams[f.Room]
	c.mu.Unlock()
	if !joined {
		c.replyError(f.Ref, wire.CodeNotJoined, "join %q before %s", f.Room, doing)
	}
	return joined
}

func (c *conn) presence(f *wire.ClientFrame) {
	if !c.joinedRoom(f, "setting presence in it") {
		return
	}
	if !c.checkPresence(f.Ref, json.RawMessage(f.State)) || !c.allowWrite(f.Ref) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.s.hub.SetPresence(ctx, f.Room, c.user, c.session, json.RawMessage(f.State)); err != nil {
		if errors.Is(err, rooms.ErrNotJoined) {
			c.replyError(f.Ref, wire.CodeNotJoined, "not joined to %q", f.Room)
			return
		}
		c.fail(f.Ref, f.Room, "presence", err)
		return
	}
	c.reply(&wire.Reply{Type: "ok", Ref: f.Ref, Room: f.Room})
}

// allowWrite takes one from the connection's rate limit for a write to the log (a publish or a
// presence update), or answers rate_limited.
func (c *conn) allowWrite(ref string) bool {
	if c.limiter == nil && c.s.cfg.PublishRate > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(c.s.cfg.PublishRate), int(max(c.s.cfg.PublishRate, 1)))
	}
	if c.limiter != nil && !c.limiter.Allow() {
		c.s.metrics.appends.WithLabelValues("refused").Inc()
		c.replyError(ref, wire.CodeRateLimited, "more than %g writes per second (publishes, joins, leaves and presence updates)", c.s.cfg.PublishRate)
		return false
	}
	return true
}

// MaxPresence bounds a presence state (join or presence frame), in bytes of JSON: presence is
// written to the log by anyone who may read a room, so it must stay small.
const MaxPresence = 4 << 10

// checkPresence answers bad_frame for a presence state that is not JSON or too large.
func (c *conn) checkPresence(ref string, state json.RawMessage) bool {
	switch {
	case len(state) > 0 && !json.Valid(state):
		c.replyError(ref, wire.CodeBadFrame, "presence is not JSON")
	case len(state) > MaxPresence:
		c.replyError(ref, wire.CodeBadFrame, "presence is %d bytes; the limit is %d", len(state), MaxPresence)
	default:
		return true
	}
	return false
}

func (c *conn) publish(f *wire.ClientFrame) {
	if !c.checkRoom(f) {
		return
	}
	permit, err := c.s.hub.AuthorizePublish(c.actionContext(), c.grantsNow(), f.Room, f.Kind)
	if err != nil { // before the rate limit: a refused publish does not spend it
		c.fail(f.Ref, f.Room, "publish", err)
		return
	}
	if !c.allowWrite(f.Ref) {
		return
	}
	req := eventlog.AppendRequest{Room: f.Room, Kind: f.Kind, Session: c.session, Key: f.Key, Body: json.RawMessage(f.Body)}
	if f.Expect != nil {
		id, err := eventlog.ParseID(*f.Expect)
		if err != nil {
			c.replyError(f.Ref, wire.CodeBadFrame, "expect: %v", err)
			return
		}
		req.Expect = &id
	}
	// Queued in frame order, so the log applies this connection's publishes in the order sent.
	p, err := c.s.hub.Publish(permit, req)
	if err != nil {
		c.fail(f.Ref, f.Room, "publish", err)
		return
	}
	c.mu.Lock()
	c.publishes.pushLocked(inflight{ref: f.Ref, room: f.Room, pending: p, start: time.Now()}, &c.s.wg, c.ackLoop)
	c.mu.Unlock()
}

// ackLoop answers in-flight publishes in the order they were made, each once it is durable.
func (c *conn) ackLoop() {
	for {
		c.mu.Lock()
		in, ok := c.publishes.frontLocked()
		if !ok {
			if c.closing != nil {
				c.wakeWriterLocked() // the close was waiting for these acks
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		<-in.pending.Done()
		res, err := in.pending.Result()
		if err != nil {
			c.fail(in.ref, in.room, "publish", err)
		} else {
			outcome := "appended"
			if res.Duplicate {
				outcome = "duplicate"
			}
			c.s.metrics.appends.WithLabelValues(outcome).Inc()
			c.s.metrics.appendLatency.Observe(time.Since(in.start).Seconds())
			c.reply(&wire.Ack{Type: "ack", Ref: in.ref, Room: in.room, ID: res.Event.ID.String(), Duplicate: res.Duplicate})
		}
		c.mu.Lock()
		c.publishes.popLocked()
		c.mu.Unlock()
	}
}

// receipt records the receipt cursor of a client's ack frame. Receipts are coalesced per room
// and written by one goroutine at a time, so a client acking often costs a few commits, not one
// per frame.
func (c *conn) receipt(f *wire.ClientFrame) {
	if !c.checkRoom(f) {
		return
	}
	id, err := eventlog.ParseID(f.ID)
	if err != nil || id.IsZero() {
		c.replyError(f.Ref, wire.CodeBadFrame, "ack needs the id of an event")
		return
	}
	if !c.authorized(f, auth.Receipt, "ack") {
		return
	}
	// A recorded cursor past the head would mute every later resume of the session.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	head, err := c.s.log.Head(ctx, f.Room)
	cancel()
	if err != nil {
		c.fail(f.Ref, f.Room, "ack", err)
		return
	}
	if id.Compare(head.ID) > 0 {
		c.replyError(f.Ref, wire.CodeBadFrame, "ack %s is past the head of %q (%s); not recorded", id, f.Room, head.ID)
		return
	}
	c.mu.Lock()
	c.receipts.noteLocked(f.Room, id, &c.s.wg, c.recordReceipts)
	c.mu.Unlock()
}

func (c *conn) recordReceipts() {
	for {
		c.mu.Lock()
		acks := c.receipts.takeLocked()
		c.mu.Unlock()
		if acks == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		for room, id := range acks {
			if err := c.s.cfg.Cursors.SetCursor(ctx, c.user, c.session, room, id); err != nil && !errors.Is(err, eventlog.ErrClosed) {
				c.s.logger.Warn("cannot record ack", "room", room, "user", c.user, "err", err)
			}
		}
		cancel()
	}
}

// Limits of the history frame.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
)

func (c *conn) history(f *wire.ClientFrame) {
	if !c.authorized(f, auth.History, "history") {
		return
	}
	if f.Snapshot {
		c.latestSnapshot(f)
		return
	}
	before, err := eventlog.ParseID(f.Before)
	if err != nil {
		c.replyError(f.Ref, wire.CodeBadFrame, "before: %v", err)
		return
	}
	limit := defaultHistoryLimit
	if f.Limit != nil {
		if *f.Limit <= 0 {
			c.replyError(f.Ref, wire.CodeBadFrame, "limit must be positive")
			return
		}
		limit = min(*f.Limit, maxHistoryLimit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// One more than asked says whether there are older ones.
	evs, err := c.s.log.ReadBefore(ctx, f.Room, before, limit+1)
	if err != nil {
		c.fail(f.Ref, f.Room, "history", err)
		return
	}
	more := len(evs) > limit
	evs = evs[len(evs)-min(len(evs), limit):]
	// The page is bounded in bytes too (max_frame, at least one event): the newest events are
	// kept, so the client pages on from the first one it got.
	encoded := make([][]byte, len(evs))
	first, size := len(evs), 0
	for i := len(evs) - 1; i >= 0; i-- {
		encoded[i] = c.codec.appendEvent(nil, &evs[i])
		if size += len(encoded[i]); size > c.s.cfg.MaxFrame && first < len(evs) {
			more = true
			break
		}
		first = i
	}
	out := make([]any, 0, len(evs)-first)
	for _, b := range encoded[first:] {
		out = append(out, c.codec.rawEvent(b))
	}
	c.reply(&wire.History{Type: "history", Ref: f.Ref, Room: f.Room, Events: out, More: more})
}

func (c *conn) refresh(f *wire.ClientFrame) {
	claims, err := c.s.auth.Verify(f.Token)
	if err != nil {
		c.s.metrics.authFailures.Inc()
		code := wire.CodeForbidden
		if errors.Is(err, auth.ErrTokenRevoked) {
			code = wire.CodeTokenRevoked
		}
		c.replyError(f.Ref, code, "%v", err) // it says "token refused: ..." itself
		return
	}
	if claims.Subject != c.user {
		c.s.metrics.authFailures.Inc()
		c.replyError(f.Ref, wire.CodeForbidden, "the new token is for %q, this connection is %q", claims.Subject, c.user)
		return
	}
	g := claims.Grants()
	c.mu.Lock()
	c.grants, c.claims = g, claims
	joined := slices.Clone(c.order)
	c.mu.Unlock()
	c.armExpiry(claims.Expiry())
	// Rooms the new token no longer allows are left (not those that cannot be decided now).
	for _, room := range joined {
		if err := c.s.hub.Authorize(c.actionContext(), g, auth.Join, room); !errors.Is(err, auth.ErrForbidden) {
			continue
		}
		if rs := c.dropStream(room); rs != nil {
			rs.end()
			c.s.hub.Leave(context.Background(), room, c.user, c.session, true)
			c.reply(&wire.Reply{Type: "left", Room: room})
		}
	}
	c.reply(&wire.Reply{Type: "ok", Ref: f.Ref})
}

// latestSnapshot answers a history frame with "snapshot": true: the room's latest snapshot as a
// page of one event, or of none.
func (c *conn) latestSnapshot(f *wire.ClientFrame) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	out := []any{}
	snap, found, err := c.s.log.LatestSnapshot(ctx, f.Room)
	if err != nil {
		c.fail(f.Ref, f.Room, "history", err)
		return
	}
	if found {
		out = append(out, c.codec.rawEvent(c.codec.appendEvent(nil, &snap)))
	}
	c.reply(&wire.History{Type: "history", Ref: f.Ref, Room: f.Room, Events: out})
}
