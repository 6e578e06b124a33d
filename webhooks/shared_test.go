package webhooks_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/webhooks"
)

// TestSharedLogOneNodeDelivers: two nodes on one JetStream run the same webhook. One delivers,
// in the order the log stored the events (not the order of ids, which the nodes' clocks make);
// when it dies, the other takes its lease over and goes on from the durable cursor: every event
// arrives, first arrivals in log order, and at most the two batches after the durable cursor
// come twice.
func TestSharedLogOneNodeDelivers(t *testing.T) {
	s := natstest.Start(t)
	open := func(name string, now func() time.Time) *jetstream.Log {
		return openJetStream(t, jetstream.Options{Node: name, LeaseTTL: 600 * time.Millisecond, Now: now}, s)
	}
	nodes := map[string]*jetstream.Log{
		"a": open("a", nil),
		"b": open("b", func() time.Time { return time.Now().Add(-time.Hour) }), // an hour slow
	}
	r := newReceiver(t, 0)
	hooks := map[string]*webhooks.Webhook{}
	stops := map[string]func(){}
	for name, l := range nodes {
		w, cancel, done := start(t, l, webhooks.Config{URL: r.URL, Batch: 10})
		hooks[name], stops[name] = w, func() { cancel(); <-done }
		defer stops[name]()
	}

	var want []string
	appendSome := func(via []*jetstream.Log, n int) {
		for i := range n {
			l := via[i%len(via)]
			res, err := l.Append(context.Background(), eventlog.AppendRequest{Room: fmt.Sprintf("doc:%d", i%3), User: "u", Body: []byte(fmt.Sprint(i))})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, res.Event.ID.String())
		}
	}
	appendSome([]*jetstream.Log{nodes["a"], nodes["b"]}, 60)
	waitFor(t, "the first events", func() bool { return len(r.got()) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	logtest.SameIDs(t, r.got(), want) // one node delivers: nothing twice

	ctx := context.Background()
	holder := hooks["a"].Status(ctx).Node
	if holder == "" || hooks["b"].Status(ctx).Node != holder {
		t.Fatalf("the nodes disagree on who delivers: %q and %q", holder, hooks["b"].Status(ctx).Node)
	}
	other := map[string]string{"a": "b", "b": "a"}[holder]
	nodes[holder].Close() // the delivering node dies
	appendSome([]*jetstream.Log{nodes[other]}, 40)
	waitFor(t, "the survivor to deliver", func() bool { return len(logtest.FirstArrivals(r.got())) >= len(want) })
	logtest.SameIDs(t, logtest.FirstArrivals(r.got()), want)
	if repeats := len(r.got()) - len(want); repeats > 20 {
		t.Errorf("%d events repeated, want at most the two batches after the durable cursor", repeats)
	}
	var st webhooks.Status
	waitFor(t, "the cursor past the last batch", func() bool { // written behind the delivery
		st = hooks[other].Status(ctx)
		return st.Pending == 0
	})
	if st.Node != other || st.Cursor == "" || st.LagMS != 0 {
		t.Errorf("the survivor's status: %+v", st)
	}
}

// TestHasDelivered: a compaction asks whether a webhook has gone past an event; on both kinds
// of log the answer follows the durable cursor, and rooms the webhook does not deliver are
// always past.
func TestHasDelivered(t *testing.T) {
	for name, l := range map[string]eventlog.Store{"boltlog": openBolt(t), "jetstream": openJetStream(t, jetstream.Options{})} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			ids := appendN(t, l, "doc:1", "message", 5)
			other := appendN(t, l, "chat:1", "message", 1)
			last, _ := eventlog.ParseID(ids[4])
			chat, _ := eventlog.ParseID(other[0])
			r := newReceiver(t, 0)
			cfg := webhooks.Config{Name: "app", URL: r.URL, Secret: secret, Rooms: []string{"doc:*"}}
			idle, err := webhooks.New(cfg, l)
			if err != nil {
				t.Fatal(err)
			}
			if past, err := idle.HasDelivered(ctx, "doc:1", last); past || err != nil {
				t.Fatalf("before any delivery: past %v, %v", past, err)
			}
			if past, err := idle.HasDelivered(ctx, "chat:1", chat); !past || err != nil {
				t.Fatalf("a room the webhook does not deliver: past %v, %v", past, err)
			}
			w, cancel, done := start(t, l, webhooks.Config{URL: r.URL, Rooms: []string{"doc:*"}})
			defer func() { cancel(); <-done }()
			waitFor(t, "delivery", func() bool { return w.Status(ctx).Pending == 0 && len(r.got()) == 5 })
			waitFor(t, "the cursor past the last event", func() bool { // written behind the delivery
				past, err := idle.HasDelivered(ctx, "doc:1", last)
				if err != nil {
					t.Fatal(err)
				}
				return past
			})
		})
	}
}
