package follow_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/memlog"
	"github.com/roomlog/roomlog/internal/follow"
	"go.uber.org/goleak"
)

// TestFollow: a follower started after an id applies the room's later events once each, in
// order, then each new one as it is appended (calling wake), and nothing of other rooms.
func TestFollow(t *testing.T) {
	l := memlog.New(memlog.Options{})
	defer l.Close()
	ctx := context.Background()
	add := func(room string) eventlog.ID {
		res, err := l.Append(ctx, eventlog.AppendRequest{Room: room, User: "u"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Event.ID
	}
	before := add("r")
	want := []eventlog.ID{add("r"), add("r")}
	var mu sync.Mutex
	var got []eventlog.ID
	var woken atomic.Int64
	f, err := follow.Start(ctx, l, "r", before, func(e *eventlog.Event) {
		mu.Lock()
		got = append(got, e.ID)
		mu.Unlock()
	}, func() { woken.Add(1) }, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	add("other")
	want = append(want, add("r"), add("r"))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) && woken.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d events", n, len(want))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("applied %v, want %v", got, want)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("applied %d events, want %d", len(got), len(want))
	}
}

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
