package boltlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	bolt "go.etcd.io/bbolt"
)

// writeLog makes a closed data file with rooms r0..r2, n events each, and returns the events.
func writeLog(t *testing.T, path string, n int) []eventlog.Event {
	t.Helper()
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var evs []eventlog.Event
	for i := range 3 * n {
		r, err := l.Append(context.Background(), eventlog.AppendRequest{
			Room: fmt.Sprintf("r%d", i%3), User: "u", Key: fmt.Sprintf("k%d", i),
			Body: []byte(fmt.Sprintf(`{"marker":"MARK%05d"}`, i)),
		})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, r.Event)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestOpenRefusesWhatIsNotALog(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	writeLog(t, good, 10)
	goodBytes, _ := os.ReadFile(good)

	cases := []struct {
		name  string
		make  func(path string)
		wants []error
	}{
		{"text file", func(p string) { os.WriteFile(p, []byte(strings.Repeat("not a database\n", 1000)), 0o600) }, []error{boltlog.ErrNotLog}},
		{"short garbage", func(p string) { os.WriteFile(p, []byte("xyz"), 0o600) }, []error{boltlog.ErrNotLog}},
		{"truncated log", func(p string) { os.WriteFile(p, goodBytes[:1000], 0o600) }, []error{boltlog.ErrNotLog, eventlog.ErrCorrupt}},
		{"both meta pages damaged", func(p string) {
			b := bytes.Clone(goodBytes)
			pageSize := os.Getpagesize()
			for _, off := range []int{16 + 40, pageSize + 16 + 40} { // inside each meta page
				b[off] ^= 0xff
			}
			os.WriteFile(p, b, 0o600)
		}, []error{boltlog.ErrNotLog, eventlog.ErrCorrupt}},
		{"foreign bbolt file", func(p string) {
			db, _ := bolt.Open(p, 0o600, nil)
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err })
			db.Close()
		}, []error{boltlog.ErrNotLog}},
		{"future format", func(p string) {
			os.WriteFile(p, goodBytes, 0o600)
			db, _ := bolt.Open(p, 0o600, nil)
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("format"), binary.BigEndian.AppendUint32(nil, 99))
			})
			db.Close()
		}, []error{boltlog.ErrFormatVersion}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			tc.make(path)
			before, _ := os.ReadFile(path)
			for _, ro := range []bool{false, true} {
				l, err := boltlog.Open(path, boltlog.Options{ReadOnly: ro})
				if err == nil {
					l.Close()
					t.Fatalf("read-only=%v: opened", ro)
				}
				ok := false
				for _, want := range tc.wants {
					ok = ok || errors.Is(err, want)
				}
				if !ok {
					t.Fatalf("read-only=%v: err %v, want one of %v", ro, err, tc.wants)
				}
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error does not name the file: %v", err)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Fatalf("a refused open changed the file")
			}
		})
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, ro := range []bool{false, true} {
		start := time.Now()
		_, err := boltlog.Open(path, boltlog.Options{LockTimeout: 100 * time.Millisecond, ReadOnly: ro})
		if !errors.Is(err, boltlog.ErrLocked) {
			t.Fatalf("read-only=%v: second open: %v, want ErrLocked", ro, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("open of a locked file hung")
		}
	}
}

func TestOpenMissingFileReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	if _, err := boltlog.Open(path, boltlog.Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open created the file")
	}
}

