package boltlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Idempotency keys are an index from (room, user, key) to the event appended with it. Writing each
// key into a B+tree as it comes would dirty one page per distinct publisher per commit (keys from
// different clients land far apart), so the index is a small log-structured merge:
//
//   - keys of recent appends live in memory (keyIndex.mem, and keyIndex.queue in id order) and in
//     the events themselves, which carry their key and are durable;
//   - once the oldest is a second old (or many are waiting), each commit writes up to
//     keyFlushChunk of the oldest, sorted, into the current on-disk generation, and records in meta
//     "keys" the id up to which every key is on disk; a bounded chunk per commit keeps the cost
//     of flushing out of any one append's latency. Close writes the rest;
//   - at Open, the events after that id give back the keys that were only in memory.
//
// Lookups check the current batch, memory, then the generations newest first. A generation is
// deleted, a bounded number of keys per commit, once the one after it started more than the
// retention ago (every key in it is then older than the retention).
const (
	keyFlushEvery      = time.Second
	keyFlushMax        = 1 << 16 // keys in memory that make flushing due whatever their age
	keyFlushChunk      = 2048    // keys one commit writes at most
	pruneKeysPerCommit = 1024
)

var keyFlushed = []byte("keys")

// keyIndex is the writer's view of the idempotency index. Only the writer goroutine uses it.
type keyIndex struct {
	retention time.Duration
	gens      []uint64               // on-disk generations, oldest first (start in unix ms)
	mem       map[string]eventlog.ID // keys whose events are durable but which are not on disk yet
	queue     []memKey               // the same keys in id order: the order they are flushed in
}

type memKey struct {
	key string
	id  eventlog.ID
}

func idempotencyKey(room, user, key string) string {
	return room + "\x00" + user + "\x00" + key
}

// loadKeys reads the generations and rebuilds mem from the events after the flushed mark.
func (l *Log) loadKeys() error {
	k := &l.keys
	k.retention = l.opts.KeyRetention
	k.mem = make(map[string]eventlog.ID)
	k.queue = nil
	var flushed eventlog.ID
	err := l.view(context.Background(), func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyFlushed); len(v) == 16 {
			copy(flushed[:], v)
		}
		k.gens = k.gens[:0]
		return tx.Bucket(bucketKeys).ForEachBucket(func(name []byte) error {
			if len(name) != 8 {
				return fmt.Errorf("%w: idempotency generation named %x", eventlog.ErrCorrupt, name)
			}
			k.gens = append(k.gens, binary.BigEndian.Uint64(name))
			return nil
		})
	})
	if err != nil {
		return err
	}
	from := flushed
	if cutoff := eventlog.MinIDAt(l.opts.Now().Add(-k.retention)); cutoff.Compare(from) > 0 {
		from = cutoff
	}
	return l.Scan(context.Background(), eventlog.ScanFilter{After: from}, func(e eventlog.Event) error {
		if e.Key != "" {
			key := idempotencyKey(e.Room, e.User, e.Key)
			k.mem[key] = e.ID
			k.queue = append(k.queue, memKey{key, e.ID})
		}
		return nil
	})
}

// findKey looks req's key up; a key whose newest use is older than the retention is absent.
func (l *Log) findKey(b *batch, req *eventlog.AppendRequest) (eventlog.Event, bool, error) {
	key := idempotencyKey(req.Room, req.User, req.Key)
	id, ok := b.newKey(key)
	if !ok {
		id, ok = l.keys.mem[key]
	}
	if !ok {
		var err error
		if id, ok, err = b.findKeyOnDisk([]byte(key)); err != nil {
			return eventlog.Event{}, false, err
		}
	}
	if !ok || id.Millis() < uint64(b.now.Add(-l.keys.retention).UnixMilli()) {
		return eventlog.Event{}, false, nil
	}
	room := b.tx.Bucket(bucketRooms).Bucket([]byte(req.Room))
	var rec []byte
	if room != nil {
		rec = room.Get(id[:])
	}
	if rec == nil {
		if floor, err := roomFloor(room); err == nil && id.Compare(floor.ID) <= 0 {
			// Removed by a compaction: still a duplicate, of an event no longer readable.
			return eventlog.Event{ID: id, Room: req.Room}, true, nil
		}
		return eventlog.Event{}, false, fmt.Errorf("%w: idempotency key of room %q names missing event %s", eventlog.ErrCorrupt, req.Room, id)
	}
	ev := eventlog.Event{ID: id, Room: req.Room}
	if err := eventlog.DecodeRecord(&ev, bytes.Clone(rec)); err != nil {
		return eventlog.Event{}, false, fmt.Errorf("room %q event %s: %w", req.Room, id, err)
	}
	return ev, true, nil
}

