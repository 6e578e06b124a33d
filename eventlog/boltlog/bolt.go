package boltlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/defaults"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FormatVersion is the on-disk format this package writes and reads (see the package comment).
const FormatVersion = 1

// Defaults for Options.
const (
	DefaultLockTimeout = time.Second
	DefaultQueueSize   = 16384
	DefaultMaxBatch    = 4096
)

// Errors opening a data file.
var (
	ErrLocked        = errors.New("data file is locked by another process")
	ErrNotLog        = errors.New("not a roomlog data file")
	ErrFormatVersion = errors.New("unknown data file format version")
)

// Options configure Open. The zero value gives the documented defaults.
type Options struct {
	// MaxBody limits an event body's compact JSON size. Default DefaultMaxBody (64 KiB).
	MaxBody int
	// KeyRetention is how long idempotency keys are remembered. Default
	// eventlog.DefaultKeyRetention (24 h).
	KeyRetention time.Duration
	// LockTimeout is how long Open waits for another process to release the file. Default 1 s.
	LockTimeout time.Duration
	// ReadOnly opens the file without the writer: appends fail, and the file is never modified.
	// Other read-only openers may share it; a writer may not.
	ReadOnly bool
	// QueueSize bounds the appends waiting for the writer; queuing blocks when it is full.
	QueueSize int
	// MaxBatch bounds the appends committed in one transaction.
	MaxBatch int
	// OnCommit, when set, is called by the writer after each commit with the number of
	// operations committed and the time the commit (including fsync) took. It must not block.
	OnCommit func(ops int, took time.Duration)
	// Now is the clock; tests set it. Default time.Now.
	Now func() time.Time
	// Logger gets what the log has to tell an operator: a failed commit and its recovery.
	// Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	defaults.Positive(&o.MaxBody, eventlog.DefaultMaxBody)
	defaults.Positive(&o.KeyRetention, eventlog.DefaultKeyRetention)
	defaults.Positive(&o.LockTimeout, DefaultLockTimeout)
	defaults.Positive(&o.QueueSize, DefaultQueueSize)
	defaults.Positive(&o.MaxBatch, DefaultMaxBatch)
	if o.Now == nil {
		o.Now = time.Now
	}
	defaults.Zero(&o.Logger, slog.Default())
	return o
}

// Bucket and key names of the layout in the package comment.
var (
	bucketMeta     = []byte("meta")
	bucketRooms    = []byte("rooms")
	bucketKeys     = []byte("keys")
	bucketAcks     = []byte("acks")
	bucketSessions = []byte("sessions")
	keyFormat      = []byte("format")
	keyLast        = []byte("last")
	// keyHead is 17 bytes of 0xff: it sorts after every 16-byte id, so the head entry lives in
	// the room's last leaf page, the one each commit rewrites anyway.
	keyHead = bytes.Repeat([]byte{0xff}, 17)
	// keySnapshot (17 x 0xfe) holds the id of the room's latest snapshot, keyFloor (17 x 0xfd)
	// the room's floor after a compaction, encoded as a head. Both sort after every id too.
	keySnapshot = bytes.Repeat([]byte{0xfe}, 17)
	keyFloor    = bytes.Repeat([]byte{0xfd}, 17)
)

// encodeHead is a room head entry (keyHead, keyFloor): id(16) | hash(32) | count(8).
func encodeHead(h eventlog.Head) []byte {
	b := make([]byte, 16+32+8)
	copy(b, h.ID[:])
	copy(b[16:], h.Hash[:])
	binary.BigEndian.PutUint64(b[48:], h.Count)
	return b
}

func decodeHead(b []byte) (eventlog.Head, error) {
	var h eventlog.Head
	if len(b) != 56 {
		return h, fmt.Errorf("%w: room head entry is %d bytes, want 56", eventlog.ErrCorrupt, len(b))
	}
	copy(h.ID[:], b)
	copy(h.Hash[:], b[16:])
	h.Count = binary.BigEndian.Uint64(b[48:])
	return h, nil
}

// Log is the embedded backend: one bbolt file, one writer goroutine doing group commit.
type Log struct {
	path string
	opts Options

	// state guards db: readers hold it shared for a whole read transaction, the writer
	// exclusively to swap the file when it reopens it after a failed commit (db is nil while the
	// file is closed). reopening is non-nil while the writer reopens the file: it is closed when
	// the reopen ends, so a read waits through a reopen instead of failing.
	state     sync.RWMutex
	db        *bolt.DB
	reopening chan struct{}
	// mark is the durable watermark reads wait for; failure is non-nil after a failed commit
	// until a commit succeeds again (see failure.go).
	mark    *durableMark
	failure atomic.Pointer[failState]

	// mu guards closed and sending on ops: AppendAsync holds it shared while queuing, Close
	// exclusively to close ops once, so no send can hit a closed channel.
	mu     sync.RWMutex
	closed bool
	ops    chan *writeOp
	done   chan struct{} // closed when the writer has exited

	watches eventlog.Watchers

	// compactChunk is how many events one compaction step removes (defaultCompactChunk), and
	// verifyChunk how many Verify checks per read transaction (defaultVerifyChunk); test hooks,
	// set right after Open.
	compactChunk, verifyChunk int

	// Owned by the writer goroutine.
	failures int // failed commits in a row
	ids      eventlog.IDSource
	keys     keyIndex
	headroom *headroom // nil when read-only or when filling failed
}

