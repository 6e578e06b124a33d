package wire_test

import (
	"encoding/json"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomlog/roomlog/wire"
)

// The frame decoders take bytes from anyone: they must never panic, and a frame they accept must
// carry bodies that are JSON (what the log stores).
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","token":"x","session":"s"}`,
		`{"type":"join","ref":"1","room":"doc:42","after":"","presence":{"name":"A"}}`,
		`{"type":"publish","ref":"4","room":"doc:42","kind":"message","key":"c-17","body":{"text":"hi"},"expect":"01JD6Z3Q9W4T8M5V2K7N0X1R3B"}`,
		`{"type":"history","ref":"5","room":"doc:42","before":"01JD6Z3Q9W4T8M5V2K7N0X1R3B","limit":100}`,
		`{"type":"publish","room":5}`, `[1,2]`, `null`, `{"type":"ack","room":"r","id":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr wire.ClientFrame
		if err := wire.JSON.DecodeClient(data, &fr); err != nil {
			return
		}
		checkDecoded(t, &fr)
	})
}

func FuzzDecodeMsgpack(f *testing.F) {
	for _, m := range []map[string]any{
		{"type": "hello", "token": "x"},
		{"type": "publish", "ref": "4", "room": "doc:42", "body": map[string]any{"text": "hi", "n": 3}},
		{"type": "publish", "room": "r", "body": []any{1, "a", nil, 2.5}},
		{"type": "join", "room": "r", "after": "", "presence": map[string]any{"x": true}},
	} {
		b, _ := msgpack.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x81, 0xa4, 't', 'y', 'p', 'e'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr wire.ClientFrame
		if err := wire.MessagePack.DecodeClient(data, &fr); err != nil {
			return
		}
		checkDecoded(t, &fr)
	})
}

func checkDecoded(t *testing.T, fr *wire.ClientFrame) {
	for name, raw := range map[string]wire.RawJSON{"body": fr.Body, "presence": fr.Presence, "state": fr.State} {
		if len(raw) > 0 && !json.Valid(raw) {
			t.Fatalf("decoded %s is not JSON: %q", name, raw)
		}
	}
}
