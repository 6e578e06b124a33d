package wire_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/wire"
)

func TestAppendTSMatchesTimeFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		ms := rng.Int64N(253402300799999) // up to 9999-12-31
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if got := string(wire.AppendTimestamp(nil, ms)); got != want {
			t.Fatalf("appendTS(%d) = %s, want %s", ms, got, want)
		}
	}
}

func TestAppendJSONIsValidAndComplete(t *testing.T) {
	id := eventlog.MinIDAt(time.Date(2026, 11, 27, 10, 21, 6, 123e6, time.UTC))
	for _, e := range []wire.StoredEvent{
		{ID: id, Room: "doc:42", Kind: "message", User: "alice", Session: "s1", Key: "c-17", Body: []byte(`{"text":"hi"}`)},
		{ID: id, Room: "r", Kind: "join", User: "quote\"back\\slash\ncontrol é"},
		{ID: id, Room: "r", Kind: "k", User: "u"},
	} {
		b := wire.AppendEventJSON(nil, &e)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if m["type"] != "event" || m["room"] != e.Room || m["id"] != id.String() || m["user"] != e.User ||
			m["kind"] != e.Kind || m["ts"] != "2026-11-27T10:21:06.123Z" {
			t.Fatalf("%s decodes to %v", b, m)
		}
		if _, has := m["session"]; has != (e.Session != "") {
			t.Fatalf("%s: session presence", b)
		}
	}
}
