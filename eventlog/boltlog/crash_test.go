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
	"github.com/roomlog/roomlog/internal/servertest"
)

// The crash test runs this test binary again as a child that appends from many goroutines and
// prints every key it sends and every ack it gets; the parent kills it with SIGKILL at a random
// moment and checks the file.
const crashChildEnv = "ROOMLOG_EVENTLOG_CRASH_CHILD"

// runCrashChild is the child's main; it reports whether this process is the child.
func runCrashChild() bool {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		return false
	}
	path, round, _ := strings.Cut(spec, "|")
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // every line reaches the pipe before the next append starts
		mu.Unlock()
	}
	deadline := time.Now().Add(30 * time.Second) // bounded even if nobody kills us
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				room := fmt.Sprintf("crash-%d", (g+i)%5)
				key := fmt.Sprintf("%s-g%d-%d", round, g, i)
				say("sent %s %s", room, key)
				r, err := l.Append(context.Background(), eventlog.AppendRequest{
					Room: room, User: "u", Key: key, Body: []byte(`{"g":` + fmt.Sprint(g) + `}`),
				})
				if err != nil {
					say("error %v", err)
					return
				}
				say("acked %s %s %s", room, key, r.Event.ID)
			}
		})
	}
	wg.Wait()
	l.Close()
	os.Exit(0)
	return true
}

type sentKey struct{ room, key string }

func TestCrashLosesNothingAcked(t *testing.T) {
	servertest.Long(t, "crash test")
	path := filepath.Join(t.TempDir(), "crash.db")
	rounds := 5
	total := 0
	for round := range rounds {
		sent, acked := crashChildRound(t, path, fmt.Sprintf("r%d", round))
		total += len(acked)

		l, err := boltlog.Open(path, boltlog.Options{})
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		checkAfterCrash(t, l, sent, acked)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d acked appends survived kill -9", rounds, total)
}

// crashChildRound runs the child until a random number of acks, kills it, and returns what it sent
// and what was acked (key -> id).
func crashChildRound(t *testing.T, path, round string) (sent []sentKey, acked map[sentKey]eventlog.ID) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path+"|"+round)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAt := 200 + rand.IntN(3000)
	acked = map[sentKey]eventlog.ID{}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "sent":
			sent = append(sent, sentKey{f[1], f[2]})
		case len(f) == 4 && f[0] == "acked":
			id, err := eventlog.ParseID(f[3])
			if err != nil {
				t.Fatalf("child printed a bad id: %q", sc.Text())
			}
			acked[sentKey{f[1], f[2]}] = id
		default:
			t.Fatalf("child said %q", sc.Text())
		}
		if !killed && len(acked) >= killAt {
			cmd.Process.Kill() // SIGKILL: no deferred code, no close, mid-commit
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before the kill (after %d acks): %v", len(acked), err)
	}
	return sent, acked
}

func checkAfterCrash(t *testing.T, l *boltlog.Log, sent []sentKey, acked map[sentKey]eventlog.ID) {
	t.Helper()
	ctx := context.Background()
	// Every acked event is there, once, and each room's ids increase.
	found := map[sentKey]int{}
	for room := range 5 {
		name := fmt.Sprintf("crash-%d", room)
		var last eventlog.ID
		after := eventlog.ID{}
		for {
			page, err := l.ReadAfter(ctx, name, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if e.ID.Compare(last) <= 0 {
					t.Fatalf("room %s: id %s after %s", name, e.ID, last)
				}
				last = e.ID
				k := sentKey{name, e.Key}
				found[k]++
				if id, ok := acked[k]; ok && id != e.ID {
					t.Fatalf("key %s acked as %s but stored as %s", e.Key, id, e.ID)
				}
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	for k, id := range acked {
		if found[k] != 1 {
			t.Fatalf("acked event %s (key %s) found %d times after kill -9", id, k.key, found[k])
		}
	}
	if rep, err := l.Verify(ctx, ""); err != nil || rep.Broken != nil {
		t.Fatalf("verify after kill -9: %+v, %v", rep.Broken, err)
	}
	// Resending every key that was sent (acked or in flight) appends nothing twice.
	for _, k := range sent {
		r, err := l.Append(ctx, eventlog.AppendRequest{Room: k.room, User: "u", Key: k.key, Body: []byte(`{"resent":true}`)})
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := acked[k]; ok && (!r.Duplicate || r.Event.ID != id) {
			t.Fatalf("resend of acked key %s: duplicate=%v id %s, want %s", k.key, r.Duplicate, r.Event.ID, id)
		}
		if found[k] == 1 && !r.Duplicate {
			t.Fatalf("resend of stored key %s appended again", k.key)
		}
	}
	counts := map[sentKey]int{}
	err := l.Scan(ctx, eventlog.ScanFilter{}, func(e eventlog.Event) error {
		counts[sentKey{e.Room, e.Key}]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range sent {
		if counts[k] != 1 {
			t.Fatalf("key %s is in the log %d times after resending every sent key", k.key, counts[k])
		}
	}
}

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
	servertest.Long(t, "crash test")
	crashDuringCompaction(t, filepath.Join(t.TempDir(), "compact.db"), nil)
}

// TestPowerCutDuringCompaction is the crash test on the fault-injecting file system, with the
// power cut after each kill: the disk keeps only what was fsynced.
func TestPowerCutDuringCompaction(t *testing.T) {
	servertest.Long(t, "power-cut test")
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
