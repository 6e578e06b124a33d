package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/roomlog/roomlog/wire"
)

// JoinOptions configure Join.
type JoinOptions struct {
	// Handler receives the room's events in order, each once, on the client's read goroutine
	// (keep it quick). Without a Handler, events go to Room.Events.
	Handler func(Event)
	// Buffer is the capacity of Room.Events (default 1024). A full channel pauses reading, and
	// the server then holds the room's events for this client in its log, not in memory.
	Buffer int
	// FromStart replays the room from its first event when the client has no cursor for it.
	// Otherwise a room without a cursor is joined live.
	FromStart bool
	// FromSnapshot starts a room the client has no cursor for at its latest snapshot: the
	// snapshot event, then every event after it (the whole room when it has none). It wins over
	// FromStart. For long documents: a newcomer need not replay every edit.
	FromSnapshot bool
	// OnSignal receives the room's signals (ephemeral messages from other members, never
	// logged), on the client's read goroutine (keep it quick). Without it they are dropped.
	OnSignal func(Signal)
	// Presence is this session's presence state in the room (any JSON value).
	Presence any
}

// Signal is an ephemeral message from a member of a room: not logged, no id, best effort.
type Signal struct {
	Room, User, Session string
	Body                json.RawMessage
}

// Member is a session in a room, with its presence state.
type Member struct {
	User, Session string
	Presence      json.RawMessage
}

// Room is a joined room. It stays joined across reconnects until Leave.
type Room struct {
	c        *Client
	name     string
	handler  func(Event)
	onSignal func(Signal)
	events   chan Event
	presence json.RawMessage

	mu           sync.Mutex
	cursor       string // the id of the last event delivered
	fromStart    bool
	fromSnapshot bool
	acked        string // the last cursor acked to the server
	members      map[[2]string]json.RawMessage
	joinedCh     chan struct{} // closed at the first joined
	syncedCh     chan struct{} // closed at the first synced
	joinedErr    error
	left         bool
	// live is set from each synced until the next joined: the events before it are a replay,
	// older than the members joined listed, and do not change the member list.
	live bool
	// unknownCursor is set when the server did not know the cursor of the latest (re)join.
	unknownCursor bool
	// membersTruncated and memberCount: the latest joined listed only some of memberCount members.
	membersTruncated bool
	memberCount      int
	// cursorTooOld and snapshot: the latest (re)join's replay started at this snapshot, because
	// the client asked (FromSnapshot) or because a compaction removed what followed its cursor.
	cursorTooOld bool
	snapshot     string
	// joinRetries counts the joins refused in a row as not decided now: the next retry's backoff.
	joinRetries int
	// removed is why the server removed this session from the room ("" while a member).
	removed string
}

// Join joins room and returns once the server has answered. Events after the client's cursor for
// the room (from the Store) are delivered first, then live ones.
func (c *Client) Join(ctx context.Context, room string, opts JoinOptions) (*Room, error) {
	cursor, err := c.store.Cursor(room)
	if err != nil {
		return nil, err
	}
	r := &Room{
		c: c, name: room, handler: opts.Handler, onSignal: opts.OnSignal, cursor: cursor,
		fromStart: opts.FromStart, fromSnapshot: opts.FromSnapshot,
		acked: cursor, members: map[[2]string]json.RawMessage{},
		joinedCh: make(chan struct{}), syncedCh: make(chan struct{}),
	}
	if opts.Presence != nil {
		if r.presence, err = json.Marshal(opts.Presence); err != nil {
			return nil, err
		}
	}
	if r.handler == nil {
		r.events = make(chan Event, max(opts.Buffer, 1024))
	}
	// Registered under sendMu: a connection being set up either includes this room in its
	// rejoins or is current by the time we look, and then we send the join ourselves.
	c.sendMu.Lock()
	c.mu.Lock()
	if _, dup := c.rooms[room]; dup {
		c.mu.Unlock()
		c.sendMu.Unlock()
		return nil, errors.New("roomlog: room already joined")
	}
	c.rooms[room] = r
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.write(r.joinFrame()) // a failure reconnects, and the rejoin sends it again
	}
	c.sendMu.Unlock()
	select {
	case <-r.joinedCh:
	case <-ctx.Done():
		c.dropRoom(room)
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, ErrClosed
	}
	if r.joinedErr != nil {
		c.dropRoom(room)
		return nil, r.joinedErr
	}
	return r, nil
}

// joinFrame is the join to send now: after the last delivered event when there is one.
func (r *Room) joinFrame() wire.ClientFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := wire.ClientFrame{Type: wire.TypeJoin, Ref: "join:" + r.name, Room: r.name, Presence: wire.RawJSON(r.presence)}
	if r.cursor == "" && r.fromSnapshot {
		f.From = wire.FromSnapshot
		return f
	}
	if r.cursor != "" || r.fromStart {
		after := r.cursor // "": the whole room
		f.After = &after
	}
	return f
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Events is the room's events when Join had no Handler.
func (r *Room) Events() <-chan Event { return r.events }