func TestReadOnlyChangesNoByte(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	writeLog(t, path, 50)
	before := fileSum(t, path)
	l, err := boltlog.Open(path, boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if rep, err := l.Verify(ctx, ""); err != nil || rep.Broken != nil || rep.Events != 150 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	l.Scan(ctx, eventlog.ScanFilter{}, func(eventlog.Event) error { return nil })
	l.Rooms(ctx, func(eventlog.RoomInfo) error { return nil })
	if _, err := l.Append(ctx, eventlog.AppendRequest{Room: "r0", User: "u"}); err == nil {
		t.Fatalf("append on a read-only log succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != before {
		t.Fatalf("read-only use changed the data file")
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestVerifyFindsTampering edits a closed log the way an attacker with bbolt would, and checks
// that Verify names the first broken event.
func TestVerifyFindsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (room string, at eventlog.ID)
	}{
		{"changed body byte", func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (string, eventlog.ID) {
			e := evs[30] // room r0
			b := tx.Bucket([]byte("rooms")).Bucket([]byte(e.Room))
			v := bytes.Clone(b.Get(e.ID[:]))
			v[len(v)-3] ^= 1
			b.Put(e.ID[:], v)
			return e.Room, e.ID
		}},
		{"deleted event", func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (string, eventlog.ID) {
			b := tx.Bucket([]byte("rooms")).Bucket([]byte(evs[31].Room))
			b.Delete(evs[31].ID[:])
			return evs[34].Room, evs[34].ID // the next event of the same room
		}},
		{"reordered events", func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (string, eventlog.ID) {
			a, c := evs[32], evs[35] // consecutive events of room r2
			b := tx.Bucket([]byte("rooms")).Bucket([]byte(a.Room))
			va, vc := bytes.Clone(b.Get(a.ID[:])), bytes.Clone(b.Get(c.ID[:]))
			b.Put(a.ID[:], vc)
			b.Put(c.ID[:], va)
			return a.Room, a.ID
		}},
		{"event moved to another room", func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (string, eventlog.ID) {
			rooms := tx.Bucket([]byte("rooms"))
			e := evs[40] // r1
			v := bytes.Clone(rooms.Bucket([]byte("r1")).Get(e.ID[:]))
			rooms.Bucket([]byte("r1")).Delete(e.ID[:])
			rooms.Bucket([]byte("r0")).Put(e.ID[:], v)
			return "r0", e.ID
		}},
		{"last event removed", func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (string, eventlog.ID) {
			e := evs[len(evs)-1]
			tx.Bucket([]byte("rooms")).Bucket([]byte(e.Room)).Delete(e.ID[:])
			return e.Room, evs[len(evs)-4].ID
		}},
		{"stored hash replaced along with the body", func(t *testing.T, tx *bolt.Tx, evs []eventlog.Event) (string, eventlog.ID) {
			// Replacing the stored hash does not help: it no longer follows from the previous one.
			e := evs[30]
			b := tx.Bucket([]byte("rooms")).Bucket([]byte(e.Room))
			v := bytes.Clone(b.Get(e.ID[:]))
			v[len(v)-3] ^= 1
			copy(v[0:32], bytes.Repeat([]byte{7}, 32))
			b.Put(e.ID[:], v)
			return e.Room, e.ID
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.db")
			evs := writeLog(t, path, 20)
			l, _ := boltlog.Open(path, boltlog.Options{ReadOnly: true})
			if rep, err := l.Verify(context.Background(), ""); err != nil || rep.Broken != nil {
				t.Fatalf("before tampering: %+v %v", rep.Broken, err)
			}
			l.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			var room string
			var at eventlog.ID
			db.Update(func(tx *bolt.Tx) error { room, at = tc.tamper(t, tx, evs); return nil })
			db.Close()

			l, err = boltlog.Open(path, boltlog.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rep, err := l.Verify(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			if rep.Broken == nil {
				t.Fatalf("tampering not detected")
			}
			if rep.Broken.Room != room || rep.Broken.ID != at {
				t.Fatalf("broken link reported at %s %s (%s), want %s %s", rep.Broken.Room, rep.Broken.ID, rep.Broken.Reason, room, at)
			}
			t.Logf("reported: %s %s: %s", rep.Broken.Room, rep.Broken.ID, rep.Broken.Reason)
		})
	}
}

// TestCorruptPageIsAnErrorNotACrash damages a data page on disk: reads and Verify must return an
// error or report a break, never panic.
func TestCorruptPageIsAnErrorNotACrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	writeLog(t, path, 300)
	b, _ := os.ReadFile(path)
	// Flip a byte of one event's body where it sits in the file.
	i := bytes.Index(b, []byte("MARK00500"))
	if i < 0 {
		t.Fatal("marker not found")
	}
	b[i+5] ^= 0x01
	os.WriteFile(path, b, 0o600)
	l, err := boltlog.Open(path, boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer l.Close()
	rep, err := l.Verify(context.Background(), "")
	if err == nil && rep.Broken == nil {
		t.Fatalf("a changed byte on disk went unnoticed")
	}
	// Wreck a whole page in the middle of the file: errors, not panics.
	page := 4096 * (len(b) / 4096 / 2)
	for j := page; j < page+4096 && j < len(b); j++ {
		b[j] = 0xAB
	}
	os.WriteFile(path, b, 0o600)
	l2, err := boltlog.Open(path, boltlog.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return // refused at open: fine
	}
	defer l2.Close()
	ctx := context.Background()
	l2.Verify(ctx, "")
	l2.Scan(ctx, eventlog.ScanFilter{}, func(eventlog.Event) error { return nil })
	for r := range 3 {
		l2.ReadAfter(ctx, fmt.Sprintf("r%d", r), eventlog.ID{}, 10000)
	}
}

func TestIDsIncreaseWhenTheClockGoesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock.db")
	clock := logtest.NewClock(time.Now())
	l, err := boltlog.Open(path, boltlog.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	append1 := func(l *boltlog.Log) eventlog.ID {
		r, err := l.Append(ctx, eventlog.AppendRequest{Room: "c", User: "u"})
		if err != nil {
			t.Fatal(err)
		}
		return r.Event.ID
	}
	a := append1(l)
	clock.Advance(-time.Hour)
	b := append1(l)
	if b.Compare(a) <= 0 {
		t.Fatalf("clock went back and id %s is not after %s", b, a)
	}
	l.Close()
	// And after a restart, with the clock still behind.
	l, err = boltlog.Open(path, boltlog.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c := append1(l); c.Compare(b) <= 0 {
		t.Fatalf("after restart id %s is not after %s", c, b)
	}
}

// TestKeyGenerationsArePruned checks that expired idempotency keys are deleted from the file, not
// only ignored.
func TestKeyGenerationsArePruned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	clock := logtest.NewClock(time.Now())
	l, err := boltlog.Open(path, boltlog.Options{Now: clock.Now, KeyRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var pending []*eventlog.Pending
	for i := range 3000 { // more than one commit's worth of pruning
		pending = append(pending, l.AppendAsync(eventlog.AppendRequest{Room: "k", User: "u", Key: fmt.Sprint("old-", i)}))
	}
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for step := range 8 {
		clock.Advance(20 * time.Minute)
		for i := range 5 {
			if _, err := l.Append(ctx, eventlog.AppendRequest{Room: "k", User: "u", Key: fmt.Sprintf("new-%d-%d", step, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := 0
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("keys")).ForEachBucket(func(name []byte) error {
			keys += tx.Bucket([]byte("keys")).Bucket(name).Stats().KeyN
			return nil
		})
	})
	// Only keys of the last ~1.5 retention windows (the "new" ones) may remain.
	if keys > 40 {
		t.Fatalf("%d idempotency keys remain; the 3000 expired ones were not pruned", keys)
	}
}
