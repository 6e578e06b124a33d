package webhooks

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/roomlog/roomlog/eventlog"
)

// A reader reads a webhook's events in log order and keeps its durable cursor. There are two:
// on a log one process owns (the embedded backend), the order is the order of ids and the
// cursor is kept with the log's Cursors; on a log several nodes share (JetStream), the order is
// the log's feed and the cursor is the value of a lease only one node holds at a time.
type reader interface {
	// cursor is the durable cursor as the reader was opened, as text: an id, or a feed
	// position ("" for the start).
	cursor() string
	// read returns the events after position after that the webhook delivers, among up to
	// limit read, and the position past them (next == after: caught up).
	read(ctx context.Context, after string, limit int) (batch []eventlog.Event, next string, err error)
	// commit records next as the durable cursor; eventlog.ErrLeaseLost when this node no
	// longer delivers the webhook.
	commit(ctx context.Context, next string) error
	// lost is closed when this node must stop delivering (never, on one node).
	lost() <-chan struct{}
	close()
}

// openReader waits until this node may deliver the webhook (at once on one node; once it holds
// the webhook's lease on a shared log) and returns its reader from the durable cursor.
func (w *Webhook) openReader(ctx context.Context) (reader, error) {
	if shared, ok := w.store.(sharedStore); ok {
		lease, err := shared.Acquire(ctx, w.cfg.Name)
		if err != nil {
			return nil, err
		}
		pos, err := parsePosition(lease.Value())
		if err != nil {
			lease.Release()
			return nil, fmt.Errorf("the cursor in lease %q: %w", w.cfg.Name, err)
		}
		return &feedReader{w: w, feed: shared, lease: lease, start: pos}, nil
	}
	id, err := w.store.Cursor(ctx, CursorUser, w.cfg.Name, CursorRoom)
	if err != nil {
		return nil, fmt.Errorf("reading the cursor: %w", err)
	}
	return &idReader{w: w, start: id}, nil
}

// sharedStore is a log several nodes share.
type sharedStore interface {
	eventlog.Feeder
	eventlog.Leaser
}

// idReader reads a log of one process in the order of ids (Auditor.Scan).
type idReader struct {
	w     *Webhook
	start eventlog.ID
}

func (r *idReader) read(ctx context.Context, after string, limit int) ([]eventlog.Event, string, error) {
	from, err := parseIDText(after)
	if err != nil {
		return nil, after, err
	}
	var batch []eventlog.Event
	scanned := from
	f := eventlog.ScanFilter{Rooms: r.w.cfg.Rooms, After: from, Limit: limit}
	if len(r.w.cfg.Kinds) == 1 {
		f.Kind = r.w.cfg.Kinds[0]
	}
	err = r.w.store.Scan(ctx, f, func(e eventlog.Event) error {
		scanned = e.ID
		if r.w.wants(&e) {
			batch = append(batch, e)
		}
		return nil
	})
	return batch, idText(scanned), err
}

func (r *idReader) commit(ctx context.Context, next string) error {
	id, err := parseIDText(next)
	if err != nil {
		return err
	}
	return r.w.store.SetCursor(ctx, CursorUser, r.w.cfg.Name, CursorRoom, id)
}

func (r *idReader) cursor() string        { return idText(r.start) }
func (r *idReader) lost() <-chan struct{} { return nil }
func (r *idReader) close()                {}

// parseIDText reads idText.
func parseIDText(s string) (eventlog.ID, error) {
	if s == "" {
		return eventlog.ID{}, nil
	}
	return eventlog.ParseID(s)
}

func idText(id eventlog.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// feedReader reads a shared log's feed while this node holds the webhook's lease, whose value is
// the feed position delivered up to, in decimal.
type feedReader struct {
	w     *Webhook
	feed  eventlog.Feeder
	lease eventlog.Lease
	start uint64
}

func (r *feedReader) read(ctx context.Context, after string, limit int) ([]eventlog.Event, string, error) {
	from, err := parsePosition([]byte(after))
	if err != nil {
		return nil, after, err
	}
	var batch []eventlog.Event
	reached, err := r.feed.Feed(ctx, from, limit, func(e *eventlog.Event) error {
		if r.w.wantsRoom(e.Room) && r.w.wants(e) {
			batch = append(batch, *e)
		}
		return nil
	})
	return batch, positionText(reached), err
}

func (r *feedReader) commit(ctx context.Context, next string) error {
	if _, err := parsePosition([]byte(next)); err != nil {
		return err
	}
	return r.lease.Store(ctx, []byte(next))
}

func (r *feedReader) cursor() string        { return positionText(r.start) }
func (r *feedReader) lost() <-chan struct{} { return r.lease.Lost() }
func (r *feedReader) close()                { r.lease.Release() }

func positionText(pos uint64) string {
	if pos == 0 {
		return ""
	}
	return strconv.FormatUint(pos, 10)
}

// parsePosition reads a feed position as a lease keeps it ("" or nil: the start).
func parsePosition(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	pos, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, errors.New("not a feed position")
	}
	return pos, nil
}
