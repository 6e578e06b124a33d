package transport

import (
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

func (jsonC) slot() int             { return 0 }
func (jsonC) rawEvent(b []byte) any { return json.RawMessage(b) }
func (jsonC) appendEvent(dst []byte, e *eventlog.Event) []byte {
	st := stored(e)
	return wire.AppendEventJSON(dst, &st)
}

type msgpackC struct{ wire.Codec }

func (msgpackC) slot() int             { return 1 }
func (msgpackC) rawEvent(b []byte) any { return msgpack.RawMessage(b) }

func (msgpackC) appendEvent(dst []byte, e *eventlog.Event) []byte {
	st := stored(e)
	return wire.AppendEventMsgpack(dst, &st)
}

// stored is the log's event as wire's encoders read it.
func stored(e *eventlog.Event) wire.StoredEvent {
	return wire.StoredEvent{ID: e.ID, Room: e.Room, Kind: e.Kind, User: e.User, Session: e.Session, Key: e.Key, Body: e.Body}
}
