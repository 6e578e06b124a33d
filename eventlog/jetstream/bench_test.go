package jetstream_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/internal/servertest"
)

// BenchmarkReadAfter reads pages of 128 events after cursors spread over a room of 10,000 events
// of 200 bytes, on one in-process server: what a member catching up costs per page.
func BenchmarkReadAfter(b *testing.B) {
	const n = 10000
	l, ids := benchRoom(b, n)
	b.ResetTimer()
	events := 0
	for i := 0; b.Loop(); i++ {
		got, err := l.ReadAfterFunc(context.Background(), "bench", ids[(i*997)%(n-200)], 128, func(*eventlog.Event) error { return nil })
		if err != nil || got != 128 {
			b.Fatalf("read %d, %v", got, err)
		}
		events += got
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCatchUp reads a room of 10,000 events from its start in pages of 128, as a member
// resuming from an old cursor does, by one reader and by ten at once.
func BenchmarkCatchUp(b *testing.B) {
	const n = 10000
	l, _ := benchRoom(b, n)
	for _, readers := range []int{1, 10} {
		b.Run(fmt.Sprint("readers=", readers), func(b *testing.B) {
			for b.Loop() {
				var wg sync.WaitGroup
				for range readers {
					wg.Go(func() {
						var after eventlog.ID
						for got := 0; got < n; {
							k, err := l.ReadAfterFunc(context.Background(), "bench", after, 128, func(e *eventlog.Event) error { after = e.ID; return nil })
							if err != nil || k == 0 {
								b.Errorf("read %d after %d: %v", k, got, err)
								return
							}
							got += k
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(readers*n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSessions has sessions join a room, set their presence once and leave, 8 at a time, on
// one in-process server: the cost of membership, including (since sessions that left are
// forgotten) the removal of their markers, which runs beside the appends.
func BenchmarkSessions(b *testing.B) {
	s := natstest.Start(b)
	l, err := jetstream.Open(context.Background(), natstest.Connect(b, s), jetstream.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	var next atomic.Int64
	b.SetParallelism(4) // 8 goroutines on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			session := fmt.Sprint("s", next.Add(1))
			for _, kind := range []string{eventlog.KindJoin, eventlog.KindPresence, eventlog.KindLeave} {
				req := eventlog.AppendRequest{Room: "bench:members", User: "u", Session: session, Kind: kind, System: true}
				if kind == eventlog.KindPresence {
					req.Body = []byte(`{"cursor":42}`)
				}
				if _, err := l.Append(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
}

// benchRoom opens a log on an in-process server with the room "bench" of n keyed events of 200
// bytes, and returns their ids.
func benchRoom(b *testing.B, n int) (*jetstream.Log, []eventlog.ID) {
	s := natstest.Start(b)
	l, err := jetstream.Open(context.Background(), natstest.Connect(b, s), jetstream.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	body := []byte(`{"text":"` + strings.Repeat("x", 180) + `"}`)
	var pending []*eventlog.Pending
	for i := range n {
		pending = append(pending, l.AppendAsync(eventlog.AppendRequest{Room: "bench", User: "u", Key: fmt.Sprint(i), Body: body}))
	}
	ids := make([]eventlog.ID, 0, n)
	for _, p := range pending {
		r, err := p.Wait(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r.Event.ID)
	}
	return l, ids
}

// BenchmarkAppend appends 200-byte events to one room, keyed (as clients publish) and unkeyed,
// with 1 and 64 appends outstanding, on one in-process server (R1) and on a three-server
// cluster (R3): what the write path costs per event. The events/s metric is the figure to
// compare.
func BenchmarkAppend(b *testing.B) {
	body := []byte(`{"text":"` + strings.Repeat("x", 180) + `"}`)
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprint("R", replicas), func(b *testing.B) {
			var l *jetstream.Log
			var err error
			if replicas == 1 {
				l, err = jetstream.Open(context.Background(), natstest.Connect(b, natstest.Start(b)), jetstream.Options{Replicas: 1})
			} else {
				servertest.Long(b, "a three-server cluster")
				c := natstest.StartCluster(b, 3)
				l, err = jetstream.Open(context.Background(), natstest.Connect(b, c.Servers...), jetstream.Options{Replicas: 3})
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			var run atomic.Int64
			for _, keyed := range []bool{true, false} {
				for _, inFlight := range []int{1, 64} {
					b.Run(fmt.Sprintf("keyed=%v/in_flight=%d", keyed, inFlight), func(b *testing.B) {
						room := fmt.Sprint("bench-", run.Add(1))
						window := make(chan *eventlog.Pending, inFlight)
						done := make(chan struct{})
						go func() {
							defer close(done)
							for p := range window {
								if _, err := p.Wait(context.Background()); err != nil {
									b.Error(err)
								}
							}
						}()
						i := 0
						for b.Loop() {
							req := eventlog.AppendRequest{Room: room, User: "u", Body: body}
							if keyed {
								req.Key = fmt.Sprint(i)
							}
							window <- l.AppendAsync(req)
							i++
						}
						close(window)
						<-done
						b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
					})
				}
			}
		})
	}
}
