package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Leases live in the bucket <Stream>_LEASES, one key per lease, whose value is a leaseRecord:
// the holding node, how long it may stay silent, and the lease's value. Every change is an
// update on the revision its writer read, so of two nodes that both believe they hold a lease
// only one write succeeds: the holder's renewals and Stores fail once another node has taken
// it, and the value can never move behind the new holder's back.
//
// Expiry is judged by the waiting node's own clock, never by comparing clocks: a waiter takes
// a lease over once it has watched the record unchanged for the holder's TTL, measured from
// when it first saw that revision (which is after the holder wrote it). The holder renews every
// TTL/3 and gives the lease up as lost once 2/3 of its TTL passed since it sent its last
// successful renewal, so it has stopped before any waiter can take over. This is the scheme of
// Kubernetes' leader election (observed time, not record time).

// DefaultLeaseTTL is Options.LeaseTTL's default.
const DefaultLeaseTTL = 10 * time.Second

// leaseRecord is a lease's value in the bucket.
type leaseRecord struct {
	Node  string `json:"node,omitempty"` // "" once released
	TTLms int64  `json:"ttl_ms,omitempty"`
	Value []byte `json:"value,omitempty"`
}

var _ eventlog.Leaser = (*Log)(nil)

// leaseBucket opens the bucket of leases, creating it the first time a node needs it.
func (l *Log) leaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	l.leasesMu.Lock()
	defer l.leasesMu.Unlock()
	if l.leases != nil {
		return l.leases, nil
	}
	bucket := l.opts.Stream + "_LEASES"
	kv, err := l.js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && !l.opts.ReadOnly {
		kv, err = l.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: "roomlog leases (webhook deliveries)", Replicas: l.stream.CachedInfo().Config.Replicas,
			Storage: jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = l.js.KeyValue(ctx, bucket) // another node created it first
		}
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: bucket %s: %w", bucket, err)
	}
	l.leases = kv
	return kv, nil
}

// readLease reads a lease's record from the bucket's leader, with its revision (0 when the key
// was never written or was deleted).
func (l *Log) readLease(ctx context.Context, kv jetstream.KeyValue, name string) (leaseRecord, uint64, error) {
	m, err := l.leaderOf(ctx, "KV_"+kv.Bucket(), getRequest{LastFor: "$KV." + kv.Bucket() + "." + name})
	switch {
	case err != nil:
		return leaseRecord{}, 0, err
	case m == nil || m.hdr.Get(kvOperation) != "":
		return leaseRecord{}, 0, nil
	}
	var rec leaseRecord
	if err := json.Unmarshal(m.data, &rec); err != nil {
		return leaseRecord{}, m.seq, fmt.Errorf("%w: lease %q: %v", eventlog.ErrCorrupt, name, err)
	}
	return rec, m.seq, nil
}

// writeLease writes rec on revision rev (0: the key must not exist).
func writeLease(ctx context.Context, kv jetstream.KeyValue, name string, rec leaseRecord, rev uint64) (uint64, error) {
	data, _ := json.Marshal(rec)
	if rev == 0 {
		return kv.Create(ctx, name, data)
	}
	return kv.Update(ctx, name, data, rev)
}

// LeaseState implements eventlog.Leaser.
func (l *Log) LeaseState(ctx context.Context, name string) ([]byte, string, error) {
	if !validNode.MatchString(name) {
		return nil, "", fmt.Errorf("eventlog/jetstream: lease name %q: want 1-64 of A-Z a-z 0-9 _ -", name)
	}
	kv, err := l.leaseBucket(ctx)
	if err != nil {
		return nil, "", err
	}
	rec, _, err := l.readLease(ctx, kv, name)
	if err != nil {
		return nil, "", fmt.Errorf("eventlog/jetstream: lease %q: %w", name, err)
	}
	return rec.Value, rec.Node, nil
}

// Acquire implements eventlog.Leaser. The lease is held for Options.LeaseTTL past the last
// renewal this node made. A lease recorded as this node's is free to it: a node restarted
// under its name (Options.Node) takes its leases back at once.
func (l *Log) Acquire(ctx context.Context, name string) (eventlog.Lease, error) {
	if !validNode.MatchString(name) {
		return nil, fmt.Errorf("eventlog/jetstream: lease name %q: want 1-64 of A-Z a-z 0-9 _ -", name)
	}
	if l.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	kv, err := l.leaseBucket(ctx)
	if err != nil {
		return nil, err
	}
	var seenRev uint64 // the revision last seen held by another node, and since when
	var seenAt time.Time
	for {
		if l.isClosed() {
			return nil, eventlog.ErrClosed
		}
		sent := time.Now()
		rec, rev, err := l.readLease(ctx, kv, name)
		if errors.Is(err, eventlog.ErrCorrupt) && rev > 0 {
			// Not a record this code wrote: held by no node that can renew it, so it is taken
			// once it has stayed so for a lease's time.
			l.opts.Logger.Warn("lease record unreadable; taking it over once it stays so", "lease", name, "err", err)
			rec, err = leaseRecord{Node: "?", TTLms: l.opts.LeaseTTL.Milliseconds()}, nil
		}
		free := err == nil && (rev == 0 || rec.Node == "" || rec.Node == l.node)
		if err == nil && !free && rev != seenRev {
			seenRev, seenAt = rev, sent // the holder is alive as of this revision
		}
		expired := err == nil && !free && time.Since(seenAt) >= time.Duration(rec.TTLms)*time.Millisecond
		if free || expired {
			mine := leaseRecord{Node: l.node, TTLms: l.opts.LeaseTTL.Milliseconds(), Value: rec.Value}
			sent = time.Now()
			if newRev, err := writeLease(ctx, kv, name, mine, rev); err == nil {
				if expired {
					l.opts.Logger.Info("lease taken over from a silent node", "lease", name, "from", rec.Node, "node", l.node)
				}
				return l.holdLease(kv, name, mine, newRev, sent), nil
			}
			// Another node wrote first: look again.
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(l.opts.LeaseTTL / 3):
		}
	}
}

