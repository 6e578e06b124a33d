package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// The feed reads events in the order the stream stored them, across rooms and nodes, whatever
// the nodes' clocks made of their ids; pages of any size, chained by the position each
// returns, read each event exactly once.
func TestFeedInStreamOrder(t *testing.T) {
	s := natstest.Start(t)
	servers := []*natstest.Server{s}
	a := openNode(t, servers, jetstream.Options{})
	behind := func() time.Time { return time.Now().Add(-time.Hour) } // b's clock is an hour slow
	b := openNode(t, servers, jetstream.Options{Now: behind})
	ctx := context.Background()

	var want []eventlog.ID
	idsInOrder := true
	for i := range 60 {
		l := []*jetstream.Log{a, b}[i%2]
		r, err := l.Append(ctx, text(fmt.Sprintf("doc:%d", i%5), "u", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if len(want) > 0 && r.Event.ID.Compare(want[len(want)-1]) < 0 {
			idsInOrder = false
		}
		want = append(want, r.Event.ID)
	}
	if idsInOrder {
		t.Fatal("the ids came out in append order: the test shows nothing about the feed's order")
	}
	for _, page := range []int{1, 7, 60, 1000} {
		var got []eventlog.ID
		var pos uint64
		for {
			reached, err := b.Feed(ctx, pos, page, func(e *eventlog.Event) error {
				got = append(got, e.ID)
				return nil
			})
			if err != nil {
				t.Fatalf("page %d: Feed: %v", page, err)
			}
			if reached == pos {
				break
			}
			pos = reached
		}
		if !slicesEqual(got, want) {
			t.Fatalf("page %d: the feed read %d events, not the %d appended in their order", page, len(got), len(want))
		}
	}
	if _, err := a.Feed(ctx, 0, 0, func(*eventlog.Event) error { return nil }); !errors.Is(err, eventlog.ErrBadLimit) {
		t.Fatalf("Feed with limit 0: %v, want ErrBadLimit", err)
	}
	stop := errors.New("stop")
	reached, err := a.Feed(ctx, 0, 10, func(e *eventlog.Event) error {
		if e.ID == want[3] {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Feed returned %v, want fn's error", err)
	}
	var next eventlog.ID
	a.Feed(ctx, reached, 1, func(e *eventlog.Event) error { next = e.ID; return nil })
	if next != want[3] {
		t.Fatal("after fn's error, the position reached does not lead to the event fn refused")
	}
}

func slicesEqual(a, b []eventlog.ID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const leaseTTL = 600 * time.Millisecond

// leaseHeld opens nodes a and b on one server, and has a take the lease "hook".
func leaseHeld(t *testing.T) (a, b *jetstream.Log, la eventlog.Lease) {
	servers := []*natstest.Server{natstest.Start(t)}
	a = openNode(t, servers, jetstream.Options{Node: "a", LeaseTTL: leaseTTL})
	b = openNode(t, servers, jetstream.Options{Node: "b", LeaseTTL: leaseTTL})
	la, err := a.Acquire(context.Background(), "hook")
	if err != nil {
		t.Fatal(err)
	}
	return a, b, la
}

// acquireTimed has b take the lease "hook", released when the test ends, and says how long it
// waited for it.
func acquireTimed(t *testing.T, b *jetstream.Log) (eventlog.Lease, time.Duration) {
	start := time.Now()
	lb, err := b.Acquire(context.Background(), "hook")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lb.Release)
	return lb, time.Since(start)
}

// One node at a time holds a lease; the value its holder stored goes to the next holder, who
// takes it at once when the lease is released.
func TestLeaseOneHolder(t *testing.T) {
	a, b, la := leaseHeld(t)
	ctx := context.Background()
	if la.Value() != nil {
		t.Fatalf("a new lease has the value %q", la.Value())
	}
	if err := la.Store(ctx, []byte("42")); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 4*leaseTTL) // several renewals
	_, err := b.Acquire(wait, "hook")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b acquired a lease a holds and renews: %v", err)
	}
	if v, holder, err := b.LeaseState(ctx, "hook"); err != nil || string(v) != "42" || holder != "a" {
		t.Fatalf("LeaseState = %q, %q, %v; want 42 held by a", v, holder, err)
	}
	la.Release()
	lb, took := acquireTimed(t, b)
	if took > leaseTTL {
		t.Errorf("a released lease took %v to take", took)
	}
	if string(lb.Value()) != "42" {
		t.Fatalf("the next holder has the value %q, want the one its predecessor stored", lb.Value())
	}
	if err := la.Store(ctx, []byte("43")); !errors.Is(err, eventlog.ErrLeaseLost) {
		t.Fatalf("Store on a released lease: %v, want ErrLeaseLost", err)
	}
	for _, bad := range []string{"", "a.b", "x y", string(make([]byte, 65))} {
		if _, err := a.Acquire(ctx, bad); err == nil {
			t.Errorf("Acquire(%q) succeeded", bad)
		}
	}
}

// A node that dies holding a lease loses it: another takes it over once the lease's time has
// passed without a renewal, with the value the dead node last stored.
func TestLeaseTakenOverFromADeadNode(t *testing.T) {
	a, b, la := leaseHeld(t)
	ctx := context.Background()
	if err := la.Store(ctx, []byte("7")); err != nil {
		t.Fatal(err)
	}
	a.Kill()
	lb, took := acquireTimed(t, b)
	t.Logf("taken over %v after the holder died (TTL %v)", took, leaseTTL)
	if took < leaseTTL/2 {
		t.Errorf("taken over after %v, before the holder could have given it up", took)
	}
	if string(lb.Value()) != "7" {
		t.Fatalf("value %q, want the dead holder's", lb.Value())
	}
	select {
	case <-la.Lost():
	case <-time.After(leaseTTL):
		t.Fatal("the dead node's lease is not lost")
	}
	if err := la.Store(ctx, []byte("8")); !errors.Is(err, eventlog.ErrLeaseLost) {
		t.Fatalf("the dead node stored: %v", err)
	}
}

// A holder that lost its lease without knowing (paused, cut off) cannot store: the record moved
// under it, so its write on the revision it knew is refused.
func TestLeaseFencesAStaleHolder(t *testing.T) {
	s := natstest.Start(t)
	a := openNode(t, []*natstest.Server{s}, jetstream.Options{Node: "a", LeaseTTL: time.Hour})
	ctx := context.Background()
	la, err := a.Acquire(ctx, "hook")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := njs.New(natstest.Connect(t, s))
	kv, err := js.KeyValue(ctx, jetstream.DefaultStream+"_LEASES")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "hook")
	if err != nil {
		t.Fatal(err)
	}
	taken, _ := json.Marshal(map[string]any{"node": "z", "ttl_ms": 1000, "value": []byte("99")})
	if _, err := kv.Update(ctx, "hook", taken, entry.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := la.Store(ctx, []byte("1")); !errors.Is(err, eventlog.ErrLeaseLost) {
		t.Fatalf("a stale holder stored: %v", err)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost is not closed after a refused Store")
	}
	if v, holder, _ := a.LeaseState(ctx, "hook"); string(v) != "99" || holder != "z" {
		t.Fatalf("the stale holder changed the record: %q %q", v, holder)
	}
	la.Release() // changes nothing: the lease is lost
	if _, holder, _ := a.LeaseState(ctx, "hook"); holder != "z" {
		t.Fatalf("a lost lease's Release wrote the record: holder %q", holder)
	}

	// A record that is not one is taken over once it has stayed so for a lease's time.
	entry, _ = kv.Get(ctx, "hook")
	if _, err := kv.Update(ctx, "hook", []byte("not a lease"), entry.Revision()); err != nil {
		t.Fatal(err)
	}
	short := openNode(t, []*natstest.Server{s}, jetstream.Options{Node: "c", LeaseTTL: 300 * time.Millisecond})
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lc, err := short.Acquire(wait, "hook")
	if err != nil {
		t.Fatalf("an unreadable record was never taken over: %v", err)
	}
	lc.Release()
}
