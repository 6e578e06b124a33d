package eventlog

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// The storage roles, as small interfaces (hashicorp/raft keeps its LogStore apart from its
// StableStore the same way): Log is the event log itself; Cursors and SessionIndex keep what the
// server records about clients; Auditor serves the audit tools, and Compactor (snapshot.go) the
// snapshots. Every backend has all of them, together a Store, and checks so at compile time:
// boltlog.Log, memlog.Log and jetstream.Log. HealthChecker (boltlog, jetstream) and Membership
// (jetstream, whose log several nodes share) are the optional abilities, found by type
// assertion. Every backend passes the conformance suite in package logtest.

// Store is what every backend provides: the log and the roles the server and the audit tools
// need of it. What only some backends add (HealthChecker, Membership) stays optional, found by
// type assertion.
type Store interface {
	Log
	Cursors
	SessionIndex
	Auditor
	Compactor
}

// Log is a durable, ordered, tamper-evident event log partitioned into rooms.
//
// All methods are safe for concurrent use. Events returned by reads share memory with each other;
// treat them as read-only.
type Log interface {
	// Append validates req, appends it durably and returns the event as stored. It returns only
	// after the event is committed to stable storage, or with an error after which nothing was
	// appended. With req.Key set, a repeat of (User, Room, Key) within the retention window
	// returns the first event with Duplicate set and appends nothing. With req.Expect set, a room
	// whose head differs gets a *ConflictError (errors.Is(err, ErrConflict)).
	Append(ctx context.Context, req AppendRequest) (AppendResult, error)

	// AppendAsync queues req and returns at once. Requests queued by one goroutine are applied in
	// the order they were queued, however many are outstanding: an editing client's publishes
	// keep their order. Wait on the returned Pending for the outcome.
	AppendAsync(req AppendRequest) *Pending

	// ReadAfter returns up to limit events of room with id > after, in id order. The zero ID
	// reads from the room's first event. An unknown room has no events.
	ReadAfter(ctx context.Context, room string, after ID, limit int) ([]Event, error)

	// ReadAfterFunc calls fn with each of up to limit events of room with id > after, in id
	// order, and returns how many it passed. The event, its strings and its body are valid only
	// during the call (they may point into storage): fn copies what it keeps. A non-nil error
	// from fn stops the read and is returned. It is ReadAfter without copies, for streaming.
	ReadAfterFunc(ctx context.Context, room string, after ID, limit int, fn func(*Event) error) (int, error)

	// ReadBefore returns up to limit events of room with id < before, oldest first (the page
	// that ends just before before). The zero ID means from the head.
	ReadBefore(ctx context.Context, room string, before ID, limit int) ([]Event, error)

	// Contains reports whether id is an event of room.
	Contains(ctx context.Context, room string, id ID) (bool, error)

	// Head returns the room's last event id, hash and event count (zero values for an empty or
	// unknown room).
	Head(ctx context.Context, room string) (Head, error)

	// Watch returns a Watch whose channel is signalled after events of room are committed; an
	// empty room name watches every room. Signals coalesce: a reader wakes, reads after its
	// cursor, and waits again, and so never misses an event.
	Watch(room string) *Watch

	// Close waits for queued appends to finish and releases the log. Appends after Close fail
	// with ErrClosed.
	Close() error
}

// Cursors keeps each client session's receipt cursor per room (the protocol's client ack), from
// which a session that lost its own state resumes.
type Cursors interface {
	// SetCursor records that user's session has received room up to id. Only an id greater than the
	// recorded one moves the cursor. It returns once the cursor is durable.
	SetCursor(ctx context.Context, user, session, room string, id ID) error

	// Cursor returns the cursor recorded by SetCursor, or the zero ID.
	Cursor(ctx context.Context, user, session, room string) (ID, error)
}

// SessionIndex lists the sessions a log's join and leave events leave joined.
type SessionIndex interface {
	// Sessions calls fn for every session that joined a room and has not left it, as recorded by
	// the log's join and leave events: after a crash, these are the sessions to close.
	Sessions(ctx context.Context, fn func(Session) error) error
}

// Membership is implemented by logs that several nodes share (eventlog/jetstream), so that a
// room's members are the same on every node. Such a log also keeps a session's membership across
// nodes: a join of a session the log records as a member of the room (it reconnected to another
// node within its grace period) appends nothing and comes back with Duplicate set, and the leave
// the first node then writes after the grace period appends nothing either.
type Membership interface {
	// RoomMembers lists the sessions the log records as members of room, on any node, with
	// their latest presence.
	RoomMembers(ctx context.Context, room string) ([]Member, error)
}

