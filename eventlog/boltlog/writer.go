package boltlog

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// writeOp is one request to the writer: an append, or an acknowledged cursor.
type writeOp struct {
	req     eventlog.AppendRequest // a normalized append, when pending is set
	pending *eventlog.Pending

	ack     *ackRequest
	ackDone chan error

	compact     *compactStep // one step of a compaction, completed on compactDone
	compactDone chan error

	// Set by apply, delivered after the commit.
	result eventlog.AppendResult
	err    error
}

type ackRequest struct {
	user, session, room string
	id                  eventlog.ID
}

// Append implements eventlog.Log.
func (l *Log) Append(ctx context.Context, req eventlog.AppendRequest) (eventlog.AppendResult, error) {
	return l.AppendAsync(req).Wait(ctx)
}

// AppendAsync implements eventlog.Log.
func (l *Log) AppendAsync(req eventlog.AppendRequest) *eventlog.Pending {
	req, err := eventlog.Normalize(req, l.opts.MaxBody)
	if err != nil {
		return eventlog.Failed(fmt.Errorf("eventlog: append: %w", err))
	}
	p := eventlog.NewPending()
	if err := l.enqueue(&writeOp{req: req, pending: p}); err != nil {
		return eventlog.Failed(err)
	}
	return p
}

// SetCursor implements eventlog.Cursors.
func (l *Log) SetCursor(ctx context.Context, user, session, room string, id eventlog.ID) error {
	if err := eventlog.CheckCursor(user, session, room, id); err != nil {
		return err
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

func (l *Log) enqueue(op *writeOp) error {
	if l.opts.ReadOnly {
		return fmt.Errorf("eventlog: %s is open read-only", l.path)
	}
	if err := l.Health(); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return eventlog.ErrClosed
	}
	l.ops <- op
	return nil
}

// finish completes op with err, or with its own outcome when err is nil.
func (op *writeOp) finish(err error) {
	if err == nil {
		err = op.err
	}
	switch {
	case op.pending != nil && err != nil:
		op.pending.Complete(eventlog.AppendResult{}, err)
	case op.pending != nil:
		op.pending.Complete(op.result, nil)
	case op.ack != nil:
		op.ackDone <- err
	case op.compact != nil:
		op.compactDone <- err
	}
}

// run is the writer: it takes every operation waiting (up to MaxBatch), commits them in one
// transaction and completes them. It exits when ops is closed and drained.
func (l *Log) run() {
	defer close(l.done)
	maintain := time.NewTicker(keyFlushEvery)
	defer maintain.Stop()
	batch := make([]*writeOp, 0, l.opts.MaxBatch)
	for {
		select {
		case op, ok := <-l.ops:
			if !ok {
				if len(l.keys.queue) > 0 {
					l.commit(nil, true) // leave the keys on disk: a quicker next Open
				}
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
			err := l.commit(batch, false)
			clear(batch) // drop references for the GC
			if err != nil && !l.recoverFrom(err) {
				return
			}
			// The appenders just acked are runnable now; let them queue their next appends
			// so that they join the next commit instead of waiting for the one after it.
			runtime.Gosched()
		case <-maintain.C:
			if !l.keyWorkDue() {
				continue
			}
			if err := l.commit(nil, false); err != nil && !l.recoverFrom(err) {
				return
			}
		}
	}
}

// batch is the writer's state during one transaction.
type batch struct {
	tx          *bolt.Tx
	now         time.Time
	rooms       map[string]*roomWrite
	order       []string               // rooms in first-touched order
	changed     []string               // rooms with new events, for notification
	gens        []uint64               // idempotency generations as this transaction sees them
	newKeys     []memKey               // idempotency keys of this batch's appends, in id order
	newKeyIDs   map[string]eventlog.ID // the same, for lookups (the latest use)
	keysFlushed int                    // how many of the oldest keys in memory this transaction wrote to disk
}

type roomWrite struct {
	bucket *bolt.Bucket
	head   eventlog.Head
	dirty  bool
}

// commit applies ops in order in one transaction and completes them after the commit, with the
// error of a failed commit, which it returns: the caller then stops the log (recoverFrom), since
// the open file cannot be trusted after it. An op's own refusal (a conflict) is not such an error.
func (l *Log) commit(ops []*writeOp, flushKeys bool) error {
	start := time.Now()
	b := &batch{now: l.opts.Now(), rooms: make(map[string]*roomWrite), gens: slices.Clone(l.keys.gens)}
	var txid uint64
	err := l.apply(b, ops, flushKeys)
	if err == nil {
		txid = uint64(b.tx.ID())
		err = commitTx(b.tx)
	} else if b.tx != nil {
		b.tx.Rollback()
	}
	if err != nil {
		err = fmt.Errorf("eventlog: commit to %s: %w: %w", l.path, eventlog.ErrFailed, err)
		// Before any op completes: no reader returns what the batch wrote, no append is taken.
		l.failure.Store(&failState{err: err, reopening: true})
		l.mark.fail(err)
		for _, op := range ops {
			op.finish(err)
		}
		l.failQueued(err)
		return err
	}
	// Durable now: readers of this transaction may go on, then the appenders get their acks.
	l.mark.advance(txid)
	l.recovered()
	l.keysCommitted(b)
	for _, op := range ops {
		op.finish(nil)
	}
	if l.opts.OnCommit != nil {
		l.opts.OnCommit(len(ops), time.Since(start))
	}
	if len(b.changed) > 0 {
		l.notify(b.changed)
	}
	l.fillHeadroom() // after the acks and notifications: it is no one's latency
	return nil
}

// commitTx commits tx, turning a panic inside bbolt's commit into an error.
func commitTx(tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", eventlog.ErrCorrupt, r)
		}
	}()
	return tx.Commit()
}

