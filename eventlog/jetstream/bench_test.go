package jetstream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// BenchmarkReadAfter reads pages of 128 events after cursors spread over a room of 10,000 events
// of 200 bytes, on one in-process server: what a member catching up costs per page.
func BenchmarkReadAfter(b *testing.B) {
	s := natstest.Start(b)
	l, err := jetstream.Open(context.Background(), natstest.Connect(b, s), jetstream.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const n = 10000
	body := []byte(`{"text":"` + strings.Repeat("x", 180) + `"}`)
	var ids []eventlog.ID
	var pending []*eventlog.Pending
	for i := range n {
		pending = append(pending, l.AppendAsync(eventlog.AppendRequest{Room: "bench", User: "u", Key: fmt.Sprint(i), Body: body}))
	}
	for _, p := range pending {
		r, err := p.Wait(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r.Event.ID)
	}
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