// Feeder is implemented by logs that several nodes share (eventlog/jetstream), whose ids do
// not order events across rooms (each node's clock makes them): it reads every event in the
// one order the log stored them, from a position a reader keeps, as a webhook does. On a log of
// one process, Auditor.Scan's order of ids is that order.
type Feeder interface {
	// Feed calls fn with the events stored after position after (0: from the start), in the
	// order they were stored, up to limit of them, until fn returns an error (which Feed
	// returns). It returns the position it reached: the position of the last event fn took
	// (after, when none). Positions grow in the feed's order, and a Feed from the position
	// another returned misses nothing.
	Feed(ctx context.Context, after uint64, limit int, fn func(*Event) error) (reached uint64, err error)
}

// Leaser is implemented by logs that several nodes share: named leases for work exactly one node
// must do at a time (delivering a webhook). A lease carries a small value that only its holder
// changes and that outlives the lease, such as how far the work has gone.
type Leaser interface {
	// Acquire waits until this node holds the lease name (1-64 of A-Z a-z 0-9 _ -), or ctx
	// ends.
	Acquire(ctx context.Context, name string) (Lease, error)

	// LeaseState reads the lease name without taking it: its value, and the node holding it
	// ("" when none does).
	LeaseState(ctx context.Context, name string) (value []byte, holder string, err error)
}

// Lease is a lease a node holds. Its holder keeps it alive until Release, or until it cannot:
// a node that dies, or is cut off from the others for longer than the lease's time, loses it,
// and another may take it.
type Lease interface {
	// Value is the lease's value as this holder last read or stored it (nil when there is none).
	Value() []byte

	// Store replaces the value. When the lease is lost, or another holder stored a value since
	// this one read or stored it, it stores nothing and returns ErrLeaseLost: a holder that
	// lost its lease can never move the value behind the new holder's back.
	Store(ctx context.Context, value []byte) error

	// Lost is closed once the lease is lost.
	Lost() <-chan struct{}

	// Release gives the lease up at once, for another node to take.
	Release()
}

// Auditor reads the whole log for auditors: listings, scans across rooms, chain verification.
type Auditor interface {
	// Rooms calls fn for every room with at least one event, in name order, until fn returns
	// an error (which Rooms returns).
	Rooms(ctx context.Context, fn func(RoomInfo) error) error

	// Scan calls fn for every event that matches f, across rooms in id order, until fn returns
	// an error (which Scan returns). It sees the log as it was when it started: events committed
	// later are left for the next Scan, which can start after the last id this one returned
	// without missing any.
	Scan(ctx context.Context, f ScanFilter, fn func(Event) error) error

	// Verify recomputes the hash chain of room (every room when room is "") and checks it
	// against anchors; it reports the first broken link in the returned report; err is for
	// failures to read.
	Verify(ctx context.Context, room string, anchors ...Anchor) (VerifyReport, error)
}

// HealthChecker is implemented by backends that can stop taking appends, as the embedded one does
// after a failed commit until it has reopened its file (see ErrFailed). Health returns nil while
// appends are accepted, and the reason otherwise.
type HealthChecker interface {
	Health() error
}

// Reserved kinds are written by the server itself (AppendRequest.System).
const (
	KindMessage  = "message"
	KindJoin     = "join"
	KindLeave    = "leave"
	KindPresence = "presence"
)

// Event is one entry of the log, with the fields of the protocol's event frame (docs/protocol.md).
type Event struct {
	ID      ID
	Room    string
	Kind    string
	User    string
	Session string          // the publishing session; empty when the publisher had none
	Key     string          // the publisher's idempotency key; empty when none was given
	Body    json.RawMessage // compact JSON, or nil
	Hash    [32]byte        // SHA-256 chaining this event to the previous one of its room
}

// Time is the instant the event was appended, to the millisecond (the time in its id).
func (e *Event) Time() time.Time { return e.ID.Time() }

// AppendRequest is what a caller asks to append.
type AppendRequest struct {
	Room    string
	Kind    string // "message" when empty
	User    string // required
	Session string // optional
	Key     string // optional idempotency key, 1-128 bytes
	Body    json.RawMessage

	// Expect, when not nil, makes the append conditional: it applies only if the room's last
	// event id equals *Expect (the zero ID for an empty room).
	Expect *ID

	// System marks an append made by the server itself: only system appends may use the
	// reserved kinds join, leave and presence.
	System bool
}

