package jetstream

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/roomlog/roomlog/eventlog"
)

// maxBatchBytes bounds the data of one atomic batch, well inside JetStream's limits.
const maxBatchBytes = 1 << 20

// minDiskBatch is how many appends a room must have waiting before a node appends them in one
// atomic batch on a stream of one replica, where nats-server stages the batch in a store of its
// own on disk (a directory, a file, fsyncs): below it one by one costs less.
const minDiskBatch = 16

// Error codes of JetStream's publish answers that mean "another append came first".
const (
	errWrongLastSequence           = 10071
	errWrongLastSequenceReplicated = 10164
)

// appendOp is an append waiting in its room's queue.
type appendOp struct {
	req     eventlog.AppendRequest // normalized
	keySubj string                 // the subject of req's key marker, when it has a key
	p       *eventlog.Pending
	// compaction, for Compact's record only: the floor it moves the room to, published with the
	// record, conditional on the floor marker's sequence as Compact read it.
	compaction *compaction
	// sweep, for a leave the sweeper writes for a session of a node that died: the sequence its
	// membership marker must still be at (else the session moved on, and nothing is written).
	sweep *uint64
}

// compaction is what a compaction record moves.
type compaction struct {
	floor    eventlog.Head
	floorSeq uint64 // the floor marker's last sequence when Compact read it (0: none)
}

// roomWriter appends one room's queued requests, a batch at a time, in queue order. At most one
// runs per room on a node (Log.writers); it stops when the queue is empty, and the node keeps
// what it knows of the room (its head, its keys) for the next append while it has room for it
// (maxIdleWriters).
type roomWriter struct {
	room    string
	queue   []*appendOp // guarded by Log.mu
	running bool        // guarded by Log.mu
	head    *roomHead   // the room's head as of this writer's last append; nil: read it again
	keys    roomKeys
}

// roomHead is the end of a room: its last event and that event's stream sequence (0 for an
// empty room).
type roomHead struct {
	eventlog.Head
	seq uint64
}

// Append implements eventlog.Log.
func (l *Log) Append(ctx context.Context, req eventlog.AppendRequest) (eventlog.AppendResult, error) {
	return l.AppendAsync(req).Wait(ctx)
}

// AppendAsync implements eventlog.Log.
func (l *Log) AppendAsync(req eventlog.AppendRequest) *eventlog.Pending {
	if l.opts.ReadOnly {
		return eventlog.Failed(ErrReadOnly)
	}
	req, err := eventlog.Normalize(req, l.opts.MaxBody)
	if err != nil {
		return eventlog.Failed(fmt.Errorf("eventlog/jetstream: append: %w", err))
	}
	return l.enqueue(&appendOp{req: req, p: eventlog.NewPending()})
}

// enqueue queues op in its room's writer, starting it if it is not running.
func (l *Log) enqueue(op *appendOp) *eventlog.Pending {
	if op.req.Key != "" {
		op.keySubj = l.subj.key(op.req.Room, op.req.User, op.req.Key) // once: a hash
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return eventlog.Failed(eventlog.ErrClosed)
	}
	w := l.writers[op.req.Room]
	if w == nil {
		l.forgetIdleLocked()
		w = &roomWriter{room: op.req.Room}
		l.writers[op.req.Room] = w
	}
	w.queue = append(w.queue, op)
	if !w.running {
		w.running = true
		l.wg.Add(1)
		go l.runWriter(w)
	}
	return op.p
}

// forgetIdleLocked forgets idle rooms whose keys all have their markers once the node keeps
// more than maxIdleWriters rooms. l.mu is held.
func (l *Log) forgetIdleLocked() {
	if len(l.writers) < maxIdleWriters {
		return
	}
	for room, w := range l.writers {
		if !w.running && w.keys.settled() {
			delete(l.writers, room)
		}
	}
}