// lease is a lease this node holds (eventlog.Lease).
type lease struct {
	l    *Log
	kv   jetstream.KeyValue
	name string
	ttl  time.Duration // as the record says
	lost chan struct{}
	stop chan struct{}
	done chan struct{} // closed when the renewer has returned
	once sync.Once     // Release

	mu      sync.Mutex // serializes writes: each is conditional on the revision the last made
	rec     leaseRecord
	rev     uint64
	renewed time.Time // when the last successful write was sent
	gone    bool      // lost or released
}

func (l *Log) holdLease(kv jetstream.KeyValue, name string, rec leaseRecord, rev uint64, sent time.Time) *lease {
	ls := &lease{l: l, kv: kv, name: name, ttl: time.Duration(rec.TTLms) * time.Millisecond, rec: rec, rev: rev, renewed: sent, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go ls.renew()
	return ls
}

func (ls *lease) Value() []byte {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.rec.Value
}

func (ls *lease) Lost() <-chan struct{} { return ls.lost }

// Store implements eventlog.Lease.Store; it renews the lease too.
func (ls *lease) Store(ctx context.Context, value []byte) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	rec := ls.rec
	rec.Value = value
	return ls.writeLocked(ctx, rec)
}

// writeLocked writes rec on the lease's revision. A write refused because the revision moved
// loses the lease; one that failed otherwise loses it only when the lease may have run out.
// The caller holds mu.
func (ls *lease) writeLocked(ctx context.Context, rec leaseRecord) error {
	if ls.gone || ls.l.isClosed() || time.Since(ls.renewed) >= ls.holdFor() {
		ls.loseLocked()
		return fmt.Errorf("eventlog/jetstream: lease %q: %w", ls.name, eventlog.ErrLeaseLost)
	}
	sent := time.Now()
	ctx, cancel := ls.l.ctx(ctx)
	defer cancel()
	rev, err := writeLease(ctx, ls.kv, ls.name, rec, ls.rev)
	switch {
	case err == nil:
		ls.rec, ls.rev, ls.renewed = rec, rev, sent
		return nil
	case errors.Is(err, jetstream.ErrKeyExists):
		ls.loseLocked()
		return fmt.Errorf("eventlog/jetstream: lease %q: another node holds it: %w", ls.name, eventlog.ErrLeaseLost)
	case time.Since(ls.renewed) >= ls.holdFor():
		ls.loseLocked()
		return fmt.Errorf("eventlog/jetstream: lease %q: not renewed in time (%v): %w", ls.name, err, eventlog.ErrLeaseLost)
	}
	return fmt.Errorf("eventlog/jetstream: lease %q: %w", ls.name, err)
}

// holdFor is how long after its last renewal was sent the holder may act on the lease: 2/3 of
// its TTL, the rest a margin for the waiters' clocks.
func (ls *lease) holdFor() time.Duration { return ls.ttl * 2 / 3 }

func (ls *lease) loseLocked() {
	if !ls.gone {
		ls.gone = true
		close(ls.lost)
	}
}

// renew renews the lease every TTL/3 until it is lost or released.
func (ls *lease) renew() {
	defer close(ls.done)
	t := time.NewTicker(ls.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ls.stop:
			return
		case <-ls.lost:
			return
		case <-t.C:
		}
		ls.mu.Lock()
		if err := ls.writeLocked(context.Background(), ls.rec); err != nil {
			ls.l.opts.Logger.Warn("lease renewal failed", "lease", ls.name, "node", ls.l.node, "err", err)
		}
		ls.mu.Unlock()
	}
}

// Release implements eventlog.Lease: the record says no node holds it, so a waiter takes it at
// once. A release that cannot be written leaves the lease to expire.
func (ls *lease) Release() { ls.once.Do(ls.release) }

func (ls *lease) release() {
	close(ls.stop)
	<-ls.done
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.gone {
		return
	}
	rec := ls.rec
	rec.Node = ""
	ctx, cancel := context.WithTimeout(context.Background(), ls.l.opts.Timeout)
	defer cancel()
	ls.writeLocked(ctx, rec)
	ls.loseLocked()
}