// AppendResult is the outcome of a successful append.
type AppendResult struct {
	Event     Event
	Duplicate bool // the key was seen before; Event is the first event appended with it
}

// Head describes the end of a room.
type Head struct {
	ID    ID       // the room's last event id, zero for an empty room
	Hash  [32]byte // that event's chain hash
	Count uint64   // events in the room
}

// RoomInfo summarises one room for listings.
type RoomInfo struct {
	Name  string
	Count uint64
	First ID       // the room's first event id
	Last  ID       // the room's last event id (its head)
	Hash  [32]byte // the chain hash of Last: with Count and Last, the room's anchor
}

// Session is a member of a room as the log's join and leave events record it.
type Session struct {
	Room, User, Session string
	Joined              ID // the id of the join event
}

// Member is a session a Membership log records as joined, with its latest presence state.
type Member struct {
	Session
	Presence json.RawMessage
}

// ScanFilter selects events for Scan. The zero value selects every event.
type ScanFilter struct {
	Rooms []string // room names or prefix patterns ending in '*'; none means every room
	User  string   // only events by this user
	Kind  string   // only events of this kind
	After ID       // only ids > After
	Since ID       // only ids >= Since (MinIDAt turns a time into one)
	Until ID       // only ids < Until (zero: no bound)
	Limit int      // at most this many events (0: no limit)
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Rooms  int
	Events uint64
	First  ID // the oldest id seen, zero when the log is empty
	Last   ID // the newest id seen
	// Compacted counts the events compactions removed before the floors the chains were
	// checked from (see Compactor); Events does not include them.
	Compacted uint64
	Broken    *Break // the first broken link, nil when every chain verifies
}

// Anchor is a room's head as an auditor recorded it at some time (roomlog heads): the log must
// still hold that event, at that position, with that chain hash. A hash chain alone cannot show
// that events were cut from a room's end (the head entry can be rewritten to the event before);
// an anchor kept outside the log can.
type Anchor struct {
	Room string
	Head
}

// Break locates a broken link of a hash chain.
type Break struct {
	Room   string
	ID     ID     // the event whose link is broken (zero when the room's head entry is)
	Reason string // what is wrong, for a person
}

// Pending is an append in flight, returned by AppendAsync.
type Pending struct {
	done   chan struct{}
	result AppendResult
	err    error
}

// Done is closed when the outcome is known.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result returns the outcome; call it after Done is closed.
func (p *Pending) Result() (AppendResult, error) { return p.result, p.err }

// Wait blocks until the outcome is known or ctx ends. When ctx ends first the append may still
// happen (it is already queued); use a Key to make a retry safe.
func (p *Pending) Wait(ctx context.Context) (AppendResult, error) {
	select {
	case <-p.done:
		return p.result, p.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

// NewPending returns an append in flight for a backend's AppendAsync to complete, once, with
// Complete.
func NewPending() *Pending { return &Pending{done: make(chan struct{})} }

// Complete sets the outcome of an append made with NewPending and closes Done. Only the backend
// that made the Pending calls it, and only once.
func (p *Pending) Complete(r AppendResult, err error) {
	p.result, p.err = r, err
	close(p.done)
}

// Failed returns a Pending that failed with err.
func Failed(err error) *Pending {
	p := NewPending()
	p.Complete(AppendResult{}, err)
	return p
}

// Watch signals that a room (or any room) has new events. See Log.Watch.
type Watch struct {
	c      chan struct{}
	room   string
	once   sync.Once
	cancel func(*Watch)
}

// NewWatch makes a Watch for backends: signal it with Notify, and cancel calls back on Close.
func NewWatch(room string, cancel func(*Watch)) *Watch {
	return &Watch{c: make(chan struct{}, 1), room: room, cancel: cancel}
}

// C is signalled (at most one signal pending) when events were committed.
func (w *Watch) C() <-chan struct{} { return w.c }

// Room is the watched room, "" for all.
func (w *Watch) Room() string { return w.room }

// Notify signals the watch without blocking.
func (w *Watch) Notify() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// Close stops the watch. It is safe to call more than once.
func (w *Watch) Close() {
	w.once.Do(func() {
		if w.cancel != nil {
			w.cancel(w)
		}
	})
}