// Cursor is the id of the last event delivered.
func (r *Room) Cursor() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursor
}

// UnknownCursor reports whether the server did not find the client's cursor in the room at the
// latest join or rejoin (a restored or replaced data file): the events delivered since are every
// event after the cursor, or after the head when the cursor was past it, and some before may be
// missing. The client also logs it as a warning.
func (r *Room) UnknownCursor() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unknownCursor
}

// Synced is closed once the client has caught up with the room (the first synced frame).
func (r *Room) Synced() <-chan struct{} { return r.syncedCh }

// MembersTruncated reports whether the server listed only some of the room's members at the
// latest join or rejoin (its bound on a joined frame: --max-members-listed), and how many the room
// had then. Members lists those it listed, and those who joined since.
func (r *Room) MembersTruncated() (truncated bool, count int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.membersTruncated, r.memberCount
}

// CursorTooOld reports whether, at the latest join or rejoin, a compaction had removed what
// followed the client's cursor: the replay then started at the room's latest snapshot (Snapshot),
// whose body is the state to start from, never a silent gap.
func (r *Room) CursorTooOld() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursorTooOld
}

// Snapshot is the id of the snapshot the latest join's replay started with (FromSnapshot, or a
// cursor too old), or "".
func (r *Room) Snapshot() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot
}

// Signal sends an ephemeral message to the room's other members now (awareness: a cursor, a
// selection). It is never logged nor queued: without a connection it fails, and a member whose
// queue is full misses it.
func (r *Room) Signal(body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	select {
	case <-r.joinedCh:
	default:
		return errors.New("roomlog: signal before the room is joined")
	}
	r.c.mu.Lock()
	cn := r.c.conn
	r.c.mu.Unlock()
	if cn == nil {
		return ErrNotConnected
	}
	return cn.write(wire.ClientFrame{Type: wire.TypeSignal, Room: r.name, Body: wire.RawJSON(b)})
}

// signal hands a signal frame to the room's OnSignal.
func (c *Client) signal(f frame) {
	r := c.room(f.Room)
	if r == nil || r.onSignal == nil {
		return
	}
	r.onSignal(Signal{Room: f.Room, User: f.User, Session: f.Session, Body: f.Body})
}

// Members lists the room's member sessions as the client last saw them.
func (r *Room) Members() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Member, 0, len(r.members))
	for k, p := range r.members {
		out = append(out, Member{User: k[0], Session: k[1], Presence: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User+"\x00"+out[i].Session < out[j].User+"\x00"+out[j].Session })
	return out
}

// SetPresence replaces this session's presence state in the room.
func (r *Room) SetPresence(ctx context.Context, state any) error {
	b, err := json.Marshal(state)
	if err != nil {
		return err
	}
	if _, err := r.c.call(ctx, wire.ClientFrame{Type: wire.TypePresence, Room: r.name, State: b}); err != nil {
		return err
	}
	r.mu.Lock()
	r.presence = b // rejoins carry it
	r.mu.Unlock()
	return nil
}

// Leave leaves the room.
func (r *Room) Leave(ctx context.Context) error {
	r.c.dropRoom(r.name)
	_, err := r.c.call(ctx, wire.ClientFrame{Type: wire.TypeLeave, Room: r.name})
	var e *Error
	if errors.As(err, &e) && e.Code == wire.CodeNotJoined {
		return nil
	}
	return err
}

func (c *Client) room(name string) *Room {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[name]
}

func (c *Client) dropRoom(name string) {
	c.mu.Lock()
	r := c.rooms[name]
	delete(c.rooms, name)
	c.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		r.left = true
		r.mu.Unlock()
	}
}

// removed handles the server taking this session out of a room (an administrator removed the
// user): the room is dropped, never rejoined by the client, and Room.Removed says why.
func (c *Client) removed(f frame) {
	r := c.room(f.Room)
	if r == nil {
		return
	}
	c.dropRoom(f.Room)
	r.mu.Lock()
	r.removed = cmp.Or(f.Reason, "removed")
	r.mu.Unlock()
	c.logger.Warn("roomlog removed this session from the room; it is not rejoined", "room", f.Room, "reason", f.Reason)
}

// Removed is why the server took this session out of the room (an administrator removed the
// user: the document was unshared), or "" while it is a member. A removed room is not rejoined:
// Join it again when the application decides to.
func (r *Room) Removed() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removed
}

