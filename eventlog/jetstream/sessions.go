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
// message of each subject. nats.go recreates an ordered consumer after a gap or a missed
// heartbeat, and at every Fetch (hence Messages here), and one recreated delivers every message
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
	pending := c.CachedInfo().NumPending
	if pending == 0 {
		return nil
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
	}
	defer it.Stop()
	type last struct {
		seq uint64
		msg jetstream.Msg
	}
	bySubject := map[string]last{}
	for pending > 0 {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if seen, ok := bySubject[m.Subject()]; !ok || meta.Sequence.Stream > seen.seq {
			bySubject[m.Subject()] = last{meta.Sequence.Stream, m}
		}
		pending = meta.NumPending
	}
	msgs := slices.SortedFunc(maps.Values(bySubject), func(a, b last) int { return cmp.Compare(a.seq, b.seq) })
	for _, m := range msgs {
		if err := fn(m.msg); err != nil {
			return err
		}
	}
	return nil
}
