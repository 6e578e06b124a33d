package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Nodes that die. Every node puts a heartbeat into the bucket <Stream>_NODES once per
// Options.Heartbeat; the entry's time is the server's, so nodes judge each other by one clock. A
// node whose last heartbeat is three of its heartbeats older than this node's is dead (one whose
// entry is gone is long dead). Each node sweeps: it lists the membership markers, and a session
// whose node is dead, still a member OrphanGrace after this node first saw it so, gets its leave
// event, conditional on its marker not having moved (so of several sweeping nodes one writes it,
// and a session that reconnected elsewhere meanwhile keeps its membership). The markers are
// listed at start, when a node dies, and while orphans wait; otherwise every sweepEvery.

const sweepEvery = 30 // heartbeats between sweeps when no node is dead

var validNode = regexp.MustCompile(`^[-_a-zA-Z0-9]{1,64}$`)

type nodes struct {
	l    *Log
	kv   jetstream.KeyValue
	done chan struct{}
	wg   sync.WaitGroup

	// Used by the heartbeat goroutine only.
	dead    map[string]bool      // nodes found dead
	orphans map[string]time.Time // marker subject -> when first found orphaned
	ticks   int
}

func startNodes(ctx context.Context, l *Log, replicas int) (*nodes, error) {
	if !validNode.MatchString(l.node) {
		return nil, fmt.Errorf("eventlog/jetstream: node name %q: 1-64 of A-Z a-z 0-9 _ -", l.node)
	}
	var kv jetstream.KeyValue
	err := l.retry(ctx, func(ctx context.Context) (err error) {
		kv, err = l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: l.opts.Stream + "_NODES", Description: "roomlog node heartbeats", Replicas: replicas,
			Storage: jetstream.FileStorage, TTL: time.Hour,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: bucket %s_NODES: %w", l.opts.Stream, err)
	}
	n := &nodes{l: l, kv: kv, done: make(chan struct{}), dead: map[string]bool{}, orphans: map[string]time.Time{}}
	if err := l.retry(ctx, func(ctx context.Context) error { _, err := n.beat(ctx); return err }); err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go n.run()
	return n, nil
}

func (n *nodes) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.l.opts.Heartbeat)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), n.l.opts.Timeout)
		if err := n.tick(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.l.opts.Logger.Warn("node heartbeat or sweep failed", "node", n.l.node, "err", err)
		}
		cancel()
		select {
		case <-n.done:
			return
		case <-t.C:
		}
	}
}

// beat puts this node's heartbeat and returns its time (the server's). The time is read from
// the bucket's leader: a replica may not have the heartbeat yet.
func (n *nodes) beat(ctx context.Context) (time.Time, error) {
	ms := strconv.FormatInt(n.l.opts.Heartbeat.Milliseconds(), 10)
	rev, err := n.kv.PutString(ctx, n.l.node, ms)
	if err != nil {
		return time.Time{}, fmt.Errorf("heartbeat: %w", err)
	}
	m, err := n.l.leaderOf(ctx, "KV_"+n.kv.Bucket(), getRequest{Seq: rev})
	switch {
	case err != nil:
		return time.Time{}, fmt.Errorf("heartbeat: %w", err)
	case m == nil || m.time.IsZero():
		return time.Time{}, fmt.Errorf("heartbeat: revision %d of %s is missing", rev, n.kv.Bucket())
	}
	return m.time, nil
}

func (n *nodes) tick(ctx context.Context) error {
	now, err := n.beat(ctx)
	if err != nil {
		return err
	}
	alive, newlyDead, err := n.census(ctx, now)
	if err != nil {
		return err
	}
	n.ticks++
	if !newlyDead && len(n.orphans) == 0 && n.ticks%sweepEvery != 1 {
		return nil
	}
	return n.sweep(ctx, alive)
}

// census reads the heartbeats: the nodes alive as of now, and whether one was found dead that
// was not before.
func (n *nodes) census(ctx context.Context, now time.Time) (map[string]bool, bool, error) {
	w, err := n.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, false, err
	}
	defer w.Stop()
	alive := map[string]bool{}
	newlyDead := false
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if e == nil {
			return alive, newlyDead, nil // the current values have all come
		}
		every, _ := strconv.Atoi(string(e.Value()))
		if now.Sub(e.Created()) < 3*time.Duration(every)*time.Millisecond {
			alive[e.Key()] = true
			delete(n.dead, e.Key())
		} else if !n.dead[e.Key()] {
			n.dead[e.Key()], newlyDead = true, true
		}
	}
}

// sweep writes the leave of every session whose node is not alive and has been an orphan for
// the grace period, and queues the removal of the markers of sessions that left.
func (n *nodes) sweep(ctx context.Context, alive map[string]bool) error {
	seen := map[string]bool{}
	var due []orphan
	err := n.l.lastPerSubject(ctx, n.l.subj.allSessions(), func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if len(m.Data()) == 0 { // a session that left, whose markers were not removed (forget.go)
			n.l.forgets.forget(leftMarker{subject: m.Subject(), seq: meta.Sequence.Stream})
			return nil
		}
		st := &memberState{marker: &sessionMarker{}, seq: meta.Sequence.Stream}
		if err := json.Unmarshal(m.Data(), st.marker); err != nil {
			return fmt.Errorf("%w: membership marker %d: %v", eventlog.ErrCorrupt, st.seq, err)
		}
		if alive[st.marker.Node] {
			return nil
		}
		subj := m.Subject()
		seen[subj] = true
		since, ok := n.orphans[subj]
		if !ok {
			n.orphans[subj], since = time.Now(), time.Now()
		}
		if time.Since(since) >= n.l.opts.OrphanGrace {
			room, err := n.l.subj.roomOf(subj[:len(subj)-len(hashToken("", ""))-1])
			if err != nil {
				return err
			}
			due = append(due, orphan{room: room, marker: st.marker, seq: st.seq})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for subj := range n.orphans {
		if !seen[subj] {
			delete(n.orphans, subj) // left, or taken over
		}
	}
	for _, o := range due {
		seq := o.seq
		_, err := n.l.enqueue(&appendOp{
			req: eventlog.AppendRequest{Room: o.room, User: o.marker.User, Session: o.marker.Session, Kind: eventlog.KindLeave, System: true},
			p:   eventlog.NewPending(), sweep: &seq,
		}).Wait(ctx)
		if err != nil {
			return fmt.Errorf("leave of %s/%s in %q (node %s is gone): %w", o.marker.User, o.marker.Session, o.room, o.marker.Node, err)
		}
		n.l.opts.Logger.Info("wrote the leave of a session whose node is gone", "room", o.room, "user", o.marker.User, "session", o.marker.Session, "node", o.marker.Node)
	}
	return nil
}

type orphan struct {
	room   string
	marker *sessionMarker
	seq    uint64
}

// stop ends the heartbeats; gone deletes this node's, so the others know at once.
func (n *nodes) stop(gone bool) {
	close(n.done)
	n.wg.Wait()
	if !gone {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.l.opts.Timeout)
	defer cancel()
	n.kv.Delete(ctx, n.l.node)
}
