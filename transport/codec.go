package transport

import (
	"bytes"
	"encoding/json"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/wire"
)

// codec is a wire.Codec plus what the server adds: its slot in rooms.Entry's encoding cache, so
// an event is encoded once per codec, not per member, and the encoding of stored events (from
// eventlog.Event, in wire.Event's field order, without a copy through wire's types).
type codec interface {
	wire.Codec
	slot() int
	appendEvent(dst []byte, e *eventlog.Event) []byte
	// rawEvent wraps an encoded event for embedding in another frame (history).
	rawEvent(b []byte) any
}

var (
	jsonCodec    codec = jsonC{wire.JSON}
	msgpackCodec codec = msgpackC{wire.MessagePack}
)

func codecFor(subprotocol string) codec {
	if subprotocol == wire.SubprotocolMsgpack {
		return msgpackCodec
	}
	return jsonCodec
}

type jsonC struct{ wire.Codec }

func (jsonC) slot() int                                        { return 0 }
func (jsonC) rawEvent(b []byte) any                            { return json.RawMessage(b) }
func (jsonC) appendEvent(dst []byte, e *eventlog.Event) []byte { return e.AppendJSON(dst) }

type msgpackC struct{ wire.Codec }

func (msgpackC) slot() int             { return 1 }
func (msgpackC) rawEvent(b []byte) any { return msgpack.RawMessage(b) }

func (msgpackC) appendEvent(dst []byte, e *eventlog.Event) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	n := 6 // type, room, id, kind, user, ts
	if e.Session != "" {
		n++
	}
	if e.Key != "" {
		n++
	}
	if len(e.Body) > 0 {
		n++
	}
	enc.EncodeMapLen(n)
	kv := func(k, v string) { enc.EncodeString(k); enc.EncodeString(v) }
	kv("type", "event")
	kv("room", e.Room)
	kv("id", e.ID.String())
	kv("kind", e.Kind)
	kv("user", e.User)
	if e.Session != "" {
		kv("session", e.Session)
	}
	if e.Key != "" {
		kv("key", e.Key)
	}
	kv("ts", string(eventlog.AppendTimestamp(nil, e.ID)))
	if len(e.Body) > 0 {
		enc.EncodeString("body")
		enc.Encode(wire.JSONToMsgpack(e.Body))
	}
	return append(dst, buf.Bytes()...)
}
