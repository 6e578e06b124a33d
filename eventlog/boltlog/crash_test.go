package boltlog_test

import (
	"bufio"
	"context"
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
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
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
