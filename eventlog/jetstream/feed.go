package jetstream

import (
	"context"
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
)

// feedPage bounds the events of one direct get of a Feed.
const feedPage = 1024

var _ eventlog.Feeder = (*Log)(nil)

// Feed implements eventlog.Feeder: a position is a stream sequence, and the feed reads the
// event subjects (P.ev.>) in sequence order. A replica behind the leader answers a prefix of
// what the leader has (the stream is one Raft log, applied in order), so a Feed may stop short
// of the newest events but never skips one; an atomic batch becomes readable whole.
func (l *Log) Feed(ctx context.Context, after uint64, limit int, fn func(*eventlog.Event) error) (uint64, error) {
	if limit <= 0 {
		return after, fmt.Errorf("eventlog/jetstream: feed: %w: %d", eventlog.ErrBadLimit, limit)
	}
	if l.isClosed() {
		return after, eventlog.ErrClosed
	}
	reached := after
	for n := 0; n < limit; {
		ask := min(limit-n, feedPage)
		page, err := l.direct(ctx, getRequest{Seq: reached + 1, NextFor: l.subj.allEvents(), Batch: ask})
		if err != nil {
			return reached, fmt.Errorf("eventlog/jetstream: feed after %d: %w", reached, err)
		}
		for i := range page {
			m := &page[i]
			room, err := l.subj.roomOf(m.subj)
			if err != nil {
				return reached, fmt.Errorf("%w: stream message %d: %v", eventlog.ErrCorrupt, m.seq, err)
			}
			ev, err := m.event(room)
			if err != nil {
				return reached, err
			}
			if err := fn(&ev); err != nil {
				return reached, err
			}
			reached = m.seq
			n++
		}
		if len(page) < ask {
			break
		}
	}
	return reached, nil
}
