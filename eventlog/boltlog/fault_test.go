package boltlog_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/faultfs"
)

// These tests run the real bbolt file on the fault-injecting file system (internal/faultfs): they
// skip where FUSE cannot be mounted, and fail there when ROOMLOG_REQUIRE_FUSE is set, as in CI.

func openOn(t *testing.T, f *faultfs.FS) (*boltlog.Log, string) {
	t.Helper()
	path := filepath.Join(f.Dir(), "rooms.db")
	l, err := boltlog.Open(path, boltlog.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l, path
}

func appendKeyed(l eventlog.Log, room, key string) (eventlog.AppendResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.Append(ctx, eventlog.AppendRequest{Room: room, User: "u", Key: key, Body: []byte(`{"k":"` + key + `"}`)})
}

// waitHealthy waits for the log to accept appends again after a failure.
func waitHealthy(t *testing.T, l *boltlog.Log) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for l.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the log did not recover: %v", l.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readAll reads a room whole, retrying while the log reopens its file.
func readAll(t *testing.T, l eventlog.Log, room string) []eventlog.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := l.ReadAfter(context.Background(), room, eventlog.ID{}, 1<<20)
		if err == nil {
			return evs
		}
		if !errors.Is(err, eventlog.ErrFailed) || time.Now().After(deadline) {
			t.Fatalf("read %s: %v", room, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keysOf(evs []eventlog.Event) map[string]int {
	m := map[string]int{}
	for _, e := range evs {
		m[e.Key]++
	}
	return m
}

func mustVerify(t *testing.T, l eventlog.Auditor) {
	t.Helper()
	rep, err := l.Verify(context.Background(), "")
	if err != nil || rep.Broken != nil {
		t.Fatalf("verify: %v %+v", err, rep.Broken)
	}
}

// A failed fsync stops the log: no ack, nothing of the failed batch readable, the file reopened
// from disk, and a keyed resend appended once.
func TestFailedFsyncStopsTheLog(t *testing.T) {
	f := faultfs.MountT(t)
	l, _ := openOn(t, f)
	defer l.Close()
	for i := range 5 {
		if _, err := appendKeyed(l, "doc", fmt.Sprint("ok-", i)); err != nil {
			t.Fatal(err)
		}
	}
	watch := l.Watch("doc")
	defer watch.Close()

	f.FailSyncs(-1)
	if _, err := appendKeyed(l, "doc", "failed"); !errors.Is(err, eventlog.ErrFailed) {
		t.Fatalf("append on a failing fsync: %v, want ErrFailed", err)
	}
	if l.Health() == nil {
		t.Fatalf("Health is nil after a failed commit")
	}
	// While fsyncs fail the log cannot reopen (its reopen fsyncs too): every append is refused.
	for range 3 {
		if _, err := appendKeyed(l, "doc", "refused"); !errors.Is(err, eventlog.ErrFailed) {
			t.Fatalf("append while failed: %v, want ErrFailed", err)
		}
	}
	f.FailSyncs(0)
	waitHealthy(t, l)
	if keys := keysOf(readAll(t, l, "doc")); keys["failed"] != 0 || keys["refused"] != 0 || len(keys) != 5 {
		t.Fatalf("after recovery the room holds %v, want the 5 acked events only", keys)
	}
	for i, wantDup := range []bool{false, true} {
		r, err := appendKeyed(l, "doc", "failed")
		if err != nil {
			t.Fatal(err)
		}
		if r.Duplicate != wantDup {
			t.Fatalf("resend %d: duplicate %v, want %v", i, r.Duplicate, wantDup)
		}
	}
	if keys := keysOf(readAll(t, l, "doc")); keys["failed"] != 1 || len(keys) != 6 {
		t.Fatalf("room holds %v after the resends", keys)
	}
	mustVerify(t, l)
	if f.Stats().FailedSyncs == 0 {
		t.Fatalf("no fsync failed")
	}
}

// Under concurrent appenders and readers, with fsyncs failing on and off: every acked event is
// durable (there after a power cut), and no reader ever saw an event the file does not keep.
func TestFsyncFailuresUnderLoadLoseNothingAcked(t *testing.T) {
	f := faultfs.MountT(t)
	l, path := openOn(t, f)
	var (
		mu    sync.Mutex
		acked = map[string]eventlog.ID{}
		seen  = map[eventlog.ID]string{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				r, err := appendKeyed(l, fmt.Sprint("room-", g%3), key)
				if err == nil {
					mu.Lock()
					acked[key] = r.Event.ID
					mu.Unlock()
				} else if !errors.Is(err, eventlog.ErrFailed) {
					t.Errorf("append: %v", err)
					return
				} else {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	for r := range 3 {
		wg.Go(func() {
			room := fmt.Sprint("room-", r)
			var after eventlog.ID
			for {
				select {
				case <-stop:
					return
				default:
				}
				evs, err := l.ReadAfter(context.Background(), room, after, 1000)
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, e := range evs {
					seen[e.ID] = e.Key
					after = e.ID
				}
				mu.Unlock()
			}
		})
	}
	for range 6 {
		time.Sleep(150 * time.Millisecond)
		f.FailSyncs(-1)
		time.Sleep(50 * time.Millisecond)
		f.FailSyncs(0)
	}
	time.Sleep(300 * time.Millisecond)
	f.PowerCut() // now: what was not fsynced is gone
	close(stop)
	wg.Wait()
	l.Close()
	f.PowerOn()

	l2, err := boltlog.Open(path, boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	mustVerify(t, l2)
	stored := map[string]eventlog.ID{}
	for r := range 3 {
		for _, e := range readAll(t, l2, fmt.Sprint("room-", r)) {
			if _, dup := stored[e.Key]; dup {
				t.Fatalf("key %s stored twice", e.Key)
			}
			stored[e.Key] = e.ID
		}
	}
	for key, id := range acked {
		if stored[key] != id {
			t.Fatalf("acked %s (%s) lost after the power cut: stored %s", key, id, stored[key])
		}
	}
	for id, key := range seen {
		if stored[key] != id {
			t.Fatalf("a reader saw %s (%s), which the file does not keep", key, id)
		}
	}
	st := f.Stats()
	t.Logf("%d acked, %d seen by readers, %d stored; %d of %d fsyncs failed",
		len(acked), len(seen), len(stored), st.FailedSyncs, st.Syncs)
	if len(acked) == 0 || st.FailedSyncs == 0 {
		t.Fatalf("the test exercised nothing: %d acked, %d failed fsyncs", len(acked), st.FailedSyncs)
	}
}

// While a commit's fsync is held, no reader sees its events: every read either blocks or answers
// from the last durable commit.
func TestPausedFsyncHidesTheBatch(t *testing.T) {
	f := faultfs.MountT(t)
	l, _ := openOn(t, f)
	defer l.Close()
	first, err := appendKeyed(l, "doc", "first")
	if err != nil {
		t.Fatal(err)
	}
	f.PauseSyncs(1)   // the data pages' fsync passes; the meta page's is held
	defer f.Release() // before Close, which waits for the held commit
	pending := l.AppendAsync(eventlog.AppendRequest{Room: "doc", User: "u", Key: "held", Body: []byte(`{}`)})
	if !f.WaitHeld(10 * time.Second) {
		t.Fatal("no fsync was held")
	}
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	// Each read either times out (it waits for the commit) or returns only the first event.
	blocked := 0
	check := func(what string, err error, sawHeld bool) {
		t.Helper()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			blocked++
		case err != nil:
			t.Fatalf("%s: %v", what, err)
		case sawHeld:
			t.Fatalf("%s returned the event whose commit is not durable", what)
		}
	}
	evs, err := l.ReadAfter(ctx(), "doc", eventlog.ID{}, 10)
	check("ReadAfter", err, len(evs) > 1)
	evs, err = l.ReadBefore(ctx(), "doc", eventlog.ID{}, 10)
	check("ReadBefore", err, len(evs) > 1)
	n, err := l.ReadAfterFunc(ctx(), "doc", first.Event.ID, 10, func(*eventlog.Event) error { return nil })
	check("ReadAfterFunc", err, n > 0)
	h, err := l.Head(ctx(), "doc")
	check("Head", err, h.ID != first.Event.ID)
	var scanned int
	err = l.Scan(ctx(), eventlog.ScanFilter{After: first.Event.ID}, func(eventlog.Event) error { scanned++; return nil })
	check("Scan", err, scanned > 0)
	var counted uint64
	err = l.Rooms(ctx(), func(ri eventlog.RoomInfo) error { counted = ri.Count; return nil })
	check("Rooms", err, counted > 1)
	rep, err := l.Verify(ctx(), "doc")
	check("Verify", err, rep.Events > 1)
	if blocked == 0 {
		t.Fatalf("no read waited: the held fsync was not the commit's")
	}
	select {
	case <-pending.Done():
		t.Fatal("the append was acked while its fsync was held")
	default:
	}
	f.Release()
	held, err := pending.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if evs := readAll(t, l, "doc"); len(evs) != 2 || evs[1].ID != held.Event.ID {
		t.Fatalf("after the release the room holds %d events", len(evs))
	}
}

// A full disk refuses appends (never acked and lost), keeps reads working, and takes appends again
// once space is freed, without a restart.
func TestFullDisk(t *testing.T) {
	f := faultfs.MountT(t)
	l, _ := openOn(t, f)
	defer l.Close()
	for i := range 20 {
		if _, err := appendKeyed(l, "doc", fmt.Sprint("before-", i)); err != nil {
			t.Fatal(err)
		}
	}
	f.SetSpace(0)
	for i := range 5 {
		if r, err := appendKeyed(l, "doc", fmt.Sprint("full-", i)); err == nil {
			t.Fatalf("append on a full disk acked: %+v", r.Event.ID)
		} else if !errors.Is(err, eventlog.ErrFailed) {
			t.Fatalf("append on a full disk: %v, want ErrFailed", err)
		}
		if got := len(readAll(t, l, "doc")); got != 20 {
			t.Fatalf("reads on a full disk: %d events, want 20", got)
		}
		// Reads wait through the writer's reopen after each refused commit, never fail.
		h, err := l.Head(context.Background(), "doc")
		if err != nil || h.Count != 20 {
			t.Fatalf("head on a full disk: count %d, %v", h.Count, err)
		}
		time.Sleep(time.Duration(i) * 10 * time.Millisecond)
	}
	f.SetSpace(-1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := appendKeyed(l, "doc", "after")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("appends did not resume after space was freed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	keys := keysOf(readAll(t, l, "doc"))
	if len(keys) != 21 || keys["after"] != 1 {
		t.Fatalf("room holds %v", keys)
	}
	for k := range keys {
		if len(k) > 4 && k[:5] == "full-" {
			t.Fatalf("a refused append is in the log: %s", k)
		}
	}
	mustVerify(t, l)
}
