package jetstream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/internal/natstest"
)

var streams atomic.Int64

// backend opens each log of the suite on a stream of its own, on one server (R1).
func backend(t *testing.T) logtest.Backend {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	opts := map[eventlog.Store]jetstream.Options{}
	open := func(t testing.TB, o jetstream.Options) eventlog.Store {
		l, err := jetstream.Open(context.Background(), nc, o)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		opts[l] = o
		return l
	}
	return logtest.Backend{
		Open: func(t testing.TB, cfg logtest.Config) eventlog.Store {
			n := streams.Add(1)
			return open(t, jetstream.Options{
				Stream: fmt.Sprintf("T%d", n), Prefix: fmt.Sprintf("t%d", n),
				KeyRetention: cfg.KeyRetention, MaxBody: cfg.MaxBody, Now: cfg.Now,
			})
		},
		Reopen: func(t testing.TB, l eventlog.Store) eventlog.Store {
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, opts[l])
		},
	}
}

func TestConformance(t *testing.T) {
	logtest.Run(t, backend(t))
}
