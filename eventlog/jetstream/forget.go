package jetstream

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// Forgetting the sessions that left. A session's subject (P.sess.R.S) takes a marker at its
// join, at every presence update and at its leave; kept, a room's markers would be those of every
// session that ever joined it, and listing its members (RoomMembers), a node's start (Sessions)
// and the sweep of dead nodes would read them all. So once a leave is stored, its session's
// subject is purged below the leave marker's next sequence: its join, its presence updates and
// the leave go, and the subject is empty, which reads as a session that left, as the leave
// marker did.
//
// The purge is bounded by that sequence, so a join of the same session stored after the leave
// stays. A batch planned before the purge expects the subject's old last sequence; JetStream
// refuses it as it refuses any batch that lost a race, and the batch reads the marker again.
//
// Purges run on one goroutine, apart from the appends (a leave is acked once stored, not once
// forgotten), at most forgetRate a second: a purge costs the stream several times an append
// (JetStream finds and removes the subject's messages and writes tombstones), and a burst of
// leaves (a meeting ending) must not slow the appends of every room. A purge that did not happen
// (a full queue, a crash, JetStream out of reach) leaves an empty marker behind; the sweep
// (nodes.go) lists the markers, and queues every empty one it finds, including those of logs
// written before markers were forgotten.

// forgetQueue bounds the purges waiting; past it they are dropped, for the sweep to find.
const forgetQueue = 4096

// forgetRate is how many purges a node makes a second, at most.
const forgetRate rate.Limit = 50

// leftMarker is a stored leave marker: its session's subject and its stream sequence.
type leftMarker struct {
	subject string
	seq     uint64
}

// forgetter purges the markers of the sessions that left, for one node; nil on a read-only log,
// where its methods do nothing.
type forgetter struct {
	l     *Log
	queue chan leftMarker
	limit *rate.Limiter
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func startForgetter(l *Log) *forgetter {
	ctx, cancel := context.WithCancel(context.Background())
	f := &forgetter{l: l, queue: make(chan leftMarker, forgetQueue), limit: rate.NewLimiter(forgetRate, int(forgetRate)), stop: cancel}
	f.wg.Go(func() { f.run(ctx) })
	return f
}

// forget queues the purge of a session's markers up to and including its leave marker, without
// waiting.
func (f *forgetter) forget(m leftMarker) {
	if f == nil {
		return
	}
	select {
	case f.queue <- m:
	default: // the sweep will find it
	}
}

func (f *forgetter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-f.queue:
			if err := f.limit.Wait(ctx); err != nil {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, f.l.opts.Timeout)
			err := f.l.stream.Purge(pctx, jetstream.WithPurgeSubject(m.subject), jetstream.WithPurgeSequence(m.seq+1))
			cancel()
			if err != nil && ctx.Err() == nil {
				f.l.opts.Logger.Debug("could not remove the markers of a session that left; the sweep will", "subject", m.subject, "err", err)
			}
		}
	}
}

// close stops the purges; those queued are left to a sweep.
func (f *forgetter) close() {
	if f == nil {
		return
	}
	f.stop()
	f.wg.Wait()
}
