package jetstream

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/roomlog/roomlog/eventlog"
)

// Idempotency keys are written after their events, not with them.
//
// A keyed event is published as an unkeyed one is (alone, or with the room's other queued
// events), and its key marker P.key.H afterwards, once JetStream has acked the event: an atomic
// batch per keyed publish cost more than the publish itself (on a one-replica file stream
// nats-server stages every atomic batch in a store of its own on disk). The event record holds
// its user and key, so the event itself carries the key, and a key whose marker was never written
// (the node died first) is found again in the room's events.
//
// The invariant, per room: every keyed event at or below the room's watermark (P.key.w.R, its
// stream sequence W) has its marker stored. A node writing a room keeps, for the events above W
// it knows of, the keyed ones whose marker is not stored yet (roomKeys.unmarked), and
// extends what it knows by reading the events the room gained since (roomKeys.known). A key is
// therefore used iff the batch uses it, it is unmarked here, or its marker is stored: the
// marker lookup follows the unmarked check, and an entry leaves unmarked only once its marker is
// acked, so a key cannot slip between the two. The watermark is raised, at most every
// watermarkEvery, to below the oldest unmarked event; a node that starts writing a room reads
// it, then the events after it. A room without a watermark has only events written by an
// earlier roomlog, whose markers went in one atomic batch with their events, and gets one
// (conditional on there being none) before its first keyed event written so.
//
// A compaction waits until the room has no unmarked events, so no purged event takes its key
// with it.

// watermarkEvery is how often a node raises the watermark of a room it writes: a node that picks
// the room up after a crash reads the events of about this long.
const watermarkEvery = time.Second

// maxUnmarked bounds the keyed events of a room waiting for their markers on a node: past it the
// room's appends wait until the markers are stored (and fail after Options.Timeout if they are
// not), so a JetStream refusing markers while it takes events costs no unbounded memory. A
// variable for tests.
var maxUnmarked = 1 << 14

// maxIdleWriters bounds the rooms whose writer (with its head and keys) a node keeps while no
// append is queued; past it, idle rooms without unmarked keys are forgotten.
const maxIdleWriters = 4096

// keyedEvent is a keyed event of the room, its stream sequence and its key marker's subject.
type keyedEvent struct {
	ev   eventlog.Event
	seq  uint64
	subj string
}

// roomKeys is what a node knows of one room's keys beyond their markers.
type roomKeys struct {
	mu sync.Mutex
	// known is the stream sequence up to which every keyed event of the room is unmarked here or
	// has its marker stored; valid once ready. Only the room's writer moves them (known under mu).
	known uint64
	ready bool
	// unmarked are the keyed events above the watermark whose markers are not stored yet, by
	// key subject. Guarded by mu.
	unmarked map[string]keyedEvent
	// watermark is the watermark last written (or read); when it was written. Guarded by mu.
	watermark   uint64
	watermarked time.Time
}

// unmarkedEvent returns the unmarked event of the key subject, if any.
func (k *roomKeys) unmarkedEvent(subj string) (keyedEvent, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ke, ok := k.unmarked[subj]
	return ke, ok
}

// unmarkedCount is how many keyed events of the room wait for their markers.
func (k *roomKeys) unmarkedCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.unmarked)
}

// settled reports whether every keyed event the room's writer knows of has its marker.
func (k *roomKeys) settled() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.unmarked) == 0
}

// catchUpKeys makes w's keys known up to w's head: on the room's first append on this node from
// its watermark, then from where they were known.
func (l *Log) catchUpKeys(ctx context.Context, w *roomWriter) error {
	k := &w.keys
	if !k.ready {
		from, err := l.readWatermark(ctx, w.room, w.head.seq)
		if err != nil {
			return err
		}
		k.mu.Lock()
		k.known, k.watermark = from, from
		k.mu.Unlock()
	}
	if k.known < w.head.seq {
		var found []keyedEvent
		err := l.scanRoom(ctx, w.room, k.known+1, w.head.seq, func(m *stored) error {
			ev, err := m.event(w.room)
			if err != nil || ev.Key == "" {
				return err
			}
			found = append(found, keyedEvent{ev: ev, seq: m.seq, subj: l.subj.key(w.room, ev.User, ev.Key)})
			return nil
		})
		if err != nil {
			return err
		}
		l.addUnmarked(w, found, w.head.seq)
	}
	if !k.ready {
		k.mu.Lock()
		k.ready = true
		k.mu.Unlock()
	}
	return nil
}

