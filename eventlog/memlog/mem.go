// Package memlog is the in-memory backend of eventlog: every role of eventlog.Store except
// that nothing outlives the process. It proves the roles are not shaped by bbolt, and lets the
// packages above the log run their unit tests without a file or an fsync. Events get the same
// ids, records and chain hashes as in the other backends, through the shared append rules
// (eventlog.ApplyAppend) and verification (eventlog.VerifyRooms).
package memlog

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/defaults"
)

// Options configures a Log. The zero value is ready to use.
type Options struct {
	// MaxBody limits an event body's compact JSON size. Zero or less: eventlog.DefaultMaxBody.
	MaxBody int
	// KeyRetention is how long an idempotency key is remembered, counted from its event's id.
	// Zero or less: eventlog.DefaultKeyRetention.
	KeyRetention time.Duration
	// Now is the clock new ids and key expiry read. Nil: time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	defaults.Positive(&o.MaxBody, eventlog.DefaultMaxBody)
	defaults.Positive(&o.KeyRetention, eventlog.DefaultKeyRetention)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Log keeps every event, idempotency key (for the key retention) and cursor in memory; nothing
// is ever dropped but expired keys and what a compaction removes.
type Log struct {
	opts Options

	// mu guards everything below. An append holds it exclusively, so appends apply in the order
	// they take it: an AppendAsync completes before it returns.
	mu       sync.RWMutex
	closed   bool
	ids      eventlog.IDSource
	rooms    map[string]*room
	keys     map[keyName]eventlog.ID    // the event first appended with each key
	cursors  map[cursorName]eventlog.ID // each session's stored cursor in a room
	sessions map[sessionName]eventlog.Session

	watches eventlog.Watchers
}

// keyName names an idempotency key: keys are per room and user.
type keyName struct{ room, user, key string }

// cursorName names a stored cursor.
type cursorName struct{ user, session, room string }

// sessionName names a joined session in the session index.
type sessionName struct{ room, user, session string }

type room struct {
	records  [][]byte      // each an event record, its hash filled in; never changed once appended
	ids      []eventlog.ID // ids[i] is the id of records[i], increasing
	head     eventlog.Head
	snapshot eventlog.ID   // the latest snapshot's id
	floor    eventlog.Head // the last event a compaction removed
}

// Log has every role of a Store and the Compactor's.
var (
	_ eventlog.Store     = (*Log)(nil)
	_ eventlog.Compactor = (*Log)(nil)
)

// New returns an empty in-memory log.
func New(opts Options) *Log {
	opts = opts.withDefaults()
	return &Log{
		opts: opts, ids: eventlog.IDSource{Now: opts.Now},
		rooms: map[string]*room{}, keys: map[keyName]eventlog.ID{},
		cursors: map[cursorName]eventlog.ID{}, sessions: map[sessionName]eventlog.Session{},
	}
}

// Append implements eventlog.Log. The append is applied before it returns, so ctx is not
// consulted.
func (l *Log) Append(ctx context.Context, req eventlog.AppendRequest) (eventlog.AppendResult, error) {
	return l.append(req)
}

// AppendAsync implements eventlog.Log. The append is applied before it returns.
func (l *Log) AppendAsync(req eventlog.AppendRequest) *eventlog.Pending {
	p := eventlog.NewPending()
	p.Complete(l.append(req))
	return p
}

func (l *Log) append(req eventlog.AppendRequest) (eventlog.AppendResult, error) {
	req, err := eventlog.Normalize(req, l.opts.MaxBody)
	if err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("eventlog: append: %w", err)
	}
	l.mu.Lock()
	res, err := l.applyLocked(&req)
	l.mu.Unlock()
	if err == nil && !res.Duplicate {
		l.watches.Notify(req.Room)
	}
	return res, err
}

// applyLocked appends req, or finds its key or its conflict. l.mu is held.
func (l *Log) applyLocked(req *eventlog.AppendRequest) (eventlog.AppendResult, error) {
	if l.closed {
		return eventlog.AppendResult{}, eventlog.ErrClosed
	}
	res, refused, err := eventlog.ApplyAppend(memTarget{l}, req, &l.ids)
	if refused != nil {
		return res, refused
	}
	return res, err
}