// runWriter appends w's queue until it is empty, a batch at a time: up to MaxBatch requests and
// maxBatchBytes of bodies (one request at least, whatever its size).
func (l *Log) runWriter(w *roomWriter) {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		n, bytes := 0, 0
		limit := min(len(w.queue), l.opts.MaxBatch)
		if l.replicas == 1 && len(w.queue) < minDiskBatch {
			limit = min(limit, 1)
		}
		for n < limit && (n == 0 || bytes+len(w.queue[n].req.Body) <= maxBatchBytes) {
			bytes += len(w.queue[n].req.Body)
			n++
		}
		if n == 0 {
			w.running = false
			l.mu.Unlock()
			return
		}
		ops := w.queue[:n:n]
		w.queue = w.queue[n:]
		l.mu.Unlock()
		if err := l.appendBatch(w, ops); err != nil && notAnswering(err) {
			// JetStream does not answer: what waits behind would each wait as long for the
			// same answer. Their clients retry, with their keys.
			l.mu.Lock()
			rest := w.queue
			w.queue = nil
			l.mu.Unlock()
			for _, op := range rest {
				op.p.Complete(eventlog.AppendResult{}, err)
			}
		}
	}
}

// planned is one op's part of a batch: an event to publish, or an outcome known already.
type planned struct {
	op     *appendOp
	ev     eventlog.Event
	msg    int // index of its event message in the batch; -1 when not published
	dupOf  *planned
	result eventlog.AppendResult
	err    error

	left    string // a leave's session subject, its marker at index leftMsg of the batch
	leftMsg int
}

// appendBatch appends ops, conditional on the room's head, retrying when another append came
// first, and completes every op; it returns the error that failed them all, if one did.
func (l *Log) appendBatch(w *roomWriter, ops []*appendOp) error {
	ctx, cancel := context.WithTimeout(l.stopping, l.opts.Timeout)
	defer cancel()
	var err error
	for attempt := 0; ; attempt++ {
		if w.head == nil {
			if w.head, err = l.leaderHead(ctx, w.room); err != nil {
				break
			}
		}
		if err = l.catchUpKeys(ctx, w); err != nil {
			break
		}
		if compacting(ops) || w.keys.unmarkedCount() >= maxUnmarked {
			// No event the compaction purges may take its key along: every marker first. And
			// markers JetStream keeps refusing hold up the room's appends rather than memory.
			if err = l.waitSettled(ctx, w); err != nil {
				break
			}
		}
		var plan []*planned
		var msgs []*nats.Msg
		// With markers in the batch, the first attempt takes keys not unmarked here to be new
		// (their markers expect no message before them), which saves a lookup per key; a
		// refused batch looks them up when it tries again.
		if plan, msgs, err = l.plan(ctx, w, ops, !l.markersInBatch(len(ops)) || attempt > 0); err != nil {
			break
		}
		if len(msgs) == 0 {
			complete(plan)
			return nil
		}
		start := time.Now()
		var last uint64
		last, err = l.publish(ctx, msgs)
		conflict := isConflict(err)
		if l.opts.OnRequest != nil {
			l.opts.OnRequest(time.Since(start), conflict)
		}
		if err == nil {
			l.committed(w, plan, last, len(msgs))
			return nil
		}
		w.head = nil
		if !conflict || attempt >= maxRetries {
			// The outcome is unknown (a lost answer, a leader change): the batch landed if the
			// room now holds its first event.
			if ok, lerr := l.landed(ctx, w.room, plan); lerr == nil && ok {
				err = nil
				if w.head, err = l.leaderHead(ctx, w.room); err == nil {
					l.committedAt(plan, w.head)
					return nil
				}
			}
			break
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond) // let the other append finish
	}
	err = fmt.Errorf("eventlog/jetstream: append to %q: %w", w.room, err)
	for _, op := range ops {
		op.p.Complete(eventlog.AppendResult{}, err)
	}
	return err
}