// addUnmarked records keyed events of w's room whose markers may be missing, and has them
// written; the room's keys are then known up to stream sequence known. Only the room's writer
// calls it.
func (l *Log) addUnmarked(w *roomWriter, evs []keyedEvent, known uint64) {
	k := &w.keys
	k.mu.Lock()
	if k.unmarked == nil && len(evs) > 0 {
		k.unmarked = map[string]keyedEvent{}
	}
	for _, ke := range evs {
		k.unmarked[ke.subj] = ke
	}
	k.known = max(k.known, known)
	k.mu.Unlock()
	if len(evs) > 0 {
		l.marks.add(w)
	}
}

// readWatermark reads the room's watermark, read after its head at seq. A room without one gets
// head as its watermark: every keyed event in it went with its marker (see above).
func (l *Log) readWatermark(ctx context.Context, room string, head uint64) (uint64, error) {
	for {
		m, err := l.leader(ctx, getRequest{LastFor: l.subj.watermark(room)})
		if err != nil {
			return 0, fmt.Errorf("eventlog/jetstream: watermark of %q: %w", room, err)
		}
		if m != nil {
			if len(m.data) != 8 {
				return 0, fmt.Errorf("%w: watermark of %q is %d bytes", eventlog.ErrCorrupt, room, len(m.data))
			}
			return binary.BigEndian.Uint64(m.data), nil
		}
		_, err = l.publishWatermark(ctx, room, head, true)
		if !isConflict(err) { // else another node wrote the first: read it
			return head, err
		}
	}
}

// publishWatermark stores the room's watermark; first makes it conditional on there being none.
func (l *Log) publishWatermark(ctx context.Context, room string, at uint64, first bool) (uint64, error) {
	m := nats.NewMsg(l.subj.watermark(room))
	m.Header.Set("Nats-Rollup", "sub") // one message per room
	if first {
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", "0")
	}
	m.Data = binary.BigEndian.AppendUint64(nil, at)
	return l.publish(ctx, []*nats.Msg{m})
}

// markersInBatch reports whether the key markers of a batch of n appends go with their events in
// one atomic batch: on a replicated stream, where nats-server stages batches in memory and a
// batch of an event and its marker costs less than the lookup and the marker written after it
// (BenchmarkAppend); and on any stream when a batch is made anyway (several appends waiting).
// Only a lone append to a stream of one replica is published alone, its marker after it.
func (l *Log) markersInBatch(n int) bool { return l.replicas > 1 || n > 1 }

// keyMarker is the marker of a keyed event written after it: the event's time (its key is
// remembered for KeyRetention from it), id and stream sequence.
func (l *Log) keyMarker(ke keyedEvent) *nats.Msg {
	m := nats.NewMsg(ke.subj)
	m.Header.Set("Nats-TTL", (l.opts.KeyRetention + time.Hour).Round(time.Second).String())
	m.Data = binary.BigEndian.AppendUint64(nil, ke.ev.ID.Millis())
	m.Data = append(m.Data, ke.ev.ID[:]...)
	if ke.seq > 0 {
		m.Data = binary.BigEndian.AppendUint64(m.Data, ke.seq)
	}
	return m
}

// keyMarkerExpecting is the marker of a keyed event published just before it in one atomic
// batch (so without its sequence: the event is the message after it), on condition that the
// key subject's last message is at seq (0: the key is new; else its marker expired).
func (l *Log) keyMarkerExpecting(ke keyedEvent, seq uint64) *nats.Msg {
	m := l.keyMarker(ke)
	m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(seq, 10))
	return m
}

// keyUse is what a lookup found of a key: the event it was first used for, or, for a key not in
// use, the sequence of its expired marker (0 if none).
type keyUse struct {
	event   *eventlog.Event
	expired uint64
}

