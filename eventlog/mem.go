package eventlog

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// MemLog is the in-memory backend: every promise of Log, Cursors, SessionIndex and Auditor except
// that nothing outlives the process. It proves the roles are not shaped by bbolt, and lets the
// packages above the log run their unit tests without a file or an fsync. Events get the same
// ids, records and chain hashes as in a BoltLog.
//
// It keeps every event, idempotency key (for the key retention, counted from the key's event)
// and cursor in memory; nothing is ever dropped but expired keys.
type MemLog struct {
	opts Options

	// mu guards everything below. An append holds it exclusively, so appends apply in the order
	// they take it: an AppendAsync completes before it returns.
	mu       sync.RWMutex
	closed   bool
	ids      idSource
	rooms    map[string]*memRoom
	keys     map[string]ID // idempotencyKey → the event first appended with it
	acks     map[string]ID // ackKey → cursor
	sessions map[string]Session

	watches Watchers
}

type memRoom struct {
	records  [][]byte // each an event record, its hash filled in; never changed once appended
	ids      []ID     // ids[i] is the id of records[i], increasing
	head     Head
	snapshot ID   // the latest snapshot's id
	floor    Head // the last event a compaction removed
}

// The roles MemLog has (see log.go): all but HealthChecker.
var (
	_ Log          = (*MemLog)(nil)
	_ Cursors      = (*MemLog)(nil)
	_ SessionIndex = (*MemLog)(nil)
	_ Auditor      = (*MemLog)(nil)
	_ Compactor    = (*MemLog)(nil)
)

// NewMemLog returns an empty in-memory log. Of opts, MaxBody, KeyRetention and Now apply; the
// options of the file (LockTimeout, ReadOnly, QueueSize, MaxBatch, OnCommit) do not.
func NewMemLog(opts Options) *MemLog {
	opts = opts.withDefaults()
	return &MemLog{
		opts: opts, ids: idSource{now: opts.Now},
		rooms: map[string]*memRoom{}, keys: map[string]ID{}, acks: map[string]ID{}, sessions: map[string]Session{},
	}
}

// Append implements Log.
func (l *MemLog) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	return l.AppendAsync(req).Wait(ctx)
}

// AppendAsync implements Log. The append is applied before it returns.
func (l *MemLog) AppendAsync(req AppendRequest) *Pending {
	req, err := normalize(req, l.opts.MaxBody)
	if err != nil {
		return failed(fmt.Errorf("eventlog: append: %w", err))
	}
	l.mu.Lock()
	res, err := l.applyLocked(&req)
	l.mu.Unlock()
	if err != nil {
		return failed(err)
	}
	if !res.Duplicate {
		l.watches.Notify(req.Room)
	}
	p := &Pending{done: make(chan struct{})}
	p.complete(res, nil)
	return p
}

// applyLocked appends req, or finds its key or its conflict. l.mu is held.
func (l *MemLog) applyLocked(req *AppendRequest) (AppendResult, error) {
	if l.closed {
		return AppendResult{}, ErrClosed
	}
	r := l.rooms[req.Room]
	key := idempotencyKey(req.Room, req.User, req.Key)
	if req.Key != "" {
		if id, ok := l.keys[key]; ok && id.Millis() >= uint64(l.opts.Now().Add(-l.opts.KeyRetention).UnixMilli()) {
			if r != nil && id.Compare(r.floor.ID) <= 0 {
				return AppendResult{Event: Event{ID: id, Room: req.Room}, Duplicate: true}, nil // compacted away
			}
			ev, err := r.event(req.Room, id)
			return AppendResult{Event: ev, Duplicate: true}, err
		}
	}
	if req.Expect != nil {
		var head ID
		if r != nil {
			head = r.head.ID
		}
		if head != *req.Expect {
			return AppendResult{}, &ConflictError{Room: req.Room, Head: head}
		}
	}
	if r == nil {
		r = &memRoom{}
		l.rooms[req.Room] = r
	}
	id := l.ids.next()
	rec := encodeRecord(make([]byte, 0, 64+len(req.Body)), req)
	hash := chain(rec, &r.head.Hash, req.Room, id)
	r.records, r.ids = append(r.records, rec), append(r.ids, id)
	r.head = Head{ID: id, Hash: hash, Count: r.head.Count + 1}
	if req.Key != "" {
		l.keys[key] = id
	}
	if req.Kind == KindSnapshot {
		r.snapshot = id
	}
	sk := req.Room + "\x00" + req.User + "\x00" + req.Session
	switch req.Kind {
	case KindJoin:
		l.sessions[sk] = Session{Room: req.Room, User: req.User, Session: req.Session, Joined: id}
	case KindLeave:
		delete(l.sessions, sk)
	}
	ev, err := r.event(req.Room, id)
	return AppendResult{Event: ev}, err
}

// event decodes the room's event id; r.records is never changed, so the event may point into it.
func (r *memRoom) event(room string, id ID) (Event, error) {
	if r == nil {
		return Event{}, fmt.Errorf("%w: room %q has no event %s", ErrCorrupt, room, id)
	}
	i, found := slices.BinarySearchFunc(r.ids, id, ID.Compare)
	if !found {
		return Event{}, fmt.Errorf("%w: room %q has no event %s", ErrCorrupt, room, id)
	}
	return r.decode(room, i)
}

