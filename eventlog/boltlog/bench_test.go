package boltlog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	bolt "go.etcd.io/bbolt"
)

// body200 is a 200-byte JSON body, the payload size of every benchmark.
var body200 = []byte(fmt.Sprintf(`{"text":"%188s"}`, "x"))

// BenchmarkAppend measures durable appends (fsync on) with 1 to 256 concurrent appenders, each
// waiting for its ack before the next append, as a publishing client does, into one busy room and
// spread over 16 rooms (each commit then rewrites the tail page of every room it touches). It
// reports events/s and the p50/p99 latency of one append.
//
//	go test -run '^$' -bench 'BenchmarkAppend$' -benchtime 20000x ./eventlog/
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct{ rooms, appenders int }{
		{1, 1}, {1, 16}, {1, 64}, {1, 256}, {16, 16}, {16, 64}, {16, 256},
	} {
		b.Run(fmt.Sprintf("rooms=%d/appenders=%d", c.rooms, c.appenders), func(b *testing.B) {
			runAppenders(b, c.appenders, func(a, i int) eventlog.AppendRequest {
				return eventlog.AppendRequest{Room: fmt.Sprintf("room-%d", a%c.rooms), User: "bench", Body: body200}
			})
		})
	}
}

// runAppenders has appenders goroutines append b.N events in all, each waiting for its ack, and
// reports events/s and the p50/p99/p999 latency of one append.
func runAppenders(b *testing.B, appenders int, request func(appender, i int) eventlog.AppendRequest) {
	l, err := boltlog.Open(filepath.Join(b.TempDir(), "bench.db"), boltlog.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	lat := make([][]time.Duration, appenders)
	per := max(b.N/appenders, 1)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for a := range appenders {
		wg.Go(func() {
			lat[a] = make([]time.Duration, 0, per)
			for i := range per {
				t0 := time.Now()
				if _, err := l.Append(context.Background(), request(a, i)); err != nil {
					b.Error(err)
					return
				}
				lat[a] = append(lat[a], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(all[len(all)*999/1000].Microseconds()), "p999-µs")
}

// BenchmarkAppendKeyed is BenchmarkAppend over 16 rooms with an idempotency key on every event,
// each appender a distinct user (as distinct clients are): the cost of deduplication, and of
// flushing the keys to disk, in throughput and in tail latency.
//
//	go test -run '^$' -bench BenchmarkAppendKeyed -benchtime 40000x ./eventlog/
func BenchmarkAppendKeyed(b *testing.B) {
	for _, appenders := range []int{64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			runAppenders(b, appenders, func(a, i int) eventlog.AppendRequest {
				return eventlog.AppendRequest{Room: fmt.Sprintf("room-%d", a%16), User: fmt.Sprint("user-", a),
					Key: fmt.Sprintf("c-%d-%d", a, i), Body: body200}
			})
		})
	}
}

// fillLog appends n events with 200-byte bodies to room (keyed when keyed is set) quickly, from
// many queued appends at once.
func fillLog(tb testing.TB, l *boltlog.Log, room string, n int, keyed bool) {
	tb.Helper()
	const window = 8192
	pending := make([]*eventlog.Pending, 0, window)
	flush := func() {
		for _, p := range pending {
			if _, err := p.Wait(context.Background()); err != nil {
				tb.Fatal(err)
			}
		}
		pending = pending[:0]
	}
	for i := range n {
		req := eventlog.AppendRequest{Room: room, User: "user-1", Session: "s1", Body: body200}
		if keyed {
			req.Key = fmt.Sprintf("k-%08d", i)
		}
		pending = append(pending, l.AppendAsync(req))
		if len(pending) == window {
			flush()
		}
	}
	flush()
}

var (
	bigLogOnce sync.Once
	bigLogPath string
	bigLogIDs  []eventlog.ID
)

// bigLog builds, once per test binary run, a 1,000,000-event room for the read benchmarks.
func bigLog(b *testing.B) (string, []eventlog.ID) {
	bigLogOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roomlog-bench-")
		if err != nil {
			b.Fatal(err)
		}
		bigLogPath = filepath.Join(dir, "big.db")
		l, err := boltlog.Open(bigLogPath, boltlog.Options{})
		if err != nil {
			b.Fatal(err)
		}
		fillLog(b, l, "big", 1_000_000, false)
		after := eventlog.ID{}
		for {
			page, err := l.ReadAfter(context.Background(), "big", after, 10000)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range page {
				bigLogIDs = append(bigLogIDs, e.ID)
			}
			if len(page) < 10000 {
				break
			}
			after = page[len(page)-1].ID
		}
		l.Close()
	})
	if len(bigLogIDs) != 1_000_000 {
		b.Fatalf("big log has %d events", len(bigLogIDs))
	}
	return bigLogPath, bigLogIDs
}

// BenchmarkReadAfter reads 1,000 events after a random cursor in a 1,000,000-event room, as a
// resuming client's catch-up does. It reports events/s.
//
//	go test -run '^$' -bench BenchmarkReadAfter ./eventlog/
func BenchmarkReadAfter(b *testing.B) {
	path, ids := bigLog(b)
	l, err := boltlog.Open(path, boltlog.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	read := 0
	for b.Loop() {
		after := ids[rng.IntN(len(ids)-1000)]
		evs, err := l.ReadAfter(ctx, "big", after, 1000)
		if err != nil || len(evs) != 1000 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
		read += len(evs)
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBytesPerEvent reports, for 1,000,000 events with 200-byte bodies, without and with
// idempotency keys (which live 24 h, then are pruned), the pages in use per event (bbolt's
// high-water mark) and the file size per event (which includes 1 to 4 MiB of zero-filled headroom).
//
//	go test -run '^$' -bench BenchmarkBytesPerEvent -benchtime 1x ./eventlog/
func BenchmarkBytesPerEvent(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		b.Run(fmt.Sprintf("keyed=%v", keyed), func(b *testing.B) {
			const n = 1_000_000
			path := filepath.Join(b.TempDir(), "size.db")
			for b.Loop() {
				os.Remove(path)
				l, err := boltlog.Open(path, boltlog.Options{})
				if err != nil {
					b.Fatal(err)
				}
				fillLog(b, l, "doc:42", n, keyed)
				l.Close()
			}
			st, _ := os.Stat(path)
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var used int64
			db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
			b.ReportMetric(float64(used)/n, "bytes/event")
			b.ReportMetric(float64(st.Size())/n, "file-bytes/event")
		})
	}
}

// BenchmarkCompaction reports what compacting a room of 200,000 events (200-byte bodies) to a
// snapshot of its head does to the data file: bbolt never shrinks a file, so its size stays, but
// the pages in use drop and the freed pages take the next appends: after 200,000 more events the
// compacted file is compared with one that was not compacted.
//
//	go test -run '^$' -bench BenchmarkCompaction -benchtime 1x ./eventlog/
func BenchmarkCompaction(b *testing.B) {
	const n = 200_000
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	// usage opens the closed file and says its size and the bytes of the pages in use.
	usage := func(path string) (file, used int64) {
		st, _ := os.Stat(path)
		db, err := bolt.Open(path, 0o600, nil) // read-write: a read-only bbolt does not load its freelist
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.View(func(tx *bolt.Tx) error {
			used = tx.Size() - int64(db.Stats().FreePageN+db.Stats().PendingPageN)*int64(db.Info().PageSize)
			return nil
		})
		return st.Size(), used
	}
	for b.Loop() {
		dir := b.TempDir()
		compacted, plain := filepath.Join(dir, "compacted.db"), filepath.Join(dir, "plain.db")
		var took time.Duration
		for _, path := range []string{compacted, plain} {
			l, err := boltlog.Open(path, boltlog.Options{})
			if err != nil {
				b.Fatal(err)
			}
			fillLog(b, l, "doc:42", n, false)
			if path == compacted {
				h, _ := l.Head(context.Background(), "doc:42")
				body, _ := json.Marshal(map[string]string{"covers": h.ID.String(), "state": strings.Repeat("s", 10000)})
				if _, err := l.Append(context.Background(), eventlog.AppendRequest{Room: "doc:42", User: "u", Kind: eventlog.KindSnapshot, Body: body, Expect: &h.ID}); err != nil {
					b.Fatal(err)
				}
				l.Close()
				file, used := usage(path)
				b.ReportMetric(mib(file), "file-MiB-before")
				b.ReportMetric(mib(used), "used-MiB-before")
				if l, err = boltlog.Open(path, boltlog.Options{}); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := l.Compact(context.Background(), "doc:42", "bench"); err != nil {
					b.Fatal(err)
				}
				took = time.Since(start)
				l.Close()
				file, used = usage(path)
				b.ReportMetric(mib(file), "file-MiB-compacted")
				b.ReportMetric(mib(used), "used-MiB-compacted")
				if l, err = boltlog.Open(path, boltlog.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			fillLog(b, l, "doc:42", n, false)
			l.Close()
		}
		fc, _ := usage(compacted)
		fp, _ := usage(plain)
		b.ReportMetric(mib(fc), "file-MiB-compacted+200k")
		b.ReportMetric(mib(fp), "file-MiB-plain+200k")
		b.ReportMetric(took.Seconds(), "compact-s")
	}
}
