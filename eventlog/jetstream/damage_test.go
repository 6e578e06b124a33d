package jetstream_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// Messages that are not roomlog's on its subjects (another program publishing there, a stream
// restored from elsewhere) are refused with ErrCorrupt, never crashed on; the rooms around them
// go on working.
func TestForeignMessagesAreRefused(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	l := openNode(t, []*natstest.Server{s}, jetstream.Options{})
	ctx := context.Background()
	if _, err := l.Append(ctx, text("good", "u", "fine")); err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, hdr nats.Header, data []byte) {
		t.Helper()
		m := &nats.Msg{Subject: subject, Header: hdr, Data: data}
		if _, err := nc.RequestMsg(m, 5e9); err != nil {
			t.Fatal(err)
		}
	}
	room := "doc:damaged"
	subject := "roomlog.ev." + base64.RawURLEncoding.EncodeToString([]byte(room))
	publish(subject, nil, []byte("not a record"))                                                // no id
	publish(subject, nats.Header{"Rl-Id": {"01ARZ3NDEKTSV4RRFFQ69G5FAV"}}, []byte{1, 2, 3})      // a short record
	publish("roomlog.ev.!!notbase64", nats.Header{"Rl-Id": {"01ARZ3NDEKTSV4RRFFQ69G5FAV"}}, nil) // not a room

	if _, err := l.ReadAfter(ctx, room, eventlog.ID{}, 10); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Errorf("ReadAfter of the damaged room: %v, want ErrCorrupt", err)
	}
	if _, err := l.Head(ctx, room); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Errorf("Head of the damaged room: %v, want ErrCorrupt", err)
	}
	if _, err := l.Append(ctx, text(room, "u", "x")); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Errorf("Append to the damaged room: %v, want ErrCorrupt", err)
	}
	if rep, err := l.Verify(ctx, room); err == nil && rep.Broken == nil {
		t.Errorf("Verify of the damaged room found nothing")
	}
	if err := l.Rooms(ctx, func(eventlog.RoomInfo) error { return nil }); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Errorf("Rooms with a subject that names no room: %v, want ErrCorrupt", err)
	}
	// The good room is untouched.
	if evs, err := l.ReadAfter(ctx, "good", eventlog.ID{}, 10); err != nil || len(evs) != 1 {
		t.Errorf("the good room: %d events, %v", len(evs), err)
	}
	if _, err := l.Append(ctx, text("good", "u", "still fine")); err != nil {
		t.Errorf("append to the good room: %v", err)
	}
}

// A node whose JetStream is gone still stops: Close waits Options.Timeout for what is queued,
// then those appends fail, and it returns.
func TestCloseWithJetStreamGone(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	l, err := jetstream.Open(context.Background(), nc, jetstream.Options{Timeout: 300 * time.Millisecond, MaxBatch: 1}) // 200 batches: 60 s if each waited out its timeout
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), text("r", "u", "before")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	var pending []*eventlog.Pending
	for range 200 {
		pending = append(pending, l.AppendAsync(text("r", "u", "after")))
	}
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s with JetStream gone")
	}
	for i, p := range pending {
		select {
		case <-p.Done():
			if _, err := p.Result(); err == nil {
				t.Fatalf("append %d succeeded with JetStream gone", i)
			}
		default:
			t.Fatalf("append %d still pending after Close", i)
		}
	}
}

// Bodies larger than the NATS server takes are refused when the log opens, not at the first
// large publish.
func TestBodiesMustFitMaxPayload(t *testing.T) {
	s := natstest.Start(t)
	_, err := jetstream.Open(context.Background(), natstest.Connect(t, s), jetstream.Options{MaxBody: 4 << 20})
	if err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("Open with 4 MiB bodies on a 1 MiB server: %v", err)
	}
}

// Appends queued behind one that JetStream did not answer fail with it, instead of each waiting
// out its own timeout in turn (on one replica a room's few waiting appends go one by one): a
// server draining its clients' publishes at shutdown with JetStream gone would otherwise take
// the timeout times the queue.
func TestQueuedAppendsFailTogether(t *testing.T) {
	s := natstest.Start(t)
	l, err := jetstream.Open(context.Background(), natstest.Connect(t, s), jetstream.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.Append(context.Background(), text("r", "u", "before")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	var pending []*eventlog.Pending
	for i := range 15 { // below the 16 from which they would go in one batch
		req := text("r", "u", "after")
		req.Key = fmt.Sprint("k", i)
		pending = append(pending, l.AppendAsync(req))
	}
	deadline := time.After(3 * time.Second) // one by one: 15 timeouts, 4.5 s
	for i, p := range pending {
		select {
		case <-p.Done():
			if _, err := p.Result(); err == nil {
				t.Fatalf("append %d succeeded with JetStream gone", i)
			}
		case <-deadline:
			t.Fatalf("append %d still pending 3 s after JetStream went", i)
		}
	}
}
