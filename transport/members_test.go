package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
)

func TestGracePeriod(t *testing.T) {
	ts := startServer(t, serverOpts{grace: 1500 * time.Millisecond})
	tok := token(t, "alice", []string{"doc:*"})
	a := connect(t, ts, tok, "phone")
	a.join("doc:1", nil)
	// A drop and a reconnect within the grace period: no leave/join pair.
	a.ws.UnderlyingConn().Close()
	b := connect(t, ts, tok, "phone")
	joined, _ := b.join("doc:1", nil)
	if got := logtest.Trail(t, ts.log, "doc:1"); got != "alice/phone:join" {
		t.Fatalf("quick reconnect wrote %q", got)
	}
	if m := joined["members"].([]any); len(m) != 1 {
		t.Fatalf("members after a quick reconnect: %v", m)
	}
	// A drop with no return: one leave after the grace period.
	b.ws.UnderlyingConn().Close()
	deadline := time.Now().Add(10 * time.Second)
	for logtest.Trail(t, ts.log, "doc:1") != "alice/phone:join alice/phone:leave" {
		if time.Now().After(deadline) {
			t.Fatalf("no leave after the grace period: %q", logtest.Trail(t, ts.log, "doc:1"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An explicit leave is immediate; shutdown closes what is left.
	c := connect(t, ts, tok, "laptop")
	c.join("doc:2", nil)
	c.join("doc:3", nil)
	c.send(frame{"type": "leave", "ref": "l", "room": "doc:2"})
	c.answer("left")
	if got := logtest.Trail(t, ts.log, "doc:2"); got != "alice/laptop:join alice/laptop:leave" {
		t.Fatalf("explicit leave: %q", got)
	}
	ts.stop()
	l, err := boltlog.Open(ts.path, boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := logtest.Trail(t, l, "doc:3"); got != "alice/laptop:join alice/laptop:leave" {
		t.Fatalf("shutdown did not close the membership: %q", got)
	}
	n := 0
	l.Sessions(context.Background(), func(eventlog.Session) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d sessions still recorded as members after shutdown", n)
	}
}

// TestOrphansClosedAtStart: sessions that were members when the server died get leave events
// when it starts again.
func TestOrphansClosedAtStart(t *testing.T) {
	ts := startServer(t, serverOpts{grace: time.Hour})
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "phone")
	c.join("doc:1", nil)
	// Simulate a crash: the log closes with the member still recorded (no hub shutdown).
	path := ts.path
	ts.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.http.Shutdown(ctx)
	c.ws.Close()
	ts.log.Close()
	ts.srv.Shutdown(ctx) // connections are gone; appends fail quietly on the closed log

	ts2 := startServer(t, serverOpts{path: path})
	if got := logtest.Trail(t, ts2.log, "doc:1"); got != "alice/phone:join alice/phone:leave" {
		t.Fatalf("after restart: %q", got)
	}
}