// plan decides each op's outcome against the room's head as w knows it: a duplicate of a key
// used before, a conflict with Expect, or a new event; it returns the messages of the batch.
// Unless lookup is set, key markers are not looked up (see appendBatch).
func (l *Log) plan(ctx context.Context, w *roomWriter, ops []*appendOp, lookup bool) ([]*planned, []*nats.Msg, error) {
	head := *w.head
	used, err := l.usedKeys(ctx, w, ops, lookup)
	if err != nil {
		return nil, nil, err
	}
	byKey := map[string]*planned{}
	members := map[string]*memberState{} // membership markers read or written by this batch
	plan := make([]*planned, 0, len(ops))
	var msgs []*nats.Msg
	conditioned := false // the batch's first event carries the condition on the room's head
	for _, op := range ops {
		p := &planned{op: op, msg: -1}
		plan = append(plan, p)
		req := &op.req
		if subj := op.keySubj; subj != "" {
			if first := byKey[subj]; first != nil {
				p.dupOf = first
				continue
			}
			if u := used[subj]; u.event != nil {
				p.result = eventlog.AppendResult{Event: *u.event, Duplicate: true}
				continue
			}
			byKey[subj] = p
		}
		if p.err = eventlog.CheckExpect(req, head.Head); p.err != nil {
			continue
		}
		if op.compaction != nil {
			if moved, err := l.floorMoved(ctx, req.Room, op.compaction.floorSeq); err != nil || moved {
				p.err = cmp.Or(err, errFloorMoved)
				continue
			}
		}
		var member membershipPlan
		if isMembership(req.Kind) && req.System {
			var err error
			if member, err = l.planMembership(ctx, op, members); err != nil {
				return nil, nil, err
			}
			if member.skip != nil {
				p.result = *member.skip
				if member.alone != nil {
					msgs = append(msgs, member.alone)
				}
				continue
			}
		}
		var rec []byte
		var next eventlog.Head
		p.ev, rec, next = eventlog.NewEvent(req, l.ids.next(head.ID, head.seq), head.Head)
		id := p.ev.ID
		if member.marker != nil {
			if member.leaves != "" {
				p.left, p.leftMsg = member.leaves, len(msgs)
			}
			msgs = append(msgs, member.marker(id))
		}
		msgs = append(msgs, l.markers(op, id)...)
		if req.Key != "" && l.markersInBatch(len(ops)) {
			msgs = append(msgs, l.keyMarkerExpecting(keyedEvent{ev: p.ev, subj: op.keySubj}, used[op.keySubj].expired))
		}
		ev := nats.NewMsg(l.subj.events(req.Room))
		ev.Header.Set(hdrID, id.String())
		ev.Header.Set(hdrCount, strconv.FormatUint(next.Count, 10))
		ev.Header.Set(hdrHash, hex.EncodeToString(next.Hash[:]))
		if !conditioned {
			// The batch is atomic: the events after the first follow it with nothing between.
			ev.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(head.seq, 10))
			conditioned = true
		}
		ev.Data = rec
		p.msg = len(msgs)
		msgs = append(msgs, ev)
		head = roomHead{Head: next}
	}
	return plan, msgs, nil
}

// markers are the messages published with an event in one atomic batch, just before it (see the
// package comment): its floor or snapshot pointer. (Membership markers come from
// planMembership; key markers are written after the event, keys.go.)
func (l *Log) markers(op *appendOp, id eventlog.ID) []*nats.Msg {
	req := &op.req
	var out []*nats.Msg
	if c := op.compaction; c != nil {
		m := nats.NewMsg(l.subj.floor(req.Room))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(c.floorSeq, 10))
		m.Data = encodeFloor(c.floor)
		out = append(out, m)
	}
	if req.Kind == eventlog.KindSnapshot {
		m := nats.NewMsg(l.subj.snapshot(req.Room))
		m.Data = id[:]
		out = append(out, m)
	}
	return out
}

// usedKeys looks up the keys of ops, by key subject: those unmarked on this node, then (when
// lookup is set) those with a marker. The unmarked are looked at first: an event leaves them
// only once its marker is stored.
func (l *Log) usedKeys(ctx context.Context, w *roomWriter, ops []*appendOp, lookup bool) (map[string]keyUse, error) {
	used := map[string]keyUse{}
	var unknown []string
	for _, op := range ops {
		subj := op.keySubj
		if subj == "" {
			continue
		}
		if _, seen := used[subj]; seen {
			continue
		}
		if ke, ok := w.keys.unmarkedEvent(subj); ok {
			used[subj] = keyUse{event: &ke.ev}
			continue
		}
		used[subj] = keyUse{}
		unknown = append(unknown, subj)
	}
	if !lookup {
		return used, nil
	}
	found, err := l.findKeys(ctx, w.room, unknown)
	for subj, u := range found {
		used[subj] = u
	}
	return used, err
}

// compacting reports whether ops hold a compaction.
func compacting(ops []*appendOp) bool {
	for _, op := range ops {
		if op.compaction != nil {
			return true
		}
	}
	return false
}