// scanRoom calls fn with the room's messages from stream sequence from through to, in order: by
// direct gets, and from the leader where a replica has not all of them yet.
func (l *Log) scanRoom(ctx context.Context, room string, from, to uint64, fn func(*stored) error) error {
	subj := l.subj.events(room)
	for next := from; next <= to; {
		page, err := l.direct(ctx, getRequest{Seq: next, NextFor: subj, Batch: readPage, UpToSeq: to})
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: read %q: %w", room, err)
		}
		if len(page) == 0 { // a replica behind
			m, err := l.leader(ctx, getRequest{Seq: next, NextFor: subj})
			if err != nil {
				return fmt.Errorf("eventlog/jetstream: read %q: %w", room, err)
			}
			if m == nil || m.seq > to {
				return nil
			}
			page = []stored{*m}
		}
		for i := range page {
			if page[i].seq > to {
				return nil
			}
			if err := fn(&page[i]); err != nil {
				return err
			}
			next = page[i].seq + 1
		}
	}
	return nil
}

// findKeys looks up the key subjects' markers: the event each key was first appended with, for
// those within their retention. (Keys unmarked on this node are looked up before, in roomKeys.)
func (l *Log) findKeys(ctx context.Context, room string, subjs []string) (map[string]keyUse, error) {
	found := map[string]keyUse{}
	if len(subjs) == 0 {
		return found, nil
	}
	var markers []stored
	if l.replicas == 1 {
		// The one server answers direct gets: never behind. All keys in one request.
		req := getRequest{LastFor: subjs[0]}
		if len(subjs) > 1 {
			req = getRequest{MultiLast: subjs, Batch: len(subjs)}
		}
		var err error
		if markers, err = l.direct(ctx, req); err != nil {
			return nil, fmt.Errorf("eventlog/jetstream: key lookup: %w", err)
		}
	} else {
		// A replica may not have a marker the leader acked: ask the leader, all keys at once.
		got := make([]*stored, len(subjs))
		errs := make([]error, len(subjs))
		var wg sync.WaitGroup
		for i, s := range subjs {
			wg.Go(func() { got[i], errs[i] = l.leader(ctx, getRequest{LastFor: s}) })
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil {
				return nil, fmt.Errorf("eventlog/jetstream: key lookup: %w", errs[i])
			}
			if got[i] != nil {
				markers = append(markers, *got[i])
			}
		}
	}
	for i := range markers {
		ev, err := l.markedEvent(ctx, room, &markers[i])
		if err != nil {
			return nil, err
		}
		if ev != nil {
			found[markers[i].subj] = keyUse{event: ev}
		} else {
			found[markers[i].subj] = keyUse{expired: markers[i].seq}
		}
	}
	return found, nil
}

// markedEvent is the event a key marker names, nil when the key's retention is over. A marker
// written after its event (32 bytes) says where the event is; one written with it in an atomic
// batch by an earlier roomlog (24 bytes) is the message right before it.
func (l *Log) markedEvent(ctx context.Context, room string, m *stored) (*eventlog.Event, error) {
	if len(m.data) != 8+16 && len(m.data) != 8+16+8 {
		return nil, fmt.Errorf("%w: key marker %d is %d bytes", eventlog.ErrCorrupt, m.seq, len(m.data))
	}
	at := time.UnixMilli(int64(binary.BigEndian.Uint64(m.data)))
	if l.opts.Now().Sub(at) >= l.opts.KeyRetention {
		return nil, nil
	}
	id := eventlog.ID(m.data[8:24])
	seq := m.seq + 1
	if len(m.data) == 32 {
		seq = binary.BigEndian.Uint64(m.data[24:])
	}
	ev, err := l.leader(ctx, getRequest{Seq: seq})
	if err == nil && ev != nil && ev.id() == id {
		e, err := ev.event(room)
		return &e, err
	}
	// Removed by a compaction. The key still dedupes; the event it names is gone, so only its id
	// comes back.
	return &eventlog.Event{ID: id, Room: room}, nil
}

// marker writes the markers of unmarked keyed events, for every room of the log, in the
// background, and raises the rooms' watermarks after them.
type marker struct {
	l     *Log
	mu    sync.Mutex
	dirty map[*roomWriter]bool // rooms with markers to write; guarded by mu
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}

	// off, set by tests before any append, writes no marker and no watermark: the node died
	// after its events were acked.
	off atomic.Bool
}

