package rooms

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
)

// Defaults for Options, and the value that turns the grace period off.
const (
	DefaultGrace    = 30 * time.Second
	DefaultRingSize = 256
	NoGrace         = time.Duration(-1)
)

// Options configure a Hub. The zero value gives the defaults.
type Options struct {
	// Grace is how long a disconnected session stays a member before its leave event is
	// appended: a quick reconnect makes no leave/join pair. 0 means DefaultGrace (30 s); NoGrace
	// (any negative value) means none: the leave is appended at the disconnect.
	Grace time.Duration
	// RingSize is how many recent events each active room keeps in memory for its members. 0 or
	// negative means DefaultRingSize (256). A member whose cursor is older than the ring reads
	// the log instead, so a small ring costs reads, never events.
	RingSize int
	// Logger gets what the hub reports (a leave it could not append). Default slog.Default().
	Logger *slog.Logger
	// Relay, when set, carries signals to and from the other nodes sharing the log. Default
	// none: signals reach this node's members only.
	Relay Relay
	// Authorizer, when set, decides room actions instead of the token's grants alone (the
	// application's hooks). Default: auth.Grants.Authorize.
	Authorizer Authorizer
}

// Authorizer decides whether the holder of grants may take action on room: nil, or an error
// wrapping auth.ErrForbidden that says why not. A decision it cannot make must fail closed, and
// one that calls out bounds its own time (callers pass no deadline per action).
type Authorizer interface {
	Authorize(ctx context.Context, g auth.Grants, action auth.Action, room string) error
}

// WithSession is ctx carrying the session that asks for a room action, for an Authorizer that
// tells the application (transport sets it for a connection's actions; HTTP requests have none).
func WithSession(ctx context.Context, session string) context.Context {
	return context.WithValue(ctx, sessionKey{}, session)
}

// SessionOf is the session WithSession put in ctx, or "".
func SessionOf(ctx context.Context) string {
	s, _ := ctx.Value(sessionKey{}).(string)
	return s
}

type sessionKey struct{}

// ErrNotJoined is returned for presence updates by a session that is not a member.
var ErrNotJoined = errors.New("not joined")

// ErrForbidden is returned for what the caller's grants do not allow (auth.ErrForbidden).
var ErrForbidden = auth.ErrForbidden

// Hub owns the rooms of this node: who is a member, their presence, and the feed that fans each
// room's new events out to its local subscribers.
//
// Lock order: Hub.mu is never held while a Room's mu is taken (lock looks the room up, releases
// Hub.mu, then locks the room); a Room's mu is taken before its feed's (Subscribe, Close).
type Hub struct {
	log    eventlog.Store
	opts   Options
	logger *slog.Logger

	mu    sync.Mutex
	rooms map[string]*Room
}

// Room is one room's state on this node.
//
// Invariant: a Room is in hub.rooms exactly while gone is false. forget sets gone with r.mu held
// when it deletes the room, so whoever locks a Room found in the map checks gone before using it
// (lock does), and nobody is ever added to a room the hub has dropped.
type Room struct {
	name string
	hub  *Hub

	mu      sync.Mutex
	gone    bool
	members map[memberKey]*member
	feed    *feed // nil while nobody subscribes
	subs    int
}

type memberKey struct{ user, session string }

type member struct {
	presence json.RawMessage
	refs     int           // joins not yet left, across connections
	leave    *time.Timer   // pending leave after the grace period
	ready    chan struct{} // closed once the join event is durable
	joinErr  error
	unlogged bool // the log refused the join event: no leave is written either
}

// Joined is what Join did.
type Joined struct {
	// Event is the join event's id; zero when none was appended (the session was already a
	// member, or Unlogged).
	Event eventlog.ID
	// Unlogged is set when the session became a member although the log refused its join event
	// (eventlog.ErrFailed: a failed disk, a full one). Reading a room must not depend on the
	// disk taking writes, so such a member is joined, listed and fanned out to as any other;
	// neither its join nor its leave is in the log, which keeps the log's sessions balanced.
	Unlogged bool
}

// Member is a room member session and its latest presence state (JSON, or nil).
type Member struct {
	User, Session string
	Presence      json.RawMessage
}

