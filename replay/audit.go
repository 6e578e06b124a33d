package replay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// FilterArgs is an audit filter as people write it (command-line flags, URL query parameters).
type FilterArgs struct {
	Rooms []string // room names or prefix patterns ending in '*'
	User  string
	Kind  string
	Since string // RFC 3339 time or event id: events at or after it
	Until string // RFC 3339 time or event id: events before it
	After string // event id: events after it
	Limit string // at most this many events; empty or 0 for all
}

// ParseFilter turns FilterArgs into an eventlog.ScanFilter, with an error naming the bad argument.
func ParseFilter(a FilterArgs) (eventlog.ScanFilter, error) {
	var f eventlog.ScanFilter
	for _, r := range a.Rooms {
		for _, p := range strings.Split(r, ",") {
			if p == "" {
				continue
			}
			if err := eventlog.ValidPattern(p); err != nil {
				return f, fmt.Errorf("room: %w", err)
			}
			f.Rooms = append(f.Rooms, p)
		}
	}
	f.User, f.Kind = a.User, a.Kind
	if f.Kind != "" {
		if err := eventlog.ValidKind(f.Kind); err != nil {
			return f, fmt.Errorf("kind: %w", err)
		}
	}
	var err error
	if f.Since, err = ParseBound(a.Since); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = ParseBound(a.Until); err != nil {
		return f, fmt.Errorf("until: %w", err)
	}
	if f.After, err = eventlog.ParseID(a.After); err != nil {
		return f, fmt.Errorf("after: %w", err)
	}
	if a.Limit != "" {
		n, err := strconv.Atoi(a.Limit)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit must be a non-negative integer, got %q", a.Limit)
		}
		f.Limit = n
	}
	return f, nil
}

// ParseBound reads a time bound: an RFC 3339 time (the smallest id of its millisecond) or an
// event id. The empty string is no bound.
func ParseBound(s string) (eventlog.ID, error) {
	if s == "" {
		return eventlog.ID{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return eventlog.MinIDAt(t), nil
	}
	id, err := eventlog.ParseID(s)
	if err != nil {
		return id, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-27T10:21:06Z) nor an event id", s)
	}
	return id, nil
}

// AuditSource is what Audit reads: a log it can scan, and watch to follow.
type AuditSource interface {
	eventlog.Auditor
	Watch(room string) *eventlog.Watch
}

// Audit calls emit for every event matching f across rooms in id order, calling flush after each
// pass over the log. With follow it then waits for new events and goes on until ctx ends; every
// event is emitted once, none is skipped (each pass is a snapshot that the next one continues).
func Audit(ctx context.Context, log AuditSource, f eventlog.ScanFilter, follow bool, emit func(*eventlog.Event) error, flush func() error) error {
	var w *eventlog.Watch
	if follow {
		w = log.Watch("")
		defer w.Close()
	}
	remaining := f.Limit
	for {
		err := log.Scan(ctx, f, func(e eventlog.Event) error {
			if err := emit(&e); err != nil {
				return err
			}
			f.After = e.ID
			if remaining > 0 {
				remaining--
				if remaining == 0 {
					return errLimit
				}
			}
			return nil
		})
		if err == errLimit {
			return flush()
		}
		if err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		f.Limit = remaining
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-w.C():
			if !ok {
				return nil // the log closed
			}
		}
	}
}

var errLimit = fmt.Errorf("limit reached")