// memTarget is the Log's state as eventlog.ApplyAppend writes it; l.mu is held exclusively.
type memTarget struct{ l *Log }

func (t memTarget) FindKey(req *eventlog.AppendRequest) (eventlog.Event, bool, error) {
	id, ok := t.l.keys[keyName{req.Room, req.User, req.Key}]
	if !ok || id.Millis() < uint64(t.l.opts.Now().Add(-t.l.opts.KeyRetention).UnixMilli()) {
		return eventlog.Event{}, false, nil
	}
	r := t.l.rooms[req.Room]
	if r != nil && id.Compare(r.floor.ID) <= 0 {
		return eventlog.Event{ID: id, Room: req.Room}, true, nil // compacted away
	}
	ev, err := r.event(req.Room, id)
	return ev, true, err
}

func (t memTarget) Head(name string) (eventlog.Head, error) {
	if r := t.l.rooms[name]; r != nil {
		return r.head, nil
	}
	return eventlog.Head{}, nil
}

func (t memTarget) PutEvent(ev *eventlog.Event, rec []byte, head eventlog.Head) error {
	r := t.l.rooms[ev.Room]
	if r == nil {
		r = &room{}
		t.l.rooms[ev.Room] = r
	}
	r.records, r.ids, r.head = append(r.records, rec), append(r.ids, ev.ID), head
	return nil
}

func (t memTarget) PutKey(ev *eventlog.Event) error {
	t.l.keys[keyName{ev.Room, ev.User, ev.Key}] = ev.ID
	return nil
}

func (t memTarget) PutSession(s eventlog.Session, joined bool) error {
	name := sessionName{s.Room, s.User, s.Session}
	if joined {
		t.l.sessions[name] = s
	} else {
		delete(t.l.sessions, name)
	}
	return nil
}

func (t memTarget) PutSnapshot(ev *eventlog.Event) error {
	t.l.rooms[ev.Room].snapshot = ev.ID
	return nil
}

// event decodes the room's event id; r.records is never changed, so the event may point into it.
func (r *room) event(name string, id eventlog.ID) (eventlog.Event, error) {
	if r == nil {
		return eventlog.Event{}, fmt.Errorf("%w: room %q has no event %s", eventlog.ErrCorrupt, name, id)
	}
	i, found := slices.BinarySearchFunc(r.ids, id, eventlog.ID.Compare)
	if !found {
		return eventlog.Event{}, fmt.Errorf("%w: room %q has no event %s", eventlog.ErrCorrupt, name, id)
	}
	return r.decode(name, i)
}

func (r *room) decode(name string, i int) (eventlog.Event, error) {
	ev := eventlog.Event{ID: r.ids[i], Room: name}
	err := eventlog.DecodeRecord(&ev, r.records[i])
	return ev, err
}

// after is the index of the room's first event with id > after.
func (r *room) after(after eventlog.ID) int {
	return sort.Search(len(r.ids), func(i int) bool { return r.ids[i].Compare(after) > 0 })
}

// ReadAfter implements eventlog.Log.
func (l *Log) ReadAfter(ctx context.Context, name string, after eventlog.ID, limit int) ([]eventlog.Event, error) {
	return l.slice(ctx, name, limit, func(r *room) (int, int) {
		i := r.after(after)
		return i, min(len(r.ids), i+limit)
	})
}

// ReadAfterFunc implements eventlog.Log. fn runs without the log's lock held.
func (l *Log) ReadAfterFunc(ctx context.Context, name string, after eventlog.ID, limit int, fn func(*eventlog.Event) error) (int, error) {
	evs, err := l.ReadAfter(ctx, name, after, limit)
	for n := range evs {
		if err := fn(&evs[n]); err != nil {
			return n, err
		}
	}
	return len(evs), err
}

// ReadBefore implements eventlog.Log.
func (l *Log) ReadBefore(ctx context.Context, name string, before eventlog.ID, limit int) ([]eventlog.Event, error) {
	return l.slice(ctx, name, limit, func(r *room) (int, int) {
		end := len(r.ids)
		if !before.IsZero() {
			end = sort.Search(len(r.ids), func(i int) bool { return r.ids[i].Compare(before) >= 0 })
		}
		return max(0, end-limit), end
	})
}

