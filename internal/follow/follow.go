// Package follow reads a room of the event log as it grows: the events after a cursor, then each
// new one as the room's watch says it came. The server's own rooms (token revocations, actions on
// live sessions) are followed this way by every node that shares the log.
package follow

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// Follower follows one room. Its zero value is not usable: Start it.
type Follower struct {
	log   eventlog.Log
	room  string
	apply func(*eventlog.Event)
	wake  func() // after a catch-up that read events; may be nil

	mu     sync.Mutex
	cursor eventlog.ID

	watch *eventlog.Watch
	stop  chan struct{}
	done  chan struct{}
}

// Start reads room's events after after (CatchUp), then follows the room until Close, calling
// apply with each event in log order (under the follower's lock: apply must not call back into
// it), and wake, when not nil, after each catch-up that read any. The first catch-up is Start's
// own: an error there is returned.
func Start(ctx context.Context, log eventlog.Log, room string, after eventlog.ID, apply func(*eventlog.Event), wake func(), logger *slog.Logger) (*Follower, error) {
	f := &Follower{log: log, room: room, apply: apply, wake: wake, cursor: after, stop: make(chan struct{}), done: make(chan struct{})}
	f.watch = log.Watch(room) // before reading: nothing appended meanwhile is missed
	if _, err := f.CatchUp(ctx); err != nil {
		f.watch.Close()
		return nil, err
	}
	go f.run(logger)
	return f, nil
}

func (f *Follower) run(logger *slog.Logger) {
	defer close(f.done)
	for {
		select {
		case <-f.stop:
			return
		case <-f.watch.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := f.CatchUp(ctx)
		cancel()
		if err != nil && !errors.Is(err, eventlog.ErrClosed) {
			logger.Warn("cannot read a room the server follows", "room", f.room, "err", err)
		}
		if n > 0 && f.wake != nil {
			f.wake()
		}
	}
}

// CatchUp applies the room's events after the cursor; n is how many it read.
func (f *Follower) CatchUp(ctx context.Context) (n int, err error) {
	for {
		f.mu.Lock()
		after := f.cursor
		f.mu.Unlock()
		evs, err := f.log.ReadAfter(ctx, f.room, after, 500)
		if err != nil || len(evs) == 0 {
			return n, err
		}
		f.mu.Lock()
		for i := range evs {
			if evs[i].ID.Compare(f.cursor) > 0 { // another catch-up may have applied it
				f.apply(&evs[i])
				f.cursor = evs[i].ID
			}
		}
		f.mu.Unlock()
		n += len(evs)
	}
}

// Close stops following. It must be called once, before the log is closed.
func (f *Follower) Close() {
	close(f.stop)
	f.watch.Close()
	<-f.done
}
