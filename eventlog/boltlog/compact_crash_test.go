package boltlog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/faultfs"
)

// The compaction crash test runs this test binary again as a child that compacts a long room in
// small steps while appending to it, printing each ack; the parent kills it with SIGKILL part way
// and checks that the room is still a verifiable suffix of what it was, with nothing acked lost,
// and that a second compaction finishes the job and records it once.
const compactChildEnv = "ROOMLOG_EVENTLOG_COMPACT_CHILD"

// runCompactChild is the child's main; it reports whether this process is the child.
func runCompactChild() bool {
	path := os.Getenv(compactChildEnv)
	if path == "" {
		return false
	}
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	boltlog.SetCompactChunk(l, 100)
	// One line at a time: the appender and the compaction both speak, and lines written through
	// one buffer by two goroutines at once came out torn ("child said 5W037CJYEB").
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	go func() {
		for i := 0; ; i++ {
			r, err := l.Append(context.Background(), eventlog.AppendRequest{Room: "long", User: "w", Key: fmt.Sprint("late-", i), Body: []byte(`1`)})
			if err != nil {
				return
			}
			say("acked %s", r.Event.ID)
		}
	}()
	say("compacting")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // bounded if nobody kills us
	defer cancel()
	if _, err := l.Compact(ctx, "long", "ops"); err != nil {
		fmt.Fprintln(os.Stderr, "child compact:", err)
		os.Exit(4)
	}
	say("done")
	time.Sleep(30 * time.Second) // wait to be killed
	os.Exit(0)
	return true
}

func TestCrashDuringCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	crashDuringCompaction(t, filepath.Join(t.TempDir(), "compact.db"), nil)
}

// TestPowerCutDuringCompaction is the crash test on the fault-injecting file system, with the
// power cut after each kill: the disk keeps only what was fsynced.
func TestPowerCutDuringCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("power-cut test skipped in -short mode")
	}
	f := faultfs.MountT(t)
	crashDuringCompaction(t, filepath.Join(f.Dir(), "compact.db"), func() {
		f.PowerCut()
		f.PowerOn()
	})
}

// crashDuringCompaction prepares a long room with a snapshot at path, then kills compacting
// children part way (and runs cut after each kill, if given) and checks what each left.
func crashDuringCompaction(t *testing.T, path string, cut func()) {
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	for i := range n {
		p := l.AppendAsync(eventlog.AppendRequest{Room: "long", User: "u", Body: []byte(fmt.Sprint(i))})
		if i%500 == 499 || i == n-1 {
			if _, err := p.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	original, err := l.ReadAfter(context.Background(), "long", eventlog.ID{}, n)
	if err != nil || len(original) != n {
		t.Fatalf("%d events, %v", len(original), err)
	}
	covered := original[n-1]
	body, _ := json.Marshal(map[string]string{"covers": covered.ID.String()})
	snap, err := l.Append(context.Background(), eventlog.AppendRequest{Room: "long", User: "u", Kind: eventlog.KindSnapshot, Body: body, Expect: &covered.ID})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	acked := map[eventlog.ID]bool{}
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), compactChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		killAfter := time.Duration(1+rand.IntN(20)) * time.Millisecond
		var timer *time.Timer
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "compacting":
				timer = time.AfterFunc(killAfter, func() { cmd.Process.Kill() })
			case len(f) == 1 && f[0] == "done":
				cmd.Process.Kill()
			case len(f) == 2 && f[0] == "acked":
				id, err := eventlog.ParseID(f[1])
				if err != nil {
					t.Fatalf("child said %q", sc.Text())
				}
				acked[id] = true
			default:
				t.Fatalf("child said %q", sc.Text())
			}
		}
		cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		if cut != nil {
			cut()
		}

		l, err := boltlog.Open(path, boltlog.Options{})
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		checkCompactedSuffix(t, l, original, snap.Event, acked)
		l.Close()
	}
	// Whatever the kills left, one more Compact finishes it, and the room records it once.
	l, err = boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Compact(context.Background(), "long", "ops"); err != nil {
		t.Fatal(err)
	}
	floor, _ := l.Floor(context.Background(), "long")
	if floor.ID != covered.ID || floor.Count != n {
		t.Fatalf("floor after the last Compact: %+v, want the covered event %s, %d", floor, covered.ID, n)
	}
	records := 0
	evs, _ := l.ReadAfter(context.Background(), "long", eventlog.ID{}, 100000)
	for _, e := range evs {
		if e.Kind == eventlog.KindCompaction {
			records++
		}
	}
	if records != 1 {
		t.Fatalf("%d compaction records, want 1", records)
	}
	checkCompactedSuffix(t, l, original, snap.Event, acked)
}