// Log has every role of a Store, and HealthChecker.
var (
	_ eventlog.Store         = (*Log)(nil)
	_ eventlog.HealthChecker = (*Log)(nil)
)

// Open opens (creating it if needed, unless opts.ReadOnly) the data file at path.
//
// It fails with an error wrapping ErrLocked when another process holds the file, ErrNotLog when
// the file is not a bbolt file or not roomlog's, ErrCorrupt when bbolt finds it damaged, and
// ErrFormatVersion when it was written by an unknown format.
func Open(path string, opts Options) (*Log, error) {
	opts = opts.withDefaults()
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
		}
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	l := &Log{
		mark:         newDurableMark(^uint64(0)), // until init is done, below
		db:           db,
		path:         path,
		opts:         opts,
		done:         make(chan struct{}),
		compactChunk: defaultCompactChunk,
		verifyChunk:  defaultVerifyChunk,
		ids:          eventlog.IDSource{Now: opts.Now},
	}
	if err := l.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
	}
	if opts.ReadOnly {
		l.closed = true // no writer
		close(l.done)
		return l, nil
	}
	l.headroom = openHeadroom(path)
	l.fillHeadroom()
	l.ops = make(chan *writeOp, opts.QueueSize)
	go l.run()
	return l, nil
}

// openBolt checks an existing file page by page (checkFile), then opens it with bbolt; a missing
// file is created unless opts.ReadOnly. bbolt trusts what it opens (a damaged file can make it
// fault or panic out of reach), so nothing damaged gets that far.
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	if _, statErr := os.Stat(path); statErr == nil || opts.ReadOnly {
		if err := checkFile(path, opts.LockTimeout); err != nil {
			return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("eventlog: open %s: %w: %v", path, eventlog.ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.LockTimeout,
		ReadOnly:        opts.ReadOnly,
		NoFreelistSync:  true, // the freelist is rebuilt at open: less to write per commit
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // readers then rarely hold up a remap by the writer
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("eventlog: open %s: %w (waited %s)", path, ErrLocked, opts.LockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, io.EOF), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("eventlog: open %s: %w: %v", path, ErrNotLog, err)
	case errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("eventlog: open %s: %w: %v", path, eventlog.ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
	}
}

// init checks (or, for a new writable file, creates) the layout and loads the writer's state.
func (l *Log) init() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", eventlog.ErrCorrupt, r)
		}
	}()
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errNoMeta
		}
		v := meta.Get(keyFormat)
		if len(v) != 4 {
			return fmt.Errorf("%w: meta has no format number", ErrNotLog)
		}
		if f := binary.BigEndian.Uint32(v); f != FormatVersion {
			return fmt.Errorf("%w: file has format %d, this build reads %d", ErrFormatVersion, f, FormatVersion)
		}
		if last := meta.Get(keyLast); len(last) == 16 {
			copy(l.ids.Last[:], last)
		}
		return nil
	}
	// A read first: an existing log is opened without writing (on a full disk too).
	err = l.db.View(check)
	if l.opts.ReadOnly && errors.Is(err, errNoMeta) {
		return fmt.Errorf("%w: no meta bucket", ErrNotLog)
	}
	if !errors.Is(err, errNoMeta) {
		return err
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		err := check(tx)
		if !errors.Is(err, errNoMeta) {
			return err
		}
		// A new file, or someone else's bbolt file: only an empty one becomes a log.
		empty := true
		tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return fmt.Errorf("%w: a bbolt file without roomlog's meta bucket", ErrNotLog)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		format := binary.BigEndian.AppendUint32(nil, FormatVersion)
		if err := meta.Put(keyFormat, format); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketRooms, bucketKeys, bucketAcks, bucketSessions} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
}

var errNoMeta = errors.New("no meta bucket")

// load checks the layout and, for a writer, sets the durable watermark at the file's last
// transaction and rebuilds the key index: what Open and a reopen after a failed commit share.
// The writer is not committing meanwhile, so the mark may start at its maximum.
func (l *Log) load() error {
	if err := l.init(); err != nil {
		return err
	}
	if l.opts.ReadOnly {
		return nil // no writer: every snapshot is durable
	}
	txid, err := lastTxID(l.db)
	if err != nil {
		return err
	}
	l.mark.reset(txid)
	return l.loadKeys()
}

// Path is the data file's path.
func (l *Log) Path() string { return l.path }

// WriteTo writes a consistent copy of the whole data file to w, from one read transaction: a hot
// backup that does not stop appends.
func (l *Log) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := l.view(context.Background(), func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Close stops accepting appends, waits for the queued ones to commit and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.ops)
	}
	l.mu.Unlock()
	<-l.done
	l.watches.CloseAll()
	l.headroom.close()
	l.state.Lock()
	defer l.state.Unlock()
	if l.db == nil {
		return nil // the writer was still reopening the file after a failed commit
	}
	err := l.db.Close()
	l.db = nil
	return err
}

// Watch implements eventlog.Log.
func (l *Log) Watch(room string) *eventlog.Watch { return l.watches.Add(room) }

// notify wakes the watchers of the rooms in touched and of all rooms.
func (l *Log) notify(touched []string) { l.watches.Notify(touched...) }

func (l *Log) roomBucket(tx *bolt.Tx, room string) *bolt.Bucket {
	return tx.Bucket(bucketRooms).Bucket([]byte(room))
}

// errCtx returns ctx's error, if any, so reads stop promptly when their caller has gone.
func errCtx(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