func (b *batch) findKeyOnDisk(key []byte) (eventlog.ID, bool, error) {
	keys := b.tx.Bucket(bucketKeys)
	for i := len(b.gens) - 1; i >= 0; i-- {
		gen := keys.Bucket(binary.BigEndian.AppendUint64(nil, b.gens[i]))
		if gen == nil {
			continue
		}
		if v := gen.Get(key); v != nil {
			var id eventlog.ID
			if len(v) != 16 {
				return id, false, fmt.Errorf("%w: idempotency entry of %d bytes", eventlog.ErrCorrupt, len(v))
			}
			copy(id[:], v)
			return id, true, nil // the newest generation holding the key has its newest use
		}
	}
	return eventlog.ID{}, false, nil
}

// maintainKeys runs at the end of every batch: it flushes the oldest keys when due (all of them
// when force is set) and prunes an expired generation a little.
func (l *Log) maintainKeys(b *batch, force bool) error {
	q := l.keys.queue
	if len(q) > 0 && (force || len(q) >= keyFlushMax || b.now.Sub(q[0].id.Time()) >= keyFlushEvery) {
		n := len(q)
		if !force {
			n = min(n, keyFlushChunk)
		}
		if err := l.flushKeys(b, q[:n]); err != nil {
			return err
		}
	}
	return l.pruneKeys(b)
}

// flushKeys writes chunk (the oldest keys in memory), sorted, into the current generation,
// starting a new one when the newest is older than half the retention (so about three live), and
// moves the flushed mark to the chunk's last id.
func (l *Log) flushKeys(b *batch, chunk []memKey) error {
	keys := b.tx.Bucket(bucketKeys)
	now := uint64(b.now.UnixMilli())
	genLen := uint64(l.keys.retention.Milliseconds() / 2)
	if n := len(b.gens); n == 0 || now >= b.gens[n-1]+genLen {
		start := now
		if n > 0 && start <= b.gens[n-1] {
			start = b.gens[n-1] + 1
		}
		if _, err := keys.CreateBucket(binary.BigEndian.AppendUint64(nil, start)); err != nil {
			return err
		}
		b.gens = append(b.gens, start)
	}
	gen := keys.Bucket(binary.BigEndian.AppendUint64(nil, b.gens[len(b.gens)-1]))
	sorted := slices.Clone(chunk)
	// Sorted inserts touch each leaf page once; for a key used twice, the later id goes last.
	slices.SortStableFunc(sorted, func(a, c memKey) int { return strings.Compare(a.key, c.key) })
	for _, mk := range sorted {
		if err := gen.Put([]byte(mk.key), bytes.Clone(mk.id[:])); err != nil {
			return err
		}
	}
	mark := chunk[len(chunk)-1].id
	b.keysFlushed = len(chunk)
	return b.tx.Bucket(bucketMeta).Put(keyFlushed, mark[:])
}

// keysCommitted updates the writer's key index after b committed.
func (l *Log) keysCommitted(b *batch) {
	k := &l.keys
	k.gens = b.gens
	for _, mk := range k.queue[:b.keysFlushed] {
		if k.mem[mk.key] == mk.id { // not used again since
			delete(k.mem, mk.key)
		}
	}
	k.queue = k.queue[b.keysFlushed:]
	for _, mk := range b.newKeys {
		k.mem[mk.key] = mk.id
		k.queue = append(k.queue, mk)
	}
}

// pruneDue reports whether the oldest generation has expired: the next one started more than the
// retention ago.
func (k *keyIndex) pruneDue(gens []uint64, now time.Time) bool {
	return len(gens) >= 2 && int64(gens[1]) <= now.Add(-k.retention).UnixMilli()
}

// pruneKeys deletes up to pruneKeysPerCommit keys of an expired generation, and the generation
// once it is empty.
func (l *Log) pruneKeys(b *batch) error {
	if !l.keys.pruneDue(b.gens, b.now) {
		return nil
	}
	keys := b.tx.Bucket(bucketKeys)
	name := binary.BigEndian.AppendUint64(nil, b.gens[0])
	if gen := keys.Bucket(name); gen != nil {
		var doomed [][]byte
		c := gen.Cursor()
		for k, _ := c.First(); k != nil && len(doomed) < pruneKeysPerCommit; k, _ = c.Next() {
			doomed = append(doomed, bytes.Clone(k))
		}
		for _, k := range doomed {
			if err := gen.Delete(k); err != nil {
				return err
			}
		}
		if len(doomed) == pruneKeysPerCommit {
			return nil // more next time
		}
		if err := keys.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
	}
	b.gens = b.gens[1:]
	return nil
}

// keyWorkDue reports whether an idle writer has key maintenance to do.
func (l *Log) keyWorkDue() bool {
	now := l.opts.Now()
	q := l.keys.queue
	return (len(q) > 0 && now.Sub(q[0].id.Time()) >= keyFlushEvery) || l.keys.pruneDue(l.keys.gens, now)
}
