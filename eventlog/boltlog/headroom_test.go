package boltlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	bolt "go.etcd.io/bbolt"
)

// highWaterMark is the size of the data bbolt has committed to the file.
func highWaterMark(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}

// firstHole is the offset of the first hole at or after off (the file's size when there is none).
func firstHole(t *testing.T, path string, off int64) int64 {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("SEEK_HOLE is checked on Linux")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const seekHole = 4
	hole, err := syscall.Seek(int(f.Fd()), off, seekHole)
	if err != nil {
		t.Skipf("this file system does not report holes: %v", err)
	}
	return hole
}

// The writer keeps space past bbolt's data written with zeros, so that commits overwrite blocks
// instead of allocating them; and bbolt still grows the file itself when one commit needs more.
func TestHeadroomIsZeroFilledAndBboltGrowsPastIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var want []eventlog.ID
	// Enough events to have the headroom refilled a few times.
	body := []byte(`"` + strings.Repeat("x", 4000) + `"`)
	for i := range 4000 {
		res, err := l.Append(ctx, eventlog.AppendRequest{Room: "r", Kind: eventlog.KindMessage, User: "u", Body: body})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want = append(want, res.Event.ID)
	}
	// One commit far larger than the headroom: 400 appends of 60 KB queued at once.
	big := []byte(`"` + strings.Repeat("y", 60_000) + `"`)
	var pending []*eventlog.Pending
	for range 400 {
		pending = append(pending, l.AppendAsync(eventlog.AppendRequest{Room: "r", Kind: eventlog.KindMessage, User: "u", Body: big}))
	}
	for i, p := range pending {
		res, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("big append %d: %v", i, err)
		}
		want = append(want, res.Event.ID)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	mark := highWaterMark(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < mark+1<<20 {
		t.Errorf("file is %d bytes, data ends at %d: less than 1 MiB of headroom", st.Size(), mark)
	}
	if hole := firstHole(t, path, mark); hole < mark+1<<20 {
		t.Errorf("hole at %d, within 1 MiB past the data (%d)", hole, mark)
	}

	// Everything reads back, the chain verifies and bbolt's own check finds nothing.
	l, err = boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.ReadAfter(ctx, "r", eventlog.ID{}, len(want)+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d events, appended %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("event %d is %s, appended %s", i, got[i].ID, want[i])
		}
	}
	if rep, err := l.Verify(ctx, ""); err != nil || rep.Broken != nil || rep.Events != uint64(len(want)) {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	l.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Error(fmt.Errorf("bbolt check: %w", err))
		}
		return nil
	})
}