func (l *Log) apply(b *batch, ops []*writeOp, flushKeys bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", eventlog.ErrCorrupt, r)
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
		case op.compact != nil:
			err = l.applyCompactStep(b, op)
		}
		if err != nil {
			return err
		}
	}
	if err := l.maintainKeys(b, flushKeys); err != nil {
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
		last := l.ids.Last
		return b.tx.Bucket(bucketMeta).Put(keyLast, last[:])
	}
	return nil
}

// newKey finds a key appended earlier in this batch (the latest use).
func (b *batch) newKey(key string) (eventlog.ID, bool) {
	id, ok := b.newKeyIDs[key]
	return id, ok
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

// applyAppend applies one append by the shared rules. Refusals (conflict) are recorded in op.err
// and change nothing; a returned error is a storage failure that aborts the batch.
func (l *Log) applyAppend(b *batch, op *writeOp) error {
	res, refused, err := eventlog.ApplyAppend(batchTarget{l, b}, &op.req, &l.ids)
	op.result, op.err = res, refused
	return err
}

// batchTarget is the batch's transaction as eventlog.ApplyAppend writes it.
type batchTarget struct {
	l *Log
	b *batch
}

func (t batchTarget) FindKey(req *eventlog.AppendRequest) (eventlog.Event, bool, error) {
	return t.l.findKey(t.b, req)
}

func (t batchTarget) Head(room string) (eventlog.Head, error) {
	rw, err := t.b.room(room, false)
	if rw == nil || err != nil {
		return eventlog.Head{}, err
	}
	return rw.head, nil
}

func (t batchTarget) PutEvent(ev *eventlog.Event, rec []byte, head eventlog.Head) error {
	rw, err := t.b.room(ev.Room, true)
	if err != nil {
		return err
	}
	if err := rw.bucket.Put(ev.ID[:], rec); err != nil {
		return err
	}
	rw.head, rw.dirty = head, true
	return nil
}

func (t batchTarget) PutKey(ev *eventlog.Event) error {
	key := idempotencyKey(ev.Room, ev.User, ev.Key)
	t.b.newKeys = append(t.b.newKeys, memKey{key, ev.ID})
	if t.b.newKeyIDs == nil {
		t.b.newKeyIDs = map[string]eventlog.ID{}
	}
	t.b.newKeyIDs[key] = ev.ID
	return nil
}

// PutSession keeps the sessions bucket in step with join and leave events.
func (t batchTarget) PutSession(s eventlog.Session, joined bool) error {
	k := make([]byte, 0, len(s.Room)+len(s.User)+len(s.Session)+2)
	k = append(k, s.Room...)
	k = append(k, 0)
	k = append(k, s.User...)
	k = append(k, 0)
	k = append(k, s.Session...)
	sessions := t.b.tx.Bucket(bucketSessions)
	if !joined {
		return sessions.Delete(k)
	}
	return sessions.Put(k, s.Joined[:])
}

func (t batchTarget) PutSnapshot(ev *eventlog.Event) error {
	return t.b.rooms[ev.Room].bucket.Put(keySnapshot, ev.ID[:])
}

func (l *Log) applyAck(b *batch, a *ackRequest) error {
	k := ackKey(a.user, a.session, a.room)
	acks := b.tx.Bucket(bucketAcks)
	if cur := acks.Get(k); len(cur) == 16 && bytes.Compare(a.id[:], cur) <= 0 {
		return nil
	}
	return acks.Put(k, a.id[:])
}

// ackKey is the key of a session's cursor in a room (the acks bucket).
func ackKey(user, session, room string) []byte {
	k := make([]byte, 0, len(user)+len(session)+len(room)+2)
	k = append(k, user...)
	k = append(k, 0)
	k = append(k, session...)
	k = append(k, 0)
	return append(k, room...)
}
