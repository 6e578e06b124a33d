package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Cursors live in the bucket <Stream>_ACKS under a hash of (user, session, room); a value is the
// 16-byte id. A cursor only moves forward: SetCursor updates on the revision it read, and reads
// again when another node moved it meanwhile. The node remembers the cursors it wrote, with
// their revisions, so that a session's next ack is one update, not a read and an update.

// maxCursorsCached bounds the cursors a node remembers; past it, it forgets them all.
const maxCursorsCached = 100_000

// cursor is a cursor as this node last wrote or read it.
type cursor struct {
	id       eventlog.ID
	revision uint64
}

// SetCursor implements eventlog.Cursors.
func (l *Log) SetCursor(ctx context.Context, user, session, room string, id eventlog.ID) error {
	if err := eventlog.CheckCursor(user, session, room, id); err != nil {
		return err
	}
	if l.isClosed() {
		return eventlog.ErrClosed
	}
	if l.opts.ReadOnly {
		return ErrReadOnly
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	key := hashToken(user, session, room)
	l.cursorsMu.Lock()
	known, cached := l.cursors[key]
	l.cursorsMu.Unlock()
	for range maxRetries {
		if !cached {
			var err error
			if known, _, err = l.readCursor(ctx, key); err != nil {
				return fmt.Errorf("eventlog/jetstream: ack: %w", err)
			}
		}
		if known.revision > 0 && known.id.Compare(id) >= 0 {
			return nil // an older ack never moves the cursor back
		}
		var rev uint64
		var err error
		if known.revision == 0 {
			rev, err = l.acks.Create(ctx, key, id[:])
		} else {
			rev, err = l.acks.Update(ctx, key, id[:], known.revision)
		}
		if err == nil {
			l.rememberCursor(key, cursor{id: id, revision: rev})
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("eventlog/jetstream: ack: %w", err)
		}
		cached = false // another node moved it: read it again
	}
	return fmt.Errorf("eventlog/jetstream: ack: the cursor kept changing under %d attempts", maxRetries)
}

func (l *Log) rememberCursor(key string, c cursor) {
	l.cursorsMu.Lock()
	defer l.cursorsMu.Unlock()
	if len(l.cursors) >= maxCursorsCached {
		clear(l.cursors)
	}
	l.cursors[key] = c
}

// Cursor implements eventlog.Cursors.
func (l *Log) Cursor(ctx context.Context, user, session, room string) (eventlog.ID, error) {
	if l.isClosed() {
		return eventlog.ID{}, eventlog.ErrClosed
	}
	c, size, err := l.readCursor(ctx, hashToken(user, session, room))
	switch {
	case err != nil:
		return eventlog.ID{}, fmt.Errorf("eventlog/jetstream: ack: %w", err)
	case size != 0 && size != 16:
		return eventlog.ID{}, fmt.Errorf("%w: cursor of %q in %q is %d bytes", eventlog.ErrCorrupt, user, room, size)
	}
	return c.id, nil
}

// readCursor reads the cursor under key from the bucket's leader, with the size of its value
// (0 when there is none): a replica may not have the last ack yet, and a cursor read behind
// would replay what the session acked, or fail the update made on its revision. A value that
// is not an id gives a cursor with its revision and no id.
func (l *Log) readCursor(ctx context.Context, key string) (cursor, int, error) {
	m, err := l.leaderOf(ctx, "KV_"+l.acks.Bucket(), getRequest{LastFor: "$KV." + l.acks.Bucket() + "." + key})
	switch {
	case err != nil:
		return cursor{}, 0, err
	case m == nil:
		return cursor{}, 0, nil
	case m.hdr.Get(kvOperation) != "": // deleted or purged: no cursor, and Create takes the key
		return cursor{}, 0, nil
	case len(m.data) == 16:
		return cursor{id: eventlog.ID(m.data), revision: m.seq}, 16, nil
	default:
		return cursor{revision: m.seq}, len(m.data), nil
	}
}

// kvOperation is the header of a bucket's delete and purge markers.
const kvOperation = "KV-Operation"