// joined handles a joined frame (first join or rejoin) or the error answering a join.
func (c *Client) joined(f frame) {
	r := c.room(f.Room)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live, r.joinRetries = false, 0
	clear(r.members)
	for _, m := range f.Members {
		r.members[[2]string{m.User, m.Session}] = json.RawMessage(m.Presence)
	}
	switch {
	case r.cursor == "" && f.ResumedFrom != "":
		// The server resumes the session from the cursor it recorded (this device lost its own):
		// the events after it are on their way and must be delivered, not skipped as seen.
		r.cursor = f.ResumedFrom
	case r.cursor == "" && !r.fromStart && !r.fromSnapshot:
		// A live join: events after the head come live; a rejoin after a drop must start here.
		r.cursor = f.Head
	}
	r.cursorTooOld, r.snapshot = f.CursorTooOld, f.Snapshot
	if r.cursorTooOld {
		c.logger.Warn("roomlog compacted the room past this client's cursor: the replay starts at its latest snapshot (apply it as the room's state)",
			"room", r.name, "cursor", r.cursor, "snapshot", f.Snapshot)
	}
	r.membersTruncated, r.memberCount = f.MembersTruncated, len(f.Members)
	if f.MembersTruncated {
		r.memberCount = f.MemberCount
	}
	r.unknownCursor = f.UnknownCursor
	if r.unknownCursor {
		c.logger.Warn("roomlog does not know this client's cursor for the room: events may have been missed (a restored or replaced data file?)",
			"room", r.name, "cursor", r.cursor, "head", f.Head)
		if r.cursor > f.Head {
			// A cursor past the head: the server sends what follows its head; take that as new.
			r.cursor = f.Head
		}
	}
	select {
	case <-r.joinedCh:
	default:
		close(r.joinedCh)
	}
}

// joinFailed handles an error answering a join: the room is not joined, or, for a temporary
// refusal (unavailable), not yet.
func (c *Client) joinFailed(f frame) {
	name := strings.TrimPrefix(f.Ref, "join:")
	r := c.room(name)
	if r == nil {
		return
	}
	if errorOf(f).Temporary() {
		c.retryJoin(r, f.Code)
		return
	}
	c.dropRoom(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.joinedCh:
		c.logger.Warn("roomlog rejoin refused; the room is dropped", "room", name, "code", f.Code, "message", f.Message)
	default:
		r.joinedErr = errorOf(f)
		close(r.joinedCh)
	}
}

// retryJoin sends r's join again after a backoff, on whatever connection is current then: the
// server could not decide it now (unavailable) or was busy. Join keeps waiting meanwhile.
func (c *Client) retryJoin(r *Room, code string) {
	r.mu.Lock()
	r.joinRetries++
	wait := c.backoff(r.joinRetries)
	r.mu.Unlock()
	c.logger.Info("roomlog join not decided; retrying", "room", r.name, "code", code, "after", wait)
	time.AfterFunc(wait, func() {
		c.mu.Lock()
		cn, current := c.conn, c.rooms[r.name] == r
		c.mu.Unlock()
		if cn != nil && current && c.ctx.Err() == nil {
			c.sendMu.Lock()
			cn.write(r.joinFrame())
			c.sendMu.Unlock()
		}
	})
}

func (r *Room) setSynced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = true
	select {
	case <-r.syncedCh:
	default:
		close(r.syncedCh)
	}
}

// eventOf is the application's view of an event frame; its time comes from the event's id.
func eventOf(e wire.Event) Event {
	ev := Event{Room: e.Room, ID: e.ID, Kind: e.Kind, User: e.User, Session: e.Session, Key: e.Key, Body: e.Body}
	if id, err := ulid.ParseStrict(e.ID); err == nil {
		ev.Time = ulid.Time(id.Time()).UTC()
	}
	return ev
}

// deliverEvent hands an event to the application once: an event at or before the cursor (a
// rejoin overlapping what was delivered) is dropped.
func (c *Client) deliverEvent(ev Event) {
	r := c.room(ev.Room)
	if r == nil {
		return
	}
	r.mu.Lock()
	if ev.ID <= r.cursor || r.left {
		r.mu.Unlock()
		return
	}
	switch {
	case !r.live: // a replayed event is older than the member list joined gave
	case ev.Kind == "join" || ev.Kind == "presence":
		r.members[[2]string{ev.User, ev.Session}] = ev.Body
	case ev.Kind == "leave":
		delete(r.members, [2]string{ev.User, ev.Session})
	}
	r.cursor = ev.ID
	r.mu.Unlock()
	if r.handler != nil {
		r.handler(ev)
	} else {
		select {
		case r.events <- ev:
		case <-c.ctx.Done():
		}
	}
}

// sendAcks acks each room's delivered events to the server and saves the cursors.
func (c *Client) sendAcks(cn *conn) {
	c.mu.Lock()
	rooms := make([]*Room, 0, len(c.rooms))
	for _, r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	for _, r := range rooms {
		r.mu.Lock()
		cursor, acked := r.cursor, r.acked
		r.mu.Unlock()
		if cursor == "" || cursor == acked {
			continue
		}
		if err := c.store.SetCursor(r.name, cursor); err != nil {
			c.logger.Warn("roomlog cannot save a cursor", "room", r.name, "err", err)
		}
		if cn != nil {
			c.sendMu.Lock()
			err := cn.write(wire.ClientFrame{Type: wire.TypeAck, Room: r.name, ID: cursor})
			c.sendMu.Unlock()
			if err != nil {
				return
			}
		}
		r.mu.Lock()
		r.acked = cursor
		r.mu.Unlock()
	}
}

// flushAcks saves the cursors at Close.
func (c *Client) flushAcks() { c.sendAcks(nil) }