// slice decodes the room's events in the index range span gives.
func (l *Log) slice(ctx context.Context, name string, limit int, span func(*room) (int, int)) ([]eventlog.Event, error) {
	if err := eventlog.CheckRead(name, limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, eventlog.ErrClosed
	}
	r := l.rooms[name]
	if r == nil {
		return nil, nil
	}
	from, to := span(r)
	out := make([]eventlog.Event, 0, to-from)
	for i := from; i < to; i++ {
		ev, err := r.decode(name, i)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Contains implements eventlog.Log.
func (l *Log) Contains(ctx context.Context, name string, id eventlog.ID) (bool, error) {
	found := false
	err := l.withRoom(name, func(r *room) {
		_, found = slices.BinarySearchFunc(r.ids, id, eventlog.ID.Compare)
	})
	return found, err
}

// Head implements eventlog.Log.
func (l *Log) Head(ctx context.Context, name string) (head eventlog.Head, err error) {
	err = l.withRoom(name, func(r *room) { head = r.head })
	return head, err
}

// withRoom validates name and runs fn on the room under the read lock, when the room exists.
func (l *Log) withRoom(name string, fn func(*room)) error {
	if err := eventlog.CheckRead(name, 1); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return eventlog.ErrClosed
	}
	if r := l.rooms[name]; r != nil {
		fn(r)
	}
	return nil
}

// Watch implements eventlog.Log.
func (l *Log) Watch(room string) *eventlog.Watch { return l.watches.Add(room) }

// SetCursor implements eventlog.Cursors.
func (l *Log) SetCursor(ctx context.Context, user, session, room string, id eventlog.ID) error {
	if err := eventlog.CheckCursor(user, session, room, id); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return eventlog.ErrClosed
	}
	name := cursorName{user, session, room}
	if id.Compare(l.cursors[name]) > 0 {
		l.cursors[name] = id
	}
	return nil
}

// Cursor implements eventlog.Cursors.
func (l *Log) Cursor(ctx context.Context, user, session, room string) (eventlog.ID, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return eventlog.ID{}, eventlog.ErrClosed
	}
	return l.cursors[cursorName{user, session, room}], nil
}

// Sessions implements eventlog.SessionIndex.
func (l *Log) Sessions(ctx context.Context, fn func(eventlog.Session) error) error {
	l.mu.RLock()
	all := make([]eventlog.Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		all = append(all, s)
	}
	l.mu.RUnlock()
	slices.SortFunc(all, func(a, b eventlog.Session) int { return a.Joined.Compare(b.Joined) })
	return each(all, fn)
}

// Rooms implements eventlog.Auditor.
func (l *Log) Rooms(ctx context.Context, fn func(eventlog.RoomInfo) error) error {
	l.mu.RLock()
	infos := make([]eventlog.RoomInfo, 0, len(l.rooms))
	for name, r := range l.rooms {
		infos = append(infos, eventlog.RoomInfo{Name: name, Count: r.head.Count, First: r.ids[0], Last: r.head.ID, Hash: r.head.Hash})
	}
	l.mu.RUnlock()
	slices.SortFunc(infos, func(a, b eventlog.RoomInfo) int { return strings.Compare(a.Name, b.Name) })
	return each(infos, fn)
}