// checkCompactedSuffix checks a room a compaction may have been cut short in: its events are
// the original ones from some point on, then the snapshot and everything acked after it; the
// floor names the event before that point; the chain verifies.
func checkCompactedSuffix(t *testing.T, l *boltlog.Log, original []eventlog.Event, snap eventlog.Event, acked map[eventlog.ID]bool) {
	t.Helper()
	ctx := context.Background()
	floor, err := l.Floor(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	k := int(floor.Count)
	if k > 0 && (original[k-1].ID != floor.ID || original[k-1].Hash != floor.Hash) {
		t.Fatalf("floor %+v is not original event %d", floor, k)
	}
	evs, err := l.ReadAfter(ctx, "long", eventlog.ID{}, 1000000)
	if err != nil {
		t.Fatal(err)
	}
	rest := original[k:]
	if len(evs) < len(rest)+1 {
		t.Fatalf("%d events after a floor at %d, want at least %d", len(evs), k, len(rest)+1)
	}
	for i, e := range rest {
		if evs[i].ID != e.ID {
			t.Fatalf("event %d after the floor is %s, want %s: not a suffix", i, evs[i].ID, e.ID)
		}
	}
	if evs[len(rest)].ID != snap.ID {
		t.Fatalf("after the covered events comes %s, want the snapshot %s", evs[len(rest)].ID, snap.ID)
	}
	have := map[eventlog.ID]bool{}
	for _, e := range evs {
		have[e.ID] = true
	}
	for id := range acked {
		if !have[id] {
			t.Fatalf("acked event %s lost", id)
		}
	}
	rep, err := l.Verify(ctx, "long")
	if err != nil || rep.Broken != nil || rep.Compacted != uint64(k) {
		t.Fatalf("verify with a floor at %d: %+v %v", k, rep, err)
	}
	t.Logf("floor at event %d of %d; %d events after it; %d acked appends kept", k, len(original), len(evs), len(acked))
}

// TestVerifyDuringCompaction: a verification that walks a room while a compaction removes its
// start (the admin API allows both at once) reports no break, and counts what was removed.
func TestVerifyDuringCompaction(t *testing.T) {
	ctx := context.Background()
	for round := range 3 {
		l, err := boltlog.Open(filepath.Join(t.TempDir(), "v.db"), boltlog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		boltlog.SetCompactChunk(l, 300)
		boltlog.SetVerifyChunk(l, 50)
		var last eventlog.ID
		for i := range 15000 {
			p := l.AppendAsync(eventlog.AppendRequest{Room: "long", User: "u", Body: []byte(fmt.Sprint(i))})
			if i == 14999 {
				r, err := p.Wait(ctx)
				if err != nil {
					t.Fatal(err)
				}
				last = r.Event.ID
			}
		}
		body, _ := json.Marshal(map[string]string{"covers": last.String()})
		if _, err := l.Append(ctx, eventlog.AppendRequest{Room: "long", User: "u", Kind: eventlog.KindSnapshot, Body: body, Expect: &last}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			time.Sleep(time.Duration(round) * time.Millisecond)
			_, err := l.Compact(ctx, "long", "ops")
			done <- err
		}()
		for i := 0; ; i++ {
			rep, err := l.Verify(ctx, "long")
			if err != nil || rep.Broken != nil {
				t.Fatalf("round %d, verify %d during a compaction: %+v %v", round, i, rep.Broken, err)
			}
			if compacting(done, t) {
				continue
			}
			rep, _ = l.Verify(ctx, "long")
			if rep.Broken != nil || rep.Compacted != 15000 || rep.Events != 2 {
				t.Fatalf("after the compaction: %+v", rep)
			}
			break
		}
		l.Close()
	}
}

// compacting reports whether the compaction reporting on done still runs.
func compacting(done chan error, t *testing.T) bool {
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		return false
	default:
		return true
	}
}