func startMarker(l *Log) *marker {
	m := &marker{l: l, dirty: map[*roomWriter]bool{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

// add has w's unmarked events written.
func (m *marker) add(w *roomWriter) {
	m.mu.Lock()
	m.dirty[w] = true
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// close writes what is unmarked still and the rooms' watermarks (for Options.Timeout at most),
// and stops.
func (m *marker) close() {
	if m == nil {
		return
	}
	close(m.stop)
	<-m.done
}

func (m *marker) run() {
	defer close(m.done)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		stopping := false
		select {
		case <-m.wake:
		case <-retry.C:
		case <-m.stop:
			stopping = true
		}
		if m.off.Load() {
			if stopping {
				return
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.l.opts.Timeout)
		again := m.writeAll(ctx)
		if stopping {
			m.l.mu.Lock()
			rooms := slices.Collect(maps.Values(m.l.writers))
			m.l.mu.Unlock()
			for _, w := range rooms {
				m.raiseWatermark(ctx, w, true)
			}
			cancel()
			return
		}
		cancel()
		if again > 0 {
			retry.Reset(again)
		}
	}
}

// writeAll writes the markers of every dirty room, then the watermarks due; it returns when to
// go on (0: when woken): markers that failed are tried again, and watermarks raised when due.
func (m *marker) writeAll(ctx context.Context) (again time.Duration) {
	m.mu.Lock()
	rooms := m.dirty
	m.dirty = map[*roomWriter]bool{}
	m.mu.Unlock()
	type sent struct {
		w    *roomWriter
		subj string
		seq  uint64
		q    *request
	}
	var out []sent
	for w := range rooms {
		w.keys.mu.Lock()
		for subj, ke := range w.keys.unmarked {
			msg := m.l.keyMarker(ke)
			q := m.l.answers.open(1)
			msg.Reply = q.reply
			if err := m.l.nc.PublishMsg(msg); err != nil {
				q.close()
				continue
			}
			out = append(out, sent{w, subj, ke.seq, q})
		}
		w.keys.mu.Unlock()
	}
	for _, s := range out {
		ok := false
		if resp, err := s.q.next(ctx); err == nil {
			var ack pubAck
			ok = json.Unmarshal(resp.Data, &ack) == nil && ack.Error == nil
		}
		s.q.close()
		if ok {
			s.w.keys.mu.Lock()
			if ke, has := s.w.keys.unmarked[s.subj]; has && ke.seq == s.seq {
				delete(s.w.keys.unmarked, s.subj)
			}
			s.w.keys.mu.Unlock()
		}
	}
	soon := func(d time.Duration) {
		if again == 0 || d < again {
			again = d
		}
	}
	for w := range rooms {
		later := m.raiseWatermark(ctx, w, false)
		if later > 0 {
			soon(later)
		}
		if !w.keys.settled() {
			soon(100 * time.Millisecond)
		}
		if later > 0 || !w.keys.settled() {
			m.mu.Lock()
			m.dirty[w] = true
			m.mu.Unlock()
		}
	}
	return again
}

// raiseWatermark writes w's room's watermark below its oldest unmarked event when it has moved,
// and watermarkEvery has passed since the last write (or now, when asked); it returns how long
// until a move not written yet is due (0: none).
func (m *marker) raiseWatermark(ctx context.Context, w *roomWriter, now bool) time.Duration {
	k := &w.keys
	k.mu.Lock()
	at := k.known
	for _, ke := range k.unmarked {
		at = min(at, ke.seq-1)
	}
	moved := k.ready && at > k.watermark
	wait := watermarkEvery - time.Since(k.watermarked)
	k.mu.Unlock()
	switch {
	case !moved:
		return 0
	case !now && wait > 0:
		return wait
	}
	if _, err := m.l.publishWatermark(ctx, w.room, at, false); err != nil {
		m.l.opts.Logger.Debug("raising a room's key watermark", "room", w.room, "err", err)
		return watermarkEvery
	}
	k.mu.Lock()
	k.watermark, k.watermarked = max(k.watermark, at), time.Now()
	k.mu.Unlock()
	return 0
}

// waitSettled waits until every keyed event of w's room it knows of has its marker.
func (l *Log) waitSettled(ctx context.Context, w *roomWriter) error {
	for !w.keys.settled() {
		l.marks.add(w)
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventlog/jetstream: the key markers of %q: %w", w.room, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