func (r *memRoom) decode(room string, i int) (Event, error) {
	ev := Event{ID: r.ids[i], Room: room}
	err := decodeRecord(&ev, r.records[i])
	return ev, err
}

// after is the index of the room's first event with id > after.
func (r *memRoom) after(after ID) int {
	return sort.Search(len(r.ids), func(i int) bool { return r.ids[i].Compare(after) > 0 })
}

// ReadAfter implements Log.
func (l *MemLog) ReadAfter(ctx context.Context, room string, after ID, limit int) ([]Event, error) {
	var out []Event
	_, err := l.ReadAfterFunc(ctx, room, after, limit, func(e *Event) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// ReadAfterFunc implements Log. fn runs without the log's lock held.
func (l *MemLog) ReadAfterFunc(ctx context.Context, room string, after ID, limit int, fn func(*Event) error) (int, error) {
	evs, err := l.slice(ctx, room, limit, func(r *memRoom) (int, int) {
		i := r.after(after)
		return i, min(len(r.ids), i+limit)
	})
	for n := range evs {
		if err := fn(&evs[n]); err != nil {
			return n, err
		}
	}
	return len(evs), err
}

// ReadBefore implements Log.
func (l *MemLog) ReadBefore(ctx context.Context, room string, before ID, limit int) ([]Event, error) {
	return l.slice(ctx, room, limit, func(r *memRoom) (int, int) {
		end := len(r.ids)
		if !before.IsZero() {
			end = sort.Search(len(r.ids), func(i int) bool { return r.ids[i].Compare(before) >= 0 })
		}
		return max(0, end-limit), end
	})
}

// slice decodes the room's events in the index range span gives.
func (l *MemLog) slice(ctx context.Context, room string, limit int, span func(*memRoom) (int, int)) ([]Event, error) {
	if err := checkRead(room, limit); err != nil {
		return nil, err
	}
	if err := errCtx(ctx); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	r := l.rooms[room]
	if r == nil {
		return nil, nil
	}
	from, to := span(r)
	out := make([]Event, 0, to-from)
	for i := from; i < to; i++ {
		ev, err := r.decode(room, i)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Contains implements Log.
func (l *MemLog) Contains(ctx context.Context, room string, id ID) (bool, error) {
	if err := checkRead(room, 1); err != nil {
		return false, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return false, ErrClosed
	}
	r := l.rooms[room]
	if r == nil {
		return false, nil
	}
	_, found := slices.BinarySearchFunc(r.ids, id, ID.Compare)
	return found, nil
}

// Head implements Log.
func (l *MemLog) Head(ctx context.Context, room string) (Head, error) {
	return l.roomMark(room, func(r *memRoom) Head { return r.head })
}

// roomMark returns one of a room's marks (head or floor); the zero Head for an unknown room.
func (l *MemLog) roomMark(room string, mark func(*memRoom) Head) (Head, error) {
	if err := checkRead(room, 1); err != nil {
		return Head{}, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return Head{}, ErrClosed
	}
	if r := l.rooms[room]; r != nil {
		return mark(r), nil
	}
	return Head{}, nil
}

// Watch implements Log.
func (l *MemLog) Watch(room string) *Watch { return l.watches.Add(room) }

// SetCursor implements Cursors.
func (l *MemLog) SetCursor(ctx context.Context, user, session, room string, id ID) error {
	if err := checkAck(user, session, room, id); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	k := string(ackKey(user, session, room))
	if id.Compare(l.acks[k]) > 0 {
		l.acks[k] = id
	}
	return nil
}

// Cursor implements Cursors.
func (l *MemLog) Cursor(ctx context.Context, user, session, room string) (ID, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ID{}, ErrClosed
	}
	return l.acks[string(ackKey(user, session, room))], nil
}

// Sessions implements SessionIndex.
func (l *MemLog) Sessions(ctx context.Context, fn func(Session) error) error {
	l.mu.RLock()
	all := make([]Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		all = append(all, s)
	}
	l.mu.RUnlock()
	slices.SortFunc(all, func(a, b Session) int { return a.Joined.Compare(b.Joined) })
	for _, s := range all {
		if err := fn(s); err != nil {
			return err
		}
	}
	return nil
}

// Rooms implements Auditor.
func (l *MemLog) Rooms(ctx context.Context, fn func(RoomInfo) error) error {
	l.mu.RLock()
	infos := make([]RoomInfo, 0, len(l.rooms))
	for name, r := range l.rooms {
		infos = append(infos, RoomInfo{Name: name, Count: r.head.Count, First: r.ids[0], Last: r.head.ID, Hash: r.head.Hash})
	}
	l.mu.RUnlock()
	slices.SortFunc(infos, func(a, b RoomInfo) int { return strings.Compare(a.Name, b.Name) })
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Scan implements Auditor. It takes the matching events of the snapshot at once, so its memory
// grows with them (the file backend's stays flat).
func (l *MemLog) Scan(ctx context.Context, f ScanFilter, fn func(Event) error) error {
	if err := f.check(); err != nil {
		return err
	}
	l.mu.RLock()
	var evs []Event
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
	slices.SortFunc(evs, func(a, b Event) int { return a.ID.Compare(b.ID) })
	if f.Limit > 0 && len(evs) > f.Limit {
		evs = evs[:f.Limit]
	}
	for _, ev := range evs {
		if err := errCtx(ctx); err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// Verify implements Auditor.
func (l *MemLog) Verify(ctx context.Context, room string, anchors ...Anchor) (VerifyReport, error) {
	var rep VerifyReport
	if room != "" {
		if err := ValidRoom(room); err != nil {
			return rep, fmt.Errorf("eventlog: verify: %w", err)
		}
	}
	byRoom := anchorsByRoom(room, anchors)
	l.mu.RLock()
	defer l.mu.RUnlock()
	names := make([]string, 0, len(l.rooms))
	for name := range l.rooms {
		if room == "" || name == room {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		r := l.rooms[name]
		delete(byRoom, name)
		rep.Compacted += r.floor.Count
		check, brk := NewChainCheck(name, r.floor, anchors)
		for i := 0; brk == nil && i < len(r.ids); i++ {
			ev := Event{ID: r.ids[i], Room: name}
			if err := decodeRecord(&ev, r.records[i]); err != nil {
				return rep, fmt.Errorf("eventlog: verify: %w", err)
			}
			brk = check.Next(&ev, r.records[i])
		}
		if brk == nil {
			brk = check.End(r.head)
		}
		if brk != nil {
			rep.Broken = brk
			return rep, nil
		}
		if rep.First.IsZero() || check.First.Compare(rep.First) < 0 {
			rep.First = check.First
		}
		if n := len(r.ids); n > 0 && r.ids[n-1].Compare(rep.Last) > 0 {
			rep.Last = r.ids[n-1]
		}
		rep.Rooms++
		rep.Events += check.Checked()
	}
	rep.Broken = anchoredRoomsMissing(byRoom)
	return rep, nil
}

// Close implements Log: reads and appends fail with ErrClosed after it.
func (l *MemLog) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.watches.CloseAll()
	return nil
}

// LatestSnapshot implements Compactor.
func (l *MemLog) LatestSnapshot(ctx context.Context, room string) (Event, bool, error) {
	if err := checkRead(room, 1); err != nil {
		return Event{}, false, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return Event{}, false, ErrClosed
	}
	r := l.rooms[room]
	if r == nil || r.snapshot.IsZero() {
		return Event{}, false, nil
	}
	ev, err := r.event(room, r.snapshot)
	return ev, err == nil, err
}

// Floor implements Compactor.
func (l *MemLog) Floor(ctx context.Context, room string) (Head, error) {
	return l.roomMark(room, func(r *memRoom) Head { return r.floor })
}

// Compact implements Compactor, in one step.
func (l *MemLog) Compact(ctx context.Context, room, by string) (CompactResult, error) {
	if err := ValidRoom(room); err != nil {
		return CompactResult{}, fmt.Errorf("eventlog: compact: %w", err)
	}
	if err := validText(ErrBadUser, "user", by, 1, MaxUserLen); err != nil {
		return CompactResult{}, fmt.Errorf("eventlog: compact: %w", err)
	}
	l.mu.Lock()
	res, err := l.compactLocked(room, by)
	l.mu.Unlock()
	if err == nil && res.Removed > 0 {
		l.watches.Notify(room)
	}
	return res, err
}

func (l *MemLog) compactLocked(room, by string) (CompactResult, error) {
	if l.closed {
		return CompactResult{}, ErrClosed
	}
	r := l.rooms[room]
	if r == nil || r.snapshot.IsZero() {
		return CompactResult{}, fmt.Errorf("eventlog: compact %q: %w: the room has no snapshot to compact to", room, ErrNoSnapshot)
	}
	i, _ := slices.BinarySearchFunc(r.ids, r.snapshot, ID.Compare)
	snap, covers, err := snapshotCovers(r.records[i])
	if err != nil {
		return CompactResult{}, fmt.Errorf("eventlog: compact %q: %w", room, err)
	}
	res := CompactResult{Snapshot: r.snapshot, SnapshotBy: snap.User, Floor: r.floor}
	n := r.after(covers) // the events to remove: ids <= covers
	if n == 0 {
		return res, nil
	}
	last := r.records[n-1]
	r.floor = Head{ID: r.ids[n-1], Hash: [32]byte(last[hashOffset:fieldsOffset]), Count: r.floor.Count + uint64(n)}
	r.records, r.ids = slices.Clone(r.records[n:]), slices.Clone(r.ids[n:])
	res.Floor, res.Removed = r.floor, n
	body := CompactionBody(r.snapshot, snap.User, r.floor, n)
	req, err := normalize(AppendRequest{Room: room, User: by, Kind: KindCompaction, Body: body, System: true}, len(body)+1)
	if err != nil {
		return res, err
	}
	rec, err := l.applyLocked(&req)
	res.Record = rec.Event
	return res, err
}
