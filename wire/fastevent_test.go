package wire_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/wire"
)

// The fast path must agree with the general decoder on every frame the server writes, and refuse
// (not misread) anything else.
func TestParseEventFrame(t *testing.T) {
	id := eventlog.MinIDAt(time.Date(2026, 11, 27, 10, 21, 6, 123e6, time.UTC))
	for _, e := range []wire.StoredEvent{
		{ID: id, Room: "doc:42", Kind: "message", User: "alice", Session: "s1", Key: "c-17", Body: []byte(`{"text":"hi"}`)},
		{ID: id, Room: "r", Kind: "join", User: "bob"},
		{ID: id, Room: "r", Kind: "k", User: "u", Key: "k", Body: []byte(`[1,"}",{"a":null}]`)},
		{ID: id, Room: "r", Kind: "k", User: "quote\"d", Body: []byte(`1`)},
	} {
		frame := wire.AppendEventJSON(nil, &e)
		got, ok := wire.ParseEventFrame(frame)
		if e.User == "quote\"d" {
			if ok {
				t.Fatalf("escaped string taken by the fast path: %+v", got)
			}
			continue
		}
		if !ok {
			t.Fatalf("fast path refused %s", frame)
		}
		var want struct {
			Room, ID, Kind, User, Session, Key string
			Body                               json.RawMessage
		}
		json.Unmarshal(frame, &want)
		if got.Room != want.Room || got.ID != want.ID || got.Kind != want.Kind || got.User != want.User ||
			got.Session != want.Session || got.Key != want.Key || string(got.Body) != string(want.Body) || got.TS != string(wire.AppendTimestamp(nil, int64(id.Millis()))) {
			t.Fatalf("fast path read %+v from %s", got, frame)
		}
	}
	for _, bad := range []string{``, `{}`, `{"type":"event"}`, `{"type":"event","room":"r","id":"x","kind":"k","user":"u","ts":"t"}`,
		`{"type":"ack","room":"r"}`, `{"type":"event","room":"r","id":"01M8EFB9CY30TY391ND393D4VV","kind":"k","user":"u","ts":"t","body":1`} {
		if _, ok := wire.ParseEventFrame([]byte(bad)); ok {
			t.Fatalf("fast path accepted %q", bad)
		}
	}
}

func FuzzParseEventFrame(f *testing.F) {
	f.Add([]byte(`{"type":"event","room":"r","id":"01M8EFB9CY30TY391ND393D4VV","kind":"k","user":"u","ts":"t","body":{"a":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := wire.ParseEventFrame(b)
		if ok && (e.Room == "" && len(b) > 0 && b[0] != '{') {
			t.Fatalf("accepted %q", b)
		}
	})
}