func each[T any](all []T, fn func(T) error) error {
	for _, v := range all {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// Scan implements eventlog.Auditor. It takes the matching events of the snapshot at once, so its
// memory grows with them (the file backend's stays flat).
func (l *Log) Scan(ctx context.Context, f eventlog.ScanFilter, fn func(eventlog.Event) error) error {
	if err := f.Check(); err != nil {
		return err
	}
	l.mu.RLock()
	var evs []eventlog.Event
	for name, r := range l.rooms {
		if !f.MatchesRoom(name) {
			continue
		}
		for i := range r.ids {
			ev, err := r.decode(name, i)
			if err != nil {
				l.mu.RUnlock()
				return err
			}
			if f.Matches(&ev) {
				evs = append(evs, ev)
			}
		}
	}
	l.mu.RUnlock()
	slices.SortFunc(evs, func(a, b eventlog.Event) int { return a.ID.Compare(b.ID) })
	if f.Limit > 0 && len(evs) > f.Limit {
		evs = evs[:f.Limit]
	}
	return each(evs, func(ev eventlog.Event) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(ev)
	})
}

// Verify implements eventlog.Auditor. It holds the read lock throughout.
func (l *Log) Verify(ctx context.Context, room string, anchors ...eventlog.Anchor) (eventlog.VerifyReport, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	names := func(context.Context) ([]string, error) {
		names := make([]string, 0, len(l.rooms))
		for name := range l.rooms {
			names = append(names, name)
		}
		slices.Sort(names)
		return names, nil
	}
	return eventlog.VerifyRooms(ctx, room, anchors, names, l.verifyRoomLocked)
}

// verifyRoomLocked checks one room's chain for VerifyRooms. l.mu is held.
func (l *Log) verifyRoomLocked(ctx context.Context, name string, anchors []eventlog.Anchor, rep *eventlog.VerifyReport) (*eventlog.Break, bool, error) {
	r := l.rooms[name]
	if r == nil {
		return nil, false, nil
	}
	check, brk := eventlog.NewChainCheck(name, r.floor, anchors)
	for i := 0; brk == nil && i < len(r.ids); i++ {
		ev, err := r.decode(name, i)
		if err != nil {
			return nil, true, fmt.Errorf("eventlog: verify: %w", err)
		}
		brk = check.Next(&ev, r.records[i])
	}
	if brk == nil {
		brk = check.End(r.head)
	}
	if brk == nil {
		check.AddTo(rep)
	}
	return brk, true, nil
}

// Close implements eventlog.Log: reads and appends fail with ErrClosed after it.
func (l *Log) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.watches.CloseAll()
	return nil
}

// LatestSnapshot implements eventlog.Compactor.
func (l *Log) LatestSnapshot(ctx context.Context, name string) (snap eventlog.Event, found bool, err error) {
	err = l.withRoom(name, func(r *room) {
		if !r.snapshot.IsZero() {
			snap, err = r.event(name, r.snapshot)
			found = err == nil
		}
	})
	return snap, found, err
}

// Floor implements eventlog.Compactor.
func (l *Log) Floor(ctx context.Context, name string) (floor eventlog.Head, err error) {
	err = l.withRoom(name, func(r *room) { floor = r.floor })
	return floor, err
}

// Compact implements eventlog.Compactor, in one step.
func (l *Log) Compact(ctx context.Context, room, by string) (eventlog.CompactResult, error) {
	if err := eventlog.ValidRoom(room); err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact: %w", err)
	}
	if err := eventlog.CheckUser(by); err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact: %w", err)
	}
	l.mu.Lock()
	res, err := l.compactLocked(room, by)
	l.mu.Unlock()
	if err == nil && res.Removed > 0 {
		l.watches.Notify(room)
	}
	return res, err
}

func (l *Log) compactLocked(name, by string) (eventlog.CompactResult, error) {
	if l.closed {
		return eventlog.CompactResult{}, eventlog.ErrClosed
	}
	r := l.rooms[name]
	if r == nil || r.snapshot.IsZero() {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact %q: %w: the room has no snapshot to compact to", name, eventlog.ErrNoSnapshot)
	}
	snap, err := r.event(name, r.snapshot)
	if err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact %q: %w", name, err)
	}
	covers, err := eventlog.SnapshotCovers(snap)
	if err != nil {
		return eventlog.CompactResult{}, fmt.Errorf("eventlog: compact %q: %w", name, err)
	}
	res := eventlog.CompactResult{Snapshot: r.snapshot, SnapshotBy: snap.User, Floor: r.floor}
	n := r.after(covers) // the events to remove: ids <= covers
	if n == 0 {
		return res, nil
	}
	r.floor = eventlog.Head{ID: r.ids[n-1], Hash: eventlog.RecordHash(r.records[n-1]), Count: r.floor.Count + uint64(n)}
	r.records, r.ids = slices.Clone(r.records[n:]), slices.Clone(r.ids[n:])
	res.Floor, res.Removed = r.floor, n
	body := eventlog.CompactionBody(r.snapshot, snap.User, r.floor, n)
	req, err := eventlog.Normalize(eventlog.AppendRequest{Room: name, User: by, Kind: eventlog.KindCompaction, Body: body, System: true}, len(body)+1)
	if err != nil {
		return res, err
	}
	rec, err := l.applyLocked(&req)
	res.Record = rec.Event
	return res, err
}
