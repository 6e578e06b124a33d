package boltlog

import (
	"fmt"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
)

// A failed commit stops the log (PostgreSQL's "fsyncgate" lesson). When bbolt's Commit returns an
// error, whatever it was (a failed fsync, a full disk, an I/O error), the open file is not to be
// trusted: bbolt may already have written the meta page naming the failed transaction, its
// rollback rebuilds the freelist from that meta, and after a failed fsync the kernel may report
// the unwritten pages clean, so they read back as if written until evicted. So the writer:
//
//  1. fails the batch and every queued append with ErrFailed, publishes the failure to readers
//     waiting on the commit (none of them returns any of it), and logs the cause once;
//  2. closes bbolt, drops the file's pages from the kernel's cache (so what is read next comes from
//     the disk, not from pages a failed fsync left behind), opens and checks the file again, and
//     fsyncs it: only once that fsync succeeds is anything served from it;
//  3. serves reads again at once, and appends after a backoff that doubles with each failure in a
//     row (none after the first), up to maxFailBackoff; a successful commit ends the run.
//
// An append of the failed batch thus has an unknown outcome, as after a timeout: it is in the log
// if the file on disk holds it after the reopen, and an idempotent retry then gets it back as a
// duplicate (the key index is rebuilt from the reopened file), or it is not and the retry appends
// it once. No ack is ever sent from a file state that was not read back from disk.
const (
	minFailBackoff = 100 * time.Millisecond
	maxFailBackoff = 5 * time.Second
)

// failState is the log's condition after a failed commit, swapped whole (atomic.Pointer).
type failState struct {
	err       error     // wraps ErrFailed and the cause
	reopening bool      // the file is closed: reads wait for it, or fail when it cannot be reopened
	until     time.Time // appends are refused until then
}

// Health reports whether the log accepts appends: nil when it does, an error wrapping ErrFailed
// after a failed commit, until the file has been reopened and the backoff has passed.
func (l *Log) Health() error {
	if f := l.failure.Load(); f != nil && (f.reopening || time.Now().Before(f.until)) {
		return f.err
	}
	return nil
}

// unavailable is the error of a read while the file is closed for reopening.
func (l *Log) unavailable() error {
	if f := l.failure.Load(); f != nil {
		return f.err
	}
	return eventlog.ErrClosed
}

// recoverFrom runs on the writer after commit failed with failed (which stopped the log): it
// reopens the file from disk, retrying with backoff while that fails, and resumes. It returns
// false when the log was closed meanwhile.
func (l *Log) recoverFrom(failed error) bool {
	l.failures++
	l.opts.Logger.Error("event log commit failed: appends refused until the file is reopened from disk",
		"path", l.path, "err", failed, "failures_in_a_row", l.failures)
	backoff := minFailBackoff
	for {
		err := l.reopen()
		if err == nil {
			break
		}
		l.opts.Logger.Error("event log reopen failed; retrying", "path", l.path, "err", err, "retry_in", backoff)
		if !l.idle(backoff, failed) {
			return false
		}
		backoff = min(2*backoff, maxFailBackoff)
	}
	wait := time.Duration(0)
	for range l.failures - 1 { // doubled per failure in a row, without overflowing
		wait = min(max(2*wait, minFailBackoff), maxFailBackoff)
	}
	l.failure.Store(&failState{err: failed, until: time.Now().Add(wait)})
	l.opts.Logger.Info("event log reopened from disk", "path", l.path, "appends_resume_in", wait)
	l.notifyAll() // what the reopened file holds may differ from what readers last saw
	return true
}

// recovered ends a run of failures after a successful commit.
func (l *Log) recovered() {
	if l.failures > 0 {
		l.failures = 0
		l.failure.Store(nil)
	}
}

// idle waits d while failing whatever is queued with err. It returns false when the log was
// closed.
func (l *Log) idle(d time.Duration, err error) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case op, ok := <-l.ops:
			if !ok {
				return false
			}
			op.finish(err)
		case <-t.C:
			return true
		}
	}
}

// failQueued fails every operation waiting in the queue with err, without blocking.
func (l *Log) failQueued(err error) {
	for {
		select {
		case op, ok := <-l.ops:
			if !ok {
				return
			}
			op.finish(err)
		default:
			return
		}
	}
}

// reopen closes the file and opens it again from disk. Readers wait while it runs, and fail with
// the commit's error when it fails.
func (l *Log) reopen() error {
	done := make(chan struct{})
	l.state.Lock()
	old := l.db
	l.db, l.reopening = nil, done
	l.state.Unlock()
	defer func() {
		l.state.Lock()
		l.reopening = nil
		l.state.Unlock()
		close(done)
	}()
	l.headroom.close()
	l.headroom = nil
	if old != nil {
		old.Close() // its error adds nothing: the file is being reopened because it failed
	}
	dropPageCache(l.path)
	db, err := openBolt(l.path, l.opts)
	if err != nil {
		return err
	}
	// What the failed commit left in the disk's own cache reads back like the rest: make it
	// durable, or fail, before anything is served from it.
	if err := db.Sync(); err != nil {
		db.Close()
		return fmt.Errorf("eventlog: sync %s after reopening: %w", l.path, err)
	}
	l.state.Lock()
	l.db = db
	l.mark.reset(^uint64(0)) // just fsynced: every snapshot is durable until load sets the mark
	l.state.Unlock()
	l.ids = eventlog.IDSource{Now: l.opts.Now}
	if err := l.load(); err != nil {
		return l.closeAfter(fmt.Errorf("eventlog: reopen %s: %w", l.path, err))
	}
	l.headroom = openHeadroom(l.path)
	l.fillHeadroom()
	return nil
}

// closeAfter closes the reopened file again after a failure to load it, and returns err.
func (l *Log) closeAfter(err error) error {
	l.state.Lock()
	db := l.db
	l.db = nil
	l.state.Unlock()
	db.Close()
	return err
}

// lastTxID is the transaction id of the file's current meta page.
func lastTxID(db *bolt.DB) (uint64, error) {
	var txid uint64
	err := db.View(func(tx *bolt.Tx) error {
		txid = uint64(tx.ID())
		return nil
	})
	return txid, err
}

// notifyAll wakes every watcher.
func (l *Log) notifyAll() { l.watches.NotifyAll() }
