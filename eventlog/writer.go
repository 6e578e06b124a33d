package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeOp is one request to the writer: an append, or an acknowledged cursor.
type writeOp struct {
	req     AppendRequest // a normalized append, when pending is set
	pending *Pending

	ack     *ackRequest
	ackDone chan error

	// Set by apply, delivered after the commit.
	result AppendResult
	err    error
}

type ackRequest struct {
	user, session, room string
	id                  ID
}

// pruneKeysPerCommit bounds how many expired idempotency keys one commit deletes, so expiry never
// stalls appends.
const pruneKeysPerCommit = 1024

// Append implements Log.
func (l *BoltLog) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	return l.AppendAsync(req).Wait(ctx)
}

// AppendAsync implements Log.
func (l *BoltLog) AppendAsync(req AppendRequest) *Pending {
	req, err := normalize(req, l.opts.MaxBody)
	if err != nil {
		return failed(fmt.Errorf("eventlog: append: %w", err))
	}
	p := &Pending{done: make(chan struct{})}
	if err := l.enqueue(&writeOp{req: req, pending: p}); err != nil {
		return failed(err)
	}
	return p
}

// SetAck implements Log.
func (l *BoltLog) SetAck(ctx context.Context, user, session, room string, id ID) error {
	if err := ValidRoom(room); err != nil {
		return fmt.Errorf("eventlog: ack: %w", err)
	}
	if err := validText(ErrBadUser, "user", user, 1, MaxUserLen); err != nil {
		return fmt.Errorf("eventlog: ack: %w", err)
	}
	if err := validText(ErrBadSession, "session", session, 0, MaxSessionLen); err != nil {
		return fmt.Errorf("eventlog: ack: %w", err)
	}
	if id.IsZero() {
		return fmt.Errorf("eventlog: ack: %w: the zero id acknowledges nothing", ErrBadCursor)
	}
	op := &writeOp{ack: &ackRequest{user, session, room, id}, ackDone: make(chan error, 1)}
	if err := l.enqueue(op); err != nil {
		return err
	}
	select {
	case err := <-op.ackDone:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *BoltLog) enqueue(op *writeOp) error {
	if l.opts.ReadOnly {
		return fmt.Errorf("eventlog: %s is open read-only", l.path)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.ops <- op
	return nil
}

// run is the writer: it takes every operation waiting (up to MaxBatch), commits them in one
// transaction and completes them. It exits when ops is closed and drained.
func (l *BoltLog) run() {
	defer close(l.done)
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	batch := make([]*writeOp, 0, l.opts.MaxBatch)
	for {
		select {
		case op, ok := <-l.ops:
			if !ok {
				return
			}
			batch = append(batch[:0], op)
		drain:
			for len(batch) < l.opts.MaxBatch {
				select {
				case op, ok := <-l.ops:
					if !ok {
						break drain
					}
					batch = append(batch, op)
				default:
					break drain
				}
			}
			l.commit(batch)
			clear(batch) // drop references for the GC
		case <-prune.C:
			if l.expiredGeneration() >= 0 {
				l.commit(nil)
			}
		}
	}
}

// batch is the writer's state during one transaction.
type batch struct {
	tx      *bolt.Tx
	now     time.Time
	rooms   map[string]*roomWrite
	order   []string // rooms in first-touched order
	changed []string // rooms with new events, for notification
	gens    []uint64 // idempotency generations as this transaction sees them
}

type roomWrite struct {
	bucket *bolt.Bucket
	head   Head
	dirty  bool
}

// commit applies ops in order in one transaction and completes them after the commit. A storage
// failure fails every op of the batch: the transaction is rolled back, so none of them happened.
func (l *BoltLog) commit(ops []*writeOp) {
	start := time.Now()
	b := &batch{now: l.opts.Now(), rooms: make(map[string]*roomWrite), gens: append([]uint64(nil), l.gens...)}
	lastID := l.ids.last
	err := l.apply(b, ops)
	if err == nil {
		err = b.tx.Commit()
	} else if b.tx != nil {
		b.tx.Rollback()
	}
	if err != nil {
		err = fmt.Errorf("eventlog: commit to %s: %w", l.path, err)
		l.ids.last = lastID // not needed for order, but keeps ids dense in time
	} else {
		l.gens = b.gens
	}
	for _, op := range ops {
		opErr := op.err
		if err != nil {
			opErr = err
		}
		switch {
		case op.pending != nil:
			if opErr != nil {
				op.pending.complete(AppendResult{}, opErr)
			} else {
				op.pending.complete(op.result, nil)
			}
		case op.ack != nil:
			op.ackDone <- opErr
		}
	}
	if err == nil {
		if l.opts.OnCommit != nil {
			l.opts.OnCommit(len(ops), time.Since(start))
		}
		if len(b.changed) > 0 {
			l.notify(b.changed)
		}
	}
}

func (l *BoltLog) apply(b *batch, ops []*writeOp) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	if b.tx, err = l.db.Begin(true); err != nil {
		return err
	}
	for _, op := range ops {
		switch {
		case op.pending != nil:
			err = l.applyAppend(b, op)
		case op.ack != nil:
			err = l.applyAck(b, op.ack)
		}
		if err != nil {
			return err
		}
	}
	if err := l.pruneKeys(b); err != nil {
		return err
	}
	for _, room := range b.order {
		rw := b.rooms[room]
		if rw.dirty {
			if err := rw.bucket.Put(keyHead, encodeHead(rw.head)); err != nil {
				return err
			}
			b.changed = append(b.changed, room)
		}
	}
	if len(b.changed) > 0 {
		last := l.ids.last
		return b.tx.Bucket(bucketMeta).Put(keyLast, last[:])
	}
	return nil
}

// room returns the room's state in this transaction; create makes its bucket if missing (nil
// is returned for a missing room otherwise).
func (b *batch) room(name string, create bool) (*roomWrite, error) {
	if rw := b.rooms[name]; rw != nil {
		return rw, nil
	}
	rooms := b.tx.Bucket(bucketRooms)
	bk := rooms.Bucket([]byte(name))
	if bk == nil && !create {
		return nil, nil
	}
	rw := &roomWrite{}
	if bk == nil {
		var err error
		if bk, err = rooms.CreateBucket([]byte(name)); err != nil {
			return nil, err
		}
	} else if v := bk.Get(keyHead); v != nil {
		h, err := decodeHead(v)
		if err != nil {
			return nil, fmt.Errorf("room %q: %w", name, err)
		}
		rw.head = h
	}
	// Ids only grow, so every insert is at the right edge: full pages waste no space.
	bk.FillPercent = 1.0
	rw.bucket = bk
	b.rooms[name] = rw
	b.order = append(b.order, name)
	return rw, nil
}

// applyAppend applies one append. Refusals (conflict) are recorded in op.err and change nothing;
// a returned error is a storage failure that aborts the batch.
func (l *BoltLog) applyAppend(b *batch, op *writeOp) error {
	req := &op.req
	if req.Key != "" {
		ev, found, err := l.findKey(b, req)
		if err != nil {
			return err
		}
		if found {
			op.result = AppendResult{Event: ev, Duplicate: true}
			return nil
		}
	}
	if req.Expect != nil {
		rw, err := b.room(req.Room, false)
		if err != nil {
			return err
		}
		var head ID
		if rw != nil {
			head = rw.head.ID
		}
		if head != *req.Expect {
			op.err = &ConflictError{Room: req.Room, Head: head}
			return nil
		}
	}
	rw, err := b.room(req.Room, true)
	if err != nil {
		return err
	}
	id := l.ids.next()
	rec := encodeRecord(make([]byte, 0, 64+len(req.Body)), req)
	hash := chain(rec, &rw.head.Hash, req.Room, id)
	if err := rw.bucket.Put(id[:], rec); err != nil {
		return err
	}
	rw.head = Head{ID: id, Hash: hash, Count: rw.head.Count + 1}
	rw.dirty = true
	if req.Key != "" {
		if err := l.putKey(b, req, id); err != nil {
			return err
		}
	}
	if req.Kind == KindJoin || req.Kind == KindLeave {
		if err := putSession(b.tx, req, id); err != nil {
			return err
		}
	}
	op.result = AppendResult{Event: Event{
		ID: id, Room: req.Room, Kind: req.Kind, User: req.User, Session: req.Session,
		Key: req.Key, Body: req.Body, Hash: hash,
	}}
	return nil
}

func (l *BoltLog) applyAck(b *batch, a *ackRequest) error {
	k := sessionKey(a.user, a.session, a.room)
	acks := b.tx.Bucket(bucketAcks)
	if cur := acks.Get(k); len(cur) == 16 && bytes.Compare(a.id[:], cur) <= 0 {
		return nil
	}
	return acks.Put(k, a.id[:])
}

func sessionKey(user, session, room string) []byte {
	k := make([]byte, 0, len(user)+len(session)+len(room)+2)
	k = append(k, user...)
	k = append(k, 0)
	k = append(k, session...)
	k = append(k, 0)
	return append(k, room...)
}

// putSession keeps the sessions bucket in step with join and leave events.
func putSession(tx *bolt.Tx, req *AppendRequest, id ID) error {
	k := make([]byte, 0, len(req.Room)+len(req.User)+len(req.Session)+2)
	k = append(k, req.Room...)
	k = append(k, 0)
	k = append(k, req.User...)
	k = append(k, 0)
	k = append(k, req.Session...)
	sessions := tx.Bucket(bucketSessions)
	if req.Kind == KindLeave {
		return sessions.Delete(k)
	}
	return sessions.Put(k, id[:])
}

func idempotencyKey(req *AppendRequest) []byte {
	k := make([]byte, 0, len(req.Room)+len(req.User)+len(req.Key)+2)
	k = append(k, req.Room...)
	k = append(k, 0)
	k = append(k, req.User...)
	k = append(k, 0)
	return append(k, req.Key...)
}

// findKey looks for req's key in the generations, newest first. A key whose event is older than
// the retention counts as absent.
func (l *BoltLog) findKey(b *batch, req *AppendRequest) (Event, bool, error) {
	keys := b.tx.Bucket(bucketKeys)
	k := idempotencyKey(req)
	cutoff := uint64(b.now.Add(-l.opts.KeyRetention).UnixMilli())
	for i := len(b.gens) - 1; i >= 0; i-- {
		gen := keys.Bucket(binary.BigEndian.AppendUint64(nil, b.gens[i]))
		if gen == nil {
			continue
		}
		v := gen.Get(k)
		if v == nil {
			continue
		}
		var id ID
		if len(v) != 16 {
			return Event{}, false, fmt.Errorf("%w: idempotency entry of %d bytes", ErrCorrupt, len(v))
		}
		copy(id[:], v)
		if id.Millis() < cutoff {
			return Event{}, false, nil // the newest use is expired, so every older one is
		}
		room := b.tx.Bucket(bucketRooms).Bucket([]byte(req.Room))
		var rec []byte
		if room != nil {
			rec = room.Get(id[:])
		}
		if rec == nil {
			return Event{}, false, fmt.Errorf("%w: idempotency key of room %q names missing event %s", ErrCorrupt, req.Room, id)
		}
		ev := Event{ID: id, Room: req.Room}
		if err := decodeRecord(&ev, bytes.Clone(rec)); err != nil {
			return Event{}, false, fmt.Errorf("room %q event %s: %w", req.Room, id, err)
		}
		return ev, true, nil
	}
	return Event{}, false, nil
}

// putKey records req's key in the current generation, starting a new one when the newest is
// older than half the retention (so at most about three generations are alive).
func (l *BoltLog) putKey(b *batch, req *AppendRequest, id ID) error {
	keys := b.tx.Bucket(bucketKeys)
	now := uint64(b.now.UnixMilli())
	genLen := uint64(l.opts.KeyRetention.Milliseconds() / 2)
	if n := len(b.gens); n == 0 || now >= b.gens[n-1]+genLen {
		start := now
		if n > 0 && start <= b.gens[n-1] {
			start = b.gens[n-1] + 1
		}
		if _, err := keys.CreateBucketIfNotExists(binary.BigEndian.AppendUint64(nil, start)); err != nil {
			return err
		}
		b.gens = append(b.gens, start)
	}
	gen := keys.Bucket(binary.BigEndian.AppendUint64(nil, b.gens[len(b.gens)-1]))
	return gen.Put(idempotencyKey(req), id[:])
}

// expiredGeneration returns the index of the oldest generation whose keys have all expired (the
// next generation started more than the retention ago), or -1.
func (l *BoltLog) expiredGeneration() int {
	return expiredIn(l.gens, l.opts.Now(), l.opts.KeyRetention)
}

func expiredIn(gens []uint64, now time.Time, retention time.Duration) int {
	if len(gens) < 2 {
		return -1
	}
	if int64(gens[1]) <= now.Add(-retention).UnixMilli() {
		return 0
	}
	return -1
}

// pruneKeys deletes up to pruneKeysPerCommit keys of an expired generation, and the generation
// once it is empty.
func (l *BoltLog) pruneKeys(b *batch) error {
	if expiredIn(b.gens, b.now, l.opts.KeyRetention) != 0 {
		return nil
	}
	keys := b.tx.Bucket(bucketKeys)
	name := binary.BigEndian.AppendUint64(nil, b.gens[0])
	gen := keys.Bucket(name)
	if gen != nil {
		var doomed [][]byte
		c := gen.Cursor()
		for k, _ := c.First(); k != nil && len(doomed) < pruneKeysPerCommit; k, _ = c.Next() {
			doomed = append(doomed, bytes.Clone(k))
		}
		for _, k := range doomed {
			if err := gen.Delete(k); err != nil {
				return err
			}
		}
		if len(doomed) == pruneKeysPerCommit {
			return nil // more next time
		}
		if err := keys.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
	}
	b.gens = b.gens[1:]
	return nil
}