// NewHub returns a Hub appending to log.
func NewHub(log eventlog.Store, opts Options) *Hub {
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.RingSize <= 0 {
		opts.RingSize = DefaultRingSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Hub{log: log, opts: opts, logger: opts.Logger, rooms: map[string]*Room{}}
}

// Log is the hub's event log.
func (h *Hub) Log() eventlog.Store { return h.log }

// lock returns the room named name, created if needed, with r.mu held and r in the hub.
func (h *Hub) lock(name string) *Room {
	for {
		h.mu.Lock()
		r := h.rooms[name]
		if r == nil {
			r = &Room{name: name, hub: h, members: map[memberKey]*member{}}
			h.rooms[name] = r
		}
		h.mu.Unlock()
		r.mu.Lock()
		if !r.gone {
			return r
		}
		r.mu.Unlock() // forgotten between the lookup and the lock: look again
	}
}

// forget drops an idle room (no members, no subscribers). Called with r.mu held.
func (h *Hub) forget(r *Room) {
	if len(r.members) > 0 || r.subs > 0 || r.gone {
		return
	}
	r.gone = true
	h.mu.Lock()
	delete(h.rooms, r.name)
	h.mu.Unlock()
}

// Join makes (user, session) a member of room. A session that is not yet a member gets a join
// event (body: presence) appended durably first; one that is (another connection, or a
// reconnect within the grace period) does not.
func (h *Hub) Join(ctx context.Context, room, user, session string, presence json.RawMessage) (Joined, error) {
	r := h.lock(room)
	key := memberKey{user, session}
	if m := r.members[key]; m != nil {
		m.refs++
		if m.leave != nil {
			m.leave.Stop()
			m.leave = nil
		}
		r.mu.Unlock()
		// Not bounded by ctx: the first join's append is bounded by its own, and a join given up
		// here would hold a reference nobody drops.
		<-m.ready
		if m.joinErr != nil {
			r.mu.Lock()
			m.refs--
			r.mu.Unlock()
			return Joined{}, m.joinErr
		}
		return Joined{Unlogged: m.unlogged}, nil
	}
	m := &member{presence: presence, refs: 1, ready: make(chan struct{})}
	r.members[key] = m
	r.mu.Unlock()

	res, err := h.log.Append(ctx, eventlog.AppendRequest{
		Room: room, User: user, Session: session, Kind: eventlog.KindJoin, Body: presence, System: true,
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	defer close(m.ready)
	switch {
	case err == nil:
		m.presence = res.Event.Body
		return Joined{Event: res.Event.ID}, nil
	case errors.Is(err, eventlog.ErrFailed):
		m.unlogged = true
		h.logger.Debug("join not logged: the event log refuses appends", "room", room, "user", user, "session", session, "err", err)
		return Joined{Unlogged: true}, nil
	default:
		m.joinErr = fmt.Errorf("rooms: join %s: %w", room, err)
		delete(r.members, key)
		h.forget(r)
		return Joined{}, m.joinErr
	}
}

// A Permit is the hub's decision that a user may publish events of one kind to one room
// (AuthorizePublish). Publish takes it: a publish is decided once, before the caller spends its
// rate on it, and nothing is appended undecided. The zero Permit allows nothing.
type Permit struct {
	user, room, kind string
	grants           auth.Grants // for a PublishChecker
	session          string
}

// AuthorizePublish decides whether the holder of g may publish an event of kind to room
// (Authorize with auth.Publish, or auth.Snapshot for snapshots).
func (h *Hub) AuthorizePublish(ctx context.Context, g auth.Grants, room, kind string) (Permit, error) {
	if err := h.Authorize(ctx, g, auth.PublishAction(kind), room); err != nil {
		return Permit{}, err
	}
	return Permit{user: g.User, room: room, kind: kind, grants: g, session: SessionOf(ctx)}, nil
}

// Publish appends a client's event under p: the one way clients publish, over the WebSocket and
// the HTTP API alike. The event's user is the permit's; reserved kinds stay reserved (req.System
// is cleared). A request for another room or kind than p's is refused at once (ErrForbidden);
// the append's own outcome comes through the Pending, so a connection can pipeline its publishes
// in order.
func (h *Hub) Publish(p Permit, req eventlog.AppendRequest) (*eventlog.Pending, error) {
	if p.user == "" || p.room != req.Room || p.kind != req.Kind {
		return nil, &auth.Refusal{Reason: fmt.Sprintf("no permit to publish %q events to %q", req.Kind, req.Room)}
	}
	req.User, req.System = p.user, false
	if c, ok := h.opts.Authorizer.(PublishChecker); ok {
		ctx := WithSession(context.Background(), p.session) // the checker bounds its own time
		if err := c.CheckPublish(ctx, p.grants, req.Room, req.Kind, req.Body); err != nil {
			return nil, err
		}
	}
	return h.log.AppendAsync(req), nil
}

// PublishChecker is an Authorizer that also checks each event before Publish appends it (the
// application's per-event hook). CheckPublish returns nil, an error wrapping ErrForbidden, or
// one wrapping auth.ErrUnavailable when it cannot decide; it bounds its own time.
type PublishChecker interface {
	CheckPublish(ctx context.Context, g auth.Grants, room, kind string, body json.RawMessage) error
}

// Authorize decides whether the holder of g may take action on room: the one place every room
// action is decided, over the WebSocket and the HTTP API alike (Options.Authorizer, or the
// grants alone). It returns nil, or an error wrapping ErrForbidden that says why not.
func (h *Hub) Authorize(ctx context.Context, g auth.Grants, action auth.Action, room string) error {
	if auth.IsSystemRoom(room) && action != auth.Operate && (action != auth.Read || !g.Admin) {
		return &auth.Refusal{Reason: fmt.Sprintf("%q is one of the server's own rooms", room)}
	}
	if h.opts.Authorizer != nil {
		return h.opts.Authorizer.Authorize(ctx, g, action, room)
	}
	return g.Authorize(action, room)
}

// member finds a joined session. It returns with r.mu held when m is not nil; nil m (not a
// member) returns with it released.
func (h *Hub) member(room, user, session string) (r *Room, key memberKey, m *member) {
	r = h.lock(room)
	key = memberKey{user, session}
	if m = r.members[key]; m == nil || m.refs == 0 {
		h.forget(r)
		r.mu.Unlock()
		return r, key, nil
	}
	return r, key, m
}

// Leave drops one join of (user, session) in room. When it was the last, the session leaves: at
// once when immediate is set (an explicit leave), else after the grace period (a disconnect).
func (h *Hub) Leave(ctx context.Context, room, user, session string, immediate bool) error {
	r, key, m := h.member(room, user, session)
	if m == nil {
		return ErrNotJoined
	}
	m.refs--
	if m.refs > 0 {
		r.mu.Unlock()
		return nil
	}
	if !immediate && h.opts.Grace > 0 {
		m.leave = time.AfterFunc(h.opts.Grace, func() { h.expire(r, key, m) })
		r.mu.Unlock()
		return nil
	}
	delete(r.members, key)
	h.forget(r)
	r.mu.Unlock()
	if m.unlogged {
		return nil
	}
	return h.appendLeave(ctx, room, user, session)
}

// expire appends the leave of a member whose grace period ran out.
func (h *Hub) expire(r *Room, key memberKey, m *member) {
	r.mu.Lock()
	if r.members[key] != m || m.refs > 0 || m.leave == nil {
		r.mu.Unlock()
		return // rejoined in time, or already gone
	}
	delete(r.members, key)
	h.forget(r)
	r.mu.Unlock()
	if m.unlogged {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.appendLeave(ctx, r.name, key.user, key.session); err != nil && !errors.Is(err, eventlog.ErrClosed) {
		h.logger.Error("cannot append leave", "room", r.name, "user", key.user, "session", key.session, "err", err)
	}
}

func (h *Hub) appendLeave(ctx context.Context, room, user, session string) error {
	_, err := h.log.Append(ctx, eventlog.AppendRequest{
		Room: room, User: user, Session: session, Kind: eventlog.KindLeave, System: true,
	})
	return err
}

// Forgetter is an Authorizer that keeps decisions for reuse: Remove has it forget the removed
// user's decision for the room, so that a rejoin is decided afresh.
type Forgetter interface {
	Forget(user, room string)
}

// Remove takes every session of user out of room at once, whatever connections hold it and
// without a grace period, and appends a leave event per session whose body says who removed it
// and why: {"removed_by":..,"reason":..}. It returns the sessions removed. The connections of
// those sessions must stop delivering the room themselves (the transport does, telling each).
func (h *Hub) Remove(ctx context.Context, room, user, removedBy, reason string) ([]string, error) {
	r := h.lock(room)
	var removed []memberKey
	var logged []bool
	for key, m := range r.members {
		if key.user != user {
			continue
		}
		if m.leave != nil {
			m.leave.Stop()
		}
		delete(r.members, key)
		removed = append(removed, key)
		logged = append(logged, !m.unlogged)
	}
	h.forget(r)
	r.mu.Unlock()
	if f, ok := h.opts.Authorizer.(Forgetter); ok {
		f.Forget(user, room)
	}
	body, err := json.Marshal(map[string]string{"removed_by": removedBy, "reason": reason})
	if err != nil {
		return nil, err
	}
	sessions := make([]string, 0, len(removed))
	for i, key := range removed {
		sessions = append(sessions, key.session)
		if !logged[i] {
			continue
		}
		if _, err := h.log.Append(ctx, eventlog.AppendRequest{
			Room: room, User: user, Session: key.session, Kind: eventlog.KindLeave, Body: body, System: true,
		}); err != nil {
			return sessions, err
		}
	}
	return sessions, nil
}

// SetPresence replaces the presence state of a member session and appends a presence event.
func (h *Hub) SetPresence(ctx context.Context, room, user, session string, state json.RawMessage) (eventlog.Event, error) {
	r, _, m := h.member(room, user, session)
	if m == nil {
		return eventlog.Event{}, ErrNotJoined
	}
	r.mu.Unlock()
	res, err := h.log.Append(ctx, eventlog.AppendRequest{
		Room: room, User: user, Session: session, Kind: eventlog.KindPresence, Body: state, System: true,
	})
	if err != nil {
		return eventlog.Event{}, err
	}
	r.mu.Lock()
	m.presence = res.Event.Body
	r.mu.Unlock()
	return res.Event, nil
}

// Members lists the room's current members, by user then session: this node's, and, on a log
// several nodes share (eventlog.Membership), those of the other nodes.
func (h *Hub) Members(room string) []Member {
	remote := h.remoteMembers(room)
	r := h.lock(room)
	local := make([]Member, 0, len(r.members))
	for k, m := range r.members {
		select {
		case <-m.ready:
			if m.joinErr == nil {
				local = append(local, Member{User: k.user, Session: k.session, Presence: m.presence})
			}
		default: // still joining
		}
	}
	h.forget(r)
	r.mu.Unlock()
	// This node's view of its own members wins over the log's (one pass each: a join into a room
	// of 10,000 lists it, and so does every join before it).
	out := local
	if len(remote) > 0 {
		mine := make(map[memberKey]struct{}, len(local))
		for _, m := range local {
			mine[memberKey{m.User, m.Session}] = struct{}{}
		}
		for _, m := range remote {
			if _, dup := mine[memberKey{m.User, m.Session}]; !dup {
				out = append(out, m)
			}
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		return cmp.Or(strings.Compare(a.User, b.User), strings.Compare(a.Session, b.Session))
	})
	return out
}

// remoteMembers lists the members the log records on every node, when it is a Membership; it
// bounds the read to a few seconds, and lists none when the log cannot answer.
func (h *Hub) remoteMembers(room string) []Member {
	ml, ok := h.log.(eventlog.Membership)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	members, err := ml.RoomMembers(ctx, room)
	if err != nil {
		h.logger.Warn("cannot list the members on other nodes", "room", room, "err", err)
		return nil
	}
	out := make([]Member, 0, len(members))
	for _, m := range members {
		out = append(out, Member{User: m.User, Session: m.Session.Session, Presence: m.Presence})
	}
	return out
}

// Online returns the number of member sessions per room on this node.
func (h *Hub) Online() map[string]int {
	h.mu.Lock()
	rooms := make([]*Room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.Unlock()
	out := map[string]int{}
	for _, r := range rooms {
		r.mu.Lock()
		if n := len(r.members); n > 0 {
			out[r.name] = n
		}
		r.mu.Unlock()
	}
	return out
}

// CloseOrphans appends a leave event for every session the log still records as a member: at
// start-up, these are left over from a crash (nobody is connected yet). It returns how many.
func (h *Hub) CloseOrphans(ctx context.Context) (int, error) {
	var orphans []eventlog.Session
	if err := h.log.Sessions(ctx, func(s eventlog.Session) error {
		orphans = append(orphans, s)
		return nil
	}); err != nil {
		return 0, err
	}
	pending := make([]*eventlog.Pending, 0, len(orphans))
	for _, s := range orphans {
		pending = append(pending, h.log.AppendAsync(eventlog.AppendRequest{
			Room: s.Room, User: s.User, Session: s.Session, Kind: eventlog.KindLeave, System: true,
		}))
	}
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			return 0, err
		}
	}
	return len(orphans), nil
}

// Close appends a leave event for every member still joined (including those in their grace
// period) and stops every feed. Call it after the last connection has gone.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	rooms := make([]*Room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.Unlock()
	var pending []*eventlog.Pending
	for _, r := range rooms {
		r.mu.Lock()
		for k, m := range r.members {
			if m.leave != nil {
				m.leave.Stop()
			}
			delete(r.members, k)
			if m.unlogged {
				continue
			}
			pending = append(pending, h.log.AppendAsync(eventlog.AppendRequest{
				Room: r.name, User: k.user, Session: k.session, Kind: eventlog.KindLeave, System: true,
			}))
		}
		f := r.feed
		r.feed, r.subs = nil, 0
		if f != nil {
			h.relayInterest(r.name, false)
		}
		h.forget(r)
		r.mu.Unlock()
		if f != nil {
			f.halt()
		}
	}
	var firstErr error
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
