package main

import (
	"context"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/internal/natstest"
)

// The audit commands read the JetStream log of nodes directly with --nats, without a node, and
// write nothing to it.
func TestAuditOnJetStream(t *testing.T) {
	s := natstest.Start(t)
	l, err := jetstream.Open(context.Background(), natstest.Connect(t, s), jetstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var last eventlog.ID
	for i, room := range []string{"doc:1", "doc:2", "doc:1", "doc:1"} {
		r, err := l.Append(context.Background(), eventlog.AppendRequest{Room: room, User: "ann", Body: []byte(`{"n":` + string(rune('0'+i)) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		last = r.Event.ID
	}
	info := func() uint64 {
		h, err := l.Head(context.Background(), "doc:1")
		if err != nil {
			t.Fatal(err)
		}
		return h.Count
	}
	before := info()
	url := s.ClientURL()
	if code, out, errOut := roomlog(t, nil, "replay", "--nats", url, "--room", "doc:1", "--format", "jsonl"); code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, last.String()) {
		t.Fatalf("replay --nats: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := roomlog(t, nil, "verify", "--nats", url); code != 0 {
		t.Fatalf("verify --nats: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := roomlog(t, nil, "rooms", "--nats", url); code != 0 || !strings.Contains(out, "doc:1") || !strings.Contains(out, "doc:2") {
		t.Fatalf("rooms --nats: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := roomlog(t, nil, "heads", "--nats", url); code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, last.String()) {
		t.Fatalf("heads --nats: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := roomlog(t, nil, "verify", "--nats", url, "--nats-stream", "NOPE"); code != 1 || !strings.Contains(errOut, "stream not found") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Fatalf("verify of a missing stream: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := roomlog(t, nil, "verify", "--nats", url, "--data", "x.db"); code != 2 || !strings.Contains(errOut, "not several") {
		t.Fatalf("two sources: exit %d\n%s", code, errOut)
	}
	if after := info(); after != before {
		t.Fatalf("auditing changed the log: %d events, then %d", before, after)
	}
}
