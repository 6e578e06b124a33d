package boltlog

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// durableMark is the last bbolt transaction whose commit has returned, fsyncs included: the
// durable watermark every read waits for.
//
// Why reads need it: bbolt writes a commit's meta page, releases its meta lock and only then
// fdatasyncs it, so a read transaction begun in between already sees the commit. Were the fsync to
// fail, or the power to go, a reader would have handed out events (and cursors naming them) that
// the file no longer has. So a read whose snapshot is newer than the mark waits for the writer
// to publish it (at most one meta fsync, since the writer commits one transaction at a time) and
// fails if the commit fails. Waiting on the snapshot, rather than filtering event ids, keeps every
// kind of read exact: heads, counts, acks, sessions and whole-file backups, not only events.
type durableMark struct {
	txid atomic.Uint64 // the fast path: a read at or below it proceeds without a lock

	mu      sync.Mutex
	failure error         // set when the commit in flight failed; cleared by reset
	changed chan struct{} // closed and replaced whenever txid or failure changes
}

func newDurableMark(txid uint64) *durableMark {
	m := &durableMark{changed: make(chan struct{})}
	m.txid.Store(txid)
	return m
}

// advance publishes that transaction txid is durable.
func (m *durableMark) advance(txid uint64) {
	m.mu.Lock()
	m.txid.Store(txid)
	m.broadcastLocked()
	m.mu.Unlock()
}

// fail makes every read waiting for a newer transaction fail with err.
func (m *durableMark) fail(err error) {
	m.mu.Lock()
	m.failure = err
	m.broadcastLocked()
	m.mu.Unlock()
}

// reset starts again from a reopened file whose transaction txid is durable.
func (m *durableMark) reset(txid uint64) {
	m.mu.Lock()
	m.failure = nil
	m.txid.Store(txid)
	m.broadcastLocked()
	m.mu.Unlock()
}

func (m *durableMark) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// wait returns once txid is durable, or with the commit's failure, or ctx's error.
func (m *durableMark) wait(ctx context.Context, txid uint64) error {
	for {
		if txid <= m.txid.Load() {
			return nil
		}
		m.mu.Lock()
		failure, changed := m.failure, m.changed
		durable := txid <= m.txid.Load()
		m.mu.Unlock()
		switch {
		case durable:
			return nil
		case failure != nil:
			return failure
		}
		if ctx == nil {
			<-changed
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// view runs fn in a read transaction that sees only durable commits, and turns a panic or a
// memory fault from a damaged file into ErrCorrupt. While the writer reopens the file after a
// failed commit, it waits for the reopen (or ctx); when the reopen failed, it fails with ErrFailed.
func (l *Log) view(ctx context.Context, fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("eventlog: read %s: %w: %v", l.path, eventlog.ErrCorrupt, r)
		}
	}()
	// A file truncated under us faults in bbolt's memory map: make that a panic recovered above.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	for {
		l.state.RLock()
		if l.db != nil {
			break
		}
		reopening := l.reopening
		l.state.RUnlock()
		if reopening == nil {
			return l.unavailable()
		}
		if err := waitClosed(ctx, reopening); err != nil {
			return err
		}
	}
	defer l.state.RUnlock()
	tx, err := l.db.Begin(false)
	if err != nil {
		return fmt.Errorf("eventlog: read %s: %w", l.path, err)
	}
	defer tx.Rollback()
	if err := l.mark.wait(ctx, uint64(tx.ID())); err != nil {
		return err
	}
	return fn(tx)
}

// waitClosed returns when ch is closed, or with ctx's error first; a nil ctx waits for ch.
func waitClosed(ctx context.Context, ch <-chan struct{}) error {
	if ctx == nil {
		<-ch
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
