package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Cursors live in the bucket <Stream>_ACKS under a hash of (user, session, room); a value is the
// 16-byte id. A cursor only moves forward: SetAck updates on the revision it read, and reads
// again when another node moved it meanwhile.

// SetAck implements eventlog.Cursors.
func (l *Log) SetAck(ctx context.Context, user, session, room string, id eventlog.ID) error {
	if err := eventlog.CheckAck(user, session, room, id); err != nil {
		return err
	}
	if l.isClosed() {
		return eventlog.ErrClosed
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	key := hashToken(user, session, room)
	for range maxRetries {
		e, err := l.acks.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = l.acks.Create(ctx, key, id[:])
		case err != nil:
			return fmt.Errorf("eventlog/jetstream: ack: %w", err)
		case len(e.Value()) == 16 && eventlog.ID(e.Value()).Compare(id) >= 0:
			return nil // an older ack never moves the cursor back
		default:
			_, err = l.acks.Update(ctx, key, id[:], e.Revision())
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("eventlog/jetstream: ack: %w", err)
		}
	}
	return fmt.Errorf("eventlog/jetstream: ack: the cursor kept changing under %d attempts", maxRetries)
}

// Ack implements eventlog.Cursors.
func (l *Log) Ack(ctx context.Context, user, session, room string) (eventlog.ID, error) {
	if l.isClosed() {
		return eventlog.ID{}, eventlog.ErrClosed
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	e, err := l.acks.Get(ctx, hashToken(user, session, room))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return eventlog.ID{}, nil
	}
	if err != nil {
		return eventlog.ID{}, fmt.Errorf("eventlog/jetstream: ack: %w", err)
	}
	if len(e.Value()) != 16 {
		return eventlog.ID{}, fmt.Errorf("%w: cursor of %q in %q is %d bytes", eventlog.ErrCorrupt, user, room, len(e.Value()))
	}
	return eventlog.ID(e.Value()), nil
}
