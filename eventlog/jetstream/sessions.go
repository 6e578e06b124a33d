package jetstream

import (
	"context"
	"encoding/json"
	"fmt"

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

// lastPerSubject calls fn with the last message of every subject matching filter, through an
// ordered consumer that lives for the call.
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
	for pending > 0 {
		batch, err := c.Fetch(int(min(pending, 256)), jetstream.FetchContext(ctx))
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			if err := fn(m); err != nil {
				return err
			}
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("eventlog/jetstream: %s: %w", filter, err)
		}
	}
	return nil
}
