package boltlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
)

// pristine is a real log of 300 events in three rooms, written once per test binary.
var pristine struct {
	once   sync.Once
	bytes  []byte
	events map[string][]eventlog.Event
}

func pristineLog(t testing.TB) ([]byte, map[string][]eventlog.Event) {
	pristine.once.Do(func() {
		dir, err := os.MkdirTemp("", "pristine")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "p.db")
		l, err := boltlog.Open(path, boltlog.Options{})
		if err != nil {
			panic(err)
		}
		pristine.events = map[string][]eventlog.Event{}
		for i := range 300 {
			room := fmt.Sprintf("r%d", i%3)
			r, err := l.Append(context.Background(), eventlog.AppendRequest{
				Room: room, User: "u", Key: fmt.Sprint("k", i), Body: []byte(fmt.Sprintf(`{"n":%d,"pad":"%0200d"}`, i, i)),
			})
			if err != nil {
				panic(err)
			}
			pristine.events[room] = append(pristine.events[room], r.Event)
		}
		if err := l.Close(); err != nil {
			panic(err)
		}
		pristine.bytes, err = os.ReadFile(path)
		if err != nil {
			panic(err)
		}
	})
	return pristine.bytes, pristine.events
}

// highWater is the pages in use in a bbolt file, from its newest meta page.
func highWater(b []byte) int {
	read := func(off int) (txid, pgid uint64) {
		m := b[off+16:]
		return leUint64(m[48:]), leUint64(m[40:])
	}
	t0, p0 := read(0)
	t1, p1 := read(4096)
	if t1 > t0 {
		return int(p1)
	}
	return int(p0)
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// openDamaged opens damaged bytes both ways and checks the outcome is one a user can trust: the
// open is refused with ErrCorrupt or ErrNotLog (and the file is left as it was), or it succeeds and
// Verify reports the damage, or every event reads back exactly as written (the damage hit no
// page in use). It never crashes; a crash fails the whole test binary.
func openDamaged(t testing.TB, damaged []byte, what string) (refused bool) {
	t.Helper()
	_, events := pristineLog(t)
	path := filepath.Join(t.TempDir(), "d.db")
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		l, err := boltlog.Open(path, boltlog.Options{ReadOnly: ro})
		if err != nil {
			if !errors.Is(err, eventlog.ErrCorrupt) && !errors.Is(err, boltlog.ErrNotLog) {
				t.Fatalf("%s (read-only %v): refused with %v, want ErrCorrupt or ErrNotLog", what, ro, err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
				t.Fatalf("%s (read-only %v): a refused open changed the file", what, ro)
			}
			refused = true
			continue
		}
		rep, verr := l.Verify(context.Background(), "")
		intact := verr == nil && rep.Broken == nil
		if intact {
			for room, want := range events {
				got, err := l.ReadAfter(context.Background(), room, eventlog.ID{}, 1000)
				if err != nil || len(got) != len(want) {
					t.Fatalf("%s: verify says intact, but room %s reads %d events (%v), want %d", what, room, len(got), err, len(want))
				}
				for i := range got {
					if got[i].ID != want[i].ID || !bytes.Equal(got[i].Body, want[i].Body) {
						t.Fatalf("%s: verify says intact, but event %d of %s differs", what, i, room)
					}
				}
			}
		}
		l.Scan(context.Background(), eventlog.ScanFilter{}, func(eventlog.Event) error { return nil })
		l.Rooms(context.Background(), func(eventlog.RoomInfo) error { return nil })
		if err := l.Close(); err != nil && intact {
			t.Fatalf("%s: close: %v", what, err)
		}
		if !ro {
			// A writable open may have appended nothing, but bbolt's own open writes no byte of
			// the data; write the damaged copy again for the next round.
			os.WriteFile(path, damaged, 0o600)
		}
	}
	return refused
}

// Every page of a real log overwritten with garbage, zeros or a flipped header, and the file cut
// at every page boundary: refused with a clear error, or reported by Verify, or harmless; never a
// crash (bbolt alone dies with SIGBUS on a truncated file, and panics out of any recover's reach on
// a damaged page at a writable open).
func TestDamagedFilesAreRefused(t *testing.T) {
	good, _ := pristineLog(t)
	pages := highWater(good)
	rng := rand.New(rand.NewPCG(1, 2))
	refused, tried := 0, 0
	for p := range pages {
		for _, how := range []string{"garbage", "zeros", "header"} {
			b := bytes.Clone(good)
			page := b[p*4096 : (p+1)*4096]
			switch how {
			case "garbage":
				for i := range page {
					page[i] = byte(rng.Uint32())
				}
			case "zeros":
				clear(page)
			case "header":
				page[8] ^= 0x13 // the page's type flags
			}
			tried++
			if openDamaged(t, b, fmt.Sprintf("page %d (%s)", p, how)) {
				refused++
			}
		}
	}
	for p := 0; p < pages; p++ {
		tried++
		if !openDamaged(t, good[:p*4096+rng.IntN(4096)], fmt.Sprintf("cut in page %d", p)) {
			t.Fatalf("a file cut in page %d of %d was not refused", p, pages)
		}
		refused++
	}
	t.Logf("%d damaged files tried (%d pages in use), %d refused at open, none crashed", tried, pages, refused)
}

func TestDamagedFileErrorsNameTheDamage(t *testing.T) {
	good, _ := pristineLog(t)
	pages := highWater(good)
	cases := []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"empty", nil, "empty (0 bytes)"},
		{"truncated", good[:(pages-1)*4096], fmt.Sprintf("truncated: expected at least %d bytes", pages*4096)},
		{"not bbolt", bytes.Repeat([]byte("roomlog? no.\n"), 1000), "neither meta page is valid"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "x.db")
		os.WriteFile(path, tc.bytes, 0o600)
		_, err := boltlog.Open(path, boltlog.Options{ReadOnly: true})
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) || !bytes.Contains([]byte(err.Error()), []byte(path)) {
			t.Errorf("%s: %v, want an error naming %s and %q", tc.name, err, path, tc.want)
		}
	}
}

// FuzzOpenDamaged damages a real log (bytes written at an offset, then a cut) and opens it: the
// outcome must be one openDamaged accepts.
func FuzzOpenDamaged(f *testing.F) {
	good, _ := pristineLog(f)
	f.Add(uint32(2*4096+100), []byte{0xff, 0xff, 0xff, 0xff}, uint32(len(good)))
	f.Add(uint32(3*4096), bytes.Repeat([]byte{0xab}, 4096), uint32(len(good)))
	f.Add(uint32(0), []byte{}, uint32(3*4096))
	f.Add(uint32(4096+16+40), []byte{9, 9, 9, 9, 9, 9, 9, 9}, uint32(len(good)))
	f.Fuzz(func(t *testing.T, off uint32, data []byte, size uint32) {
		b := bytes.Clone(good)
		if int(off) < len(b) {
			copy(b[off:], data)
		}
		if int(size) < len(b) {
			b = b[:size]
		}
		openDamaged(t, b, "fuzzed")
	})
}
