package transport

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/wire"
)

// TestWireRoundTrip pins the server's encoders and wire's decoders (the Go client's) to each
// other, in both codecs: every server frame, and events as the log encodes them, read back field
// for field; and every client frame the client encodes reads back as the server decodes it.
func TestWireRoundTrip(t *testing.T) {
	id := eventlog.MinIDAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	head := id.String()
	ev := eventlog.Event{ID: id, Room: "doc:1", Kind: "edit", User: "ann", Session: "s", Key: "k1",
		Body: json.RawMessage(`{"n":9007199254740993,"u":18446744073709551615,"f":1.5,"big":1e999,"s":"x","a":[1,null,true]}`)}
	for _, c := range []codec{jsonCodec, msgpackCodec} {
		t.Run(c.Subprotocol(), func(t *testing.T) {
			decode := func(b []byte) *wire.ServerFrame {
				t.Helper()
				var f wire.ServerFrame
				if err := c.DecodeServer(b, &f); err != nil {
					t.Fatalf("%v: %q", err, b)
				}
				return &f
			}
			encode := func(v any) []byte {
				t.Helper()
				b, err := c.Encode(v)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			f := decode(encode(&wire.Welcome{Type: wire.TypeWelcome, Conn: "c", User: "ann", Session: "s", HeartbeatMS: 25000, MaxFrame: 65536, KeyRetentionMS: 86400000}))
			if f.Type != wire.TypeWelcome || f.Conn != "c" || f.User != "ann" || f.HeartbeatMS != 25000 || f.MaxFrame != 65536 || f.KeyRetentionMS != 86400000 {
				t.Errorf("welcome: %+v", f)
			}
			f = decode(encode(&wire.Joined{Type: wire.TypeJoined, Ref: "j", Room: "doc:1", Head: head, ResumedFrom: head, UnknownCursor: true, Unlogged: true,
				Members: []wire.Member{{User: "ann", Session: "s", Presence: wire.RawJSON(`{"name":"Ann","n":3}`)}}}))
			if f.Ref != "j" || f.Head != head || f.ResumedFrom != head || !f.UnknownCursor || !f.Unlogged || len(f.Members) != 1 ||
				!sameJSON(t, f.Members[0].Presence, `{"name":"Ann","n":3}`) {
				t.Errorf("joined: %+v", f)
			}
			f = decode(encode(&wire.Ack{Type: wire.TypeAck, Ref: "p", Room: "doc:1", ID: head, Duplicate: true}))
			if f.Ref != "p" || f.ID != head || !f.Duplicate {
				t.Errorf("ack: %+v", f)
			}
			f = decode(encode(&wire.Error{Type: wire.TypeError, Ref: "p", Code: wire.CodeConflict, Message: "m", Room: "doc:1", Head: &head}))
			if f.Code != wire.CodeConflict || f.Message != "m" || f.Head != head {
				t.Errorf("error: %+v", f)
			}
			f = decode(encode(&wire.Bye{Type: wire.TypeBye, Code: wire.CodeShutdown, Reason: "r", ReconnectMS: 1000}))
			if f.Code != wire.CodeShutdown || f.Reason != "r" || f.ReconnectMS != 1000 {
				t.Errorf("bye: %+v", f)
			}
			f = decode(encode(&wire.Synced{Type: wire.TypeSynced, Room: "doc:1", Cursor: head}))
			if f.Cursor != head {
				t.Errorf("synced: %+v", f)
			}
			// Events, as the log encodes them, alone and in a history page.
			got := decode(c.appendEvent(nil, &ev)).Event()
			checkEvent(t, got, ev)
			f = decode(encode(&wire.History{Type: wire.TypeHistory, Ref: "h", Room: "doc:1", Events: []any{c.rawEvent(c.appendEvent(nil, &ev))}, More: true}))
			if len(f.Events) != 1 || !f.More {
				t.Fatalf("history: %+v", f)
			}
			checkEvent(t, f.Events[0], ev)

			// Client frames: what wire encodes, the server decodes unchanged.
			after, expect, limit := "", head, 5
			for _, cf := range []wire.ClientFrame{
				{Type: wire.TypeHello, Token: "t", Session: "s", Client: "go/1"},
				{Type: wire.TypeJoin, Ref: "j", Room: "doc:1", After: &after, Presence: wire.RawJSON(`{"name":"Ann"}`)},
				{Type: wire.TypePublish, Ref: "p", Room: "doc:1", Kind: "edit", Key: "k", Body: wire.RawJSON(`{"n":9007199254740993,"a":[1,2]}`), Expect: &expect},
				{Type: wire.TypeHistory, Ref: "h", Room: "doc:1", Before: head, Limit: &limit},
				{Type: wire.TypeAck, Room: "doc:1", ID: head},
				{Type: wire.TypePresence, Ref: "x", Room: "doc:1", State: wire.RawJSON(`{"typing":true}`)},
			} {
				var back wire.ClientFrame
				if err := c.DecodeClient(encode(cf), &back); err != nil {
					t.Fatalf("%s: %v", cf.Type, err)
				}
				for _, raw := range []*wire.RawJSON{&cf.Presence, &cf.Body, &cf.State, &back.Presence, &back.Body, &back.State} {
					*raw = canonical(t, *raw)
				}
				if !reflect.DeepEqual(back, cf) {
					t.Errorf("%s frame read back as %+v, sent %+v", cf.Type, back, cf)
				}
			}
		})
	}
}

func checkEvent(t *testing.T, got wire.Event, want eventlog.Event) {
	t.Helper()
	if got.Room != want.Room || got.ID != want.ID.String() || got.Kind != want.Kind || got.User != want.User ||
		got.Session != want.Session || got.Key != want.Key || got.TS != string(wire.AppendTimestamp(nil, int64(want.ID.Millis()))) {
		t.Errorf("event read back as %+v", got)
	}
	// Integers survive exactly, whichever the codec; a number no float holds stays its text.
	var body map[string]any
	d := json.NewDecoder(jsonReader(got.Body))
	d.UseNumber()
	if err := d.Decode(&body); err != nil {
		t.Fatalf("body %s: %v", got.Body, err)
	}
	if body["n"] != json.Number("9007199254740993") || body["u"] != json.Number("18446744073709551615") || body["f"] != json.Number("1.5") {
		t.Errorf("numbers of the body read back as %s", got.Body)
	}
	if big := body["big"]; big != json.Number("1e999") && big != "1e999" {
		t.Errorf("1e999 read back as %v", big)
	}
}

func sameJSON(t *testing.T, got wire.RawJSON, want string) bool {
	return string(canonical(t, got)) == string(canonical(t, wire.RawJSON(want)))
}

// canonical re-encodes a JSON value with sorted keys and numbers as written.
func canonical(t *testing.T, r wire.RawJSON) wire.RawJSON {
	t.Helper()
	if len(r) == 0 {
		return nil
	}
	d := json.NewDecoder(jsonReader(r))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	b, _ := json.Marshal(v)
	return b
}

func jsonReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