// leaderHead reads the room's head from the stream leader.
func (l *Log) leaderHead(ctx context.Context, room string) (*roomHead, error) {
	m, err := l.leader(ctx, getRequest{LastFor: l.subj.events(room)})
	if err != nil {
		return nil, err
	}
	if m == nil {
		return &roomHead{}, nil
	}
	ev, err := m.event(room)
	if err != nil {
		return nil, err
	}
	return &roomHead{Head: eventlog.Head{ID: ev.ID, Hash: ev.Hash, Count: m.count()}, seq: m.seq}, nil
}

// committed completes the plan of a batch of n messages stored up to stream sequence last.
func (l *Log) committed(w *roomWriter, plan []*planned, last uint64, n int) {
	first := last - uint64(n) + 1
	l.ids.seen(last)
	l.watch.sawSeq(last)
	events := false
	var keyed []keyedEvent
	for _, p := range plan {
		if p.msg >= 0 {
			w.head = &roomHead{Head: eventlog.Head{ID: p.ev.ID, Hash: p.ev.Hash, Count: w.head.Count + 1}, seq: first + uint64(p.msg)}
			events = true
			if p.ev.Key != "" {
				keyed = append(keyed, keyedEvent{ev: p.ev, seq: w.head.seq, subj: p.op.keySubj})
			}
		}
		if p.left != "" {
			l.forgets.forget(leftMarker{subject: p.left, seq: first + uint64(p.leftMsg)})
		}
	}
	// The batch followed the head the keys were known to, with nothing between.
	if l.markersInBatch(len(plan)) {
		l.addUnmarked(w, nil, w.head.seq)
		if len(keyed) > 0 {
			l.marks.add(w) // for the watermark
		}
	} else {
		l.addUnmarked(w, keyed, w.head.seq)
	}
	if events {
		l.watch.appended(w.room, w.head.seq, &w.head.Head)
	}
	complete(plan)
}

// committedAt completes a plan found stored after an unknown outcome; head is the room's head
// read since.
func (l *Log) committedAt(plan []*planned, head *roomHead) {
	l.ids.seen(head.seq)
	l.watch.appended(plan[0].op.req.Room, head.seq, &head.Head)
	complete(plan)
}

// complete completes every op of plan with its outcome.
func complete(plan []*planned) {
	for _, p := range plan {
		switch {
		case p.err != nil:
			p.op.p.Complete(eventlog.AppendResult{}, p.err)
		case p.dupOf != nil:
			if p.dupOf.err != nil {
				p.op.p.Complete(eventlog.AppendResult{}, p.dupOf.err)
			} else {
				p.op.p.Complete(eventlog.AppendResult{Event: resultOf(p.dupOf).Event, Duplicate: true}, nil)
			}
		default:
			p.op.p.Complete(resultOf(p), nil)
		}
	}
}

func resultOf(p *planned) eventlog.AppendResult {
	if p.msg >= 0 {
		return eventlog.AppendResult{Event: p.ev}
	}
	return p.result
}

// landed reports whether the first event of plan is in the room: a batch whose answer was lost
// was stored after all (batches are atomic, so all of it was).
func (l *Log) landed(ctx context.Context, room string, plan []*planned) (bool, error) {
	for _, p := range plan {
		if p.msg >= 0 {
			return l.Contains(ctx, room, p.ev.ID)
		}
	}
	return false, nil
}

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Error *apiError `json:"error"`
	Seq   uint64    `json:"seq"`
}

// publish publishes msgs as one atomic batch (one message is published alone) and returns the
// stream sequence of the last.
func (l *Log) publish(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) > 1 {
		batch := nuid.Next()
		for i, m := range msgs {
			m.Header.Set("Nats-Batch-Id", batch)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
			if i < len(msgs)-1 {
				if err := l.nc.PublishMsg(m); err != nil {
					return 0, err
				}
			}
		}
		msgs[len(msgs)-1].Header.Set("Nats-Batch-Commit", "1")
	}
	resp, err := l.nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	if err != nil {
		return 0, err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	return ack.Seq, nil
}

func isConflict(err error) bool {
	var apiErr *apiError
	return errors.As(err, &apiErr) && (apiErr.ErrCode == errWrongLastSequence || apiErr.ErrCode == errWrongLastSequenceReplicated)
}
