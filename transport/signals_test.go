package transport_test

import (
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/transport"
)

// nextNonEvent reads frames up to the next one that is not an event.
func (c *client) nextNonEvent() frame {
	c.t.Helper()
	for {
		if f := c.recv(); f.str("type") != "event" {
			return f
		}
	}
}

func TestSignals(t *testing.T) {
	for _, sub := range []string{"roomlog.v1.json", "roomlog.v1.msgpack"} {
		t.Run(sub, func(t *testing.T) {
			ts := startServer(t, serverOpts{cfg: transport.Config{SignalRate: 3}})
			alice := connect(t, ts, token(t, "alice", []string{"doc:*"}), "a")
			bob, _, err := dial(t, ts, sub, nil)
			if err != nil {
				t.Fatal(err)
			}
			bob.hello(token(t, "bob", nil, func(s *auth.TokenSpec) { s.ReadRooms = []string{"doc:*"} }), "b")
			carol := connect(t, ts, token(t, "carol", []string{"doc:*"}), "c")
			alice.join("doc:1", nil)
			bob.join("doc:1", nil)
			carol.join("doc:2", nil)
			before := logtest.Trail(t, ts.log, "doc:1")

			alice.send(frame{"type": "signal", "ref": "s1", "room": "doc:1", "body": map[string]any{"cursor": 7, "name": "Alice"}})
			if ok := alice.nextNonEvent(); ok.str("type") != "ok" || ok.str("ref") != "s1" {
				t.Fatalf("signal with a ref answered %v, want ok", ok)
			}
			got := bob.nextNonEvent()
			if got.str("type") != "signal" || got.str("room") != "doc:1" || got.str("user") != "alice" || got.str("session") != "a" {
				t.Fatalf("bob got %v, want alice's signal", got)
			}
			if body, _ := got["body"].(map[string]any); body["name"] != "Alice" {
				t.Fatalf("signal body %v", got["body"])
			}
			// A read-only member may signal too (awareness is not a write); no ref, no answer.
			bob.send(frame{"type": "signal", "room": "doc:1", "body": "bob is here"})
			if got := alice.nextNonEvent(); got.str("type") != "signal" || got.str("user") != "bob" || got["body"] != "bob is here" {
				t.Fatalf("alice got %v, want bob's signal", got)
			}
			// Nobody hears its own signal, nor one of another room; nothing is logged.
			alice.send(frame{"type": "ping", "ref": "p"})
			if f := alice.nextNonEvent(); f.str("type") != "pong" {
				t.Fatalf("alice heard %v before her pong", f)
			}
			carol.send(frame{"type": "ping", "ref": "p"})
			if f := carol.nextNonEvent(); f.str("type") != "pong" {
				t.Fatalf("carol, in another room, heard %v", f)
			}
			if after := logtest.Trail(t, ts.log, "doc:1"); after != before {
				t.Fatalf("signals changed the log: %q -> %q", before, after)
			}

			// Refusals: not joined, no body, too large, too many.
			carol.send(frame{"type": "signal", "ref": "x", "room": "doc:1", "body": 1})
			carol.expectError("not_joined")
			alice.send(frame{"type": "signal", "ref": "x", "room": "doc:1"})
			alice.expectError("bad_frame")
			alice.send(frame{"type": "signal", "ref": "x", "room": "doc:1", "body": strings.Repeat("x", transport.MaxSignal)})
			alice.expectError("frame_too_large")
			refused := false
			for i := 0; i < 5 && !refused; i++ {
				alice.send(frame{"type": "signal", "ref": "r", "room": "doc:1", "body": i})
				if f := alice.nextNonEvent(); f.str("type") == "error" {
					if f.str("code") != "rate_limited" {
						t.Fatalf("signal %d: %v", i, f)
					}
					refused = true
				}
			}
			if !refused {
				t.Fatal("5 signals at once with --signal-rate 3 were all relayed")
			}
			// After a leave, no more signals reach the session.
			bob.send(frame{"type": "leave", "ref": "l", "room": "doc:1"})
			for f := bob.nextNonEvent(); f.str("type") != "left"; f = bob.nextNonEvent() {
				if f.str("type") != "signal" {
					t.Fatalf("bob waiting for left got %v", f)
				}
			}
			time.Sleep(time.Second) // the rate limit refills
			alice.send(frame{"type": "signal", "ref": "s2", "room": "doc:1", "body": "anyone?"})
			alice.answer("ok")
			bob.send(frame{"type": "ping", "ref": "p"})
			if f := bob.nextNonEvent(); f.str("type") != "pong" {
				t.Fatalf("bob, who left, heard %v", f)
			}
		})
	}
}
