package jetstream

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Sessions implements eventlog.SessionIndex from the membership markers: the last marker of each
// session's subject is its join, or empty after its leave. On a log shared by several nodes,
// these include the sessions other nodes are serving now.
func (l *Log) Sessions(ctx context.Context, fn func(eventlog.Session) error) error {
	if l.isClosed() {
		return eventlog.ErrClosed
	}
	return l.lastPerSubject(ctx, l.subj.allSessions(), func(m jetstream.Msg) error {
		if len(m.Data()) == 0 {
			return nil // left
		}
		var sm sessionMarker
		if err := json.Unmarshal(m.Data(), &sm); err != nil {
			return fmt.Errorf("%w: membership marker %s: %v", eventlog.ErrCorrupt, m.Subject(), err)
		}
		room, err := l.subj.roomOf(m.Subject()[:len(m.Subject())-len(hashToken("", ""))-1])
		if err != nil {
			return fmt.Errorf("%w: %v", eventlog.ErrCorrupt, err)
		}
		return fn(eventlog.Session{Room: room, User: sm.User, Session: sm.Session, Joined: sm.Joined})
	})
}

// lastPerSubject calls fn with the last message of every subject matching filter, in stream
// order, read through an ordered consumer that lives for the call and starts with the last
// message of each subject.
//
// It reads in batches that take what is there and never wait (FetchNoWait), and ends at the
// first batch short of full: a message pending when the consumer was made may be purged before
// it is delivered (a session that left is forgotten, forget.go), and a read that waited for
// everything once pending would wait for it forever. nats.go recreates an ordered consumer at
// every fetch (and after a gap or a missed heartbeat), and the new one delivers every message
// after the last it saw, not only the last of each subject; so messages are kept by subject, a
// later one replacing an earlier, and handed to fn once all have come.
func (l *Log) lastPerSubject(ctx context.Context, filter string, fn func(jetstream.Msg) error) error {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	c, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
	}
	if c.CachedInfo().NumPending == 0 {
		return nil
	}
	type last struct {
		seq uint64
		msg jetstream.Msg
	}
	bySubject := map[string]last{}
	for {
		batch, err := c.FetchNoWait(listBatch)
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
		}
		n := 0
		for done := false; !done; {
			select {
			case <-ctx.Done():
				return fmt.Errorf("eventlog/jetstream: %s: %w", filter, ctx.Err())
			case m, ok := <-batch.Messages():
				if !ok {
					done = true
					break
				}
				n++
				meta, err := m.Metadata()
				if err != nil {
					return err
				}
				if seen, ok := bySubject[m.Subject()]; !ok || meta.Sequence.Stream > seen.seq {
					bySubject[m.Subject()] = last{meta.Sequence.Stream, m}
				}
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
		}
		if n < listBatch {
			break // nothing more was there
		}
	}
	msgs := slices.SortedFunc(maps.Values(bySubject), func(a, b last) int { return cmp.Compare(a.seq, b.seq) })
	for _, m := range msgs {
		if err := fn(m.msg); err != nil {
			return err
		}
	}
	return nil
}

// listBatch is how many messages one fetch of lastPerSubject asks for.
const listBatch = 1024
