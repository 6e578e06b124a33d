package wire

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// StoredEvent is an event as the log hands it to the server, for the encoders below: the id as
// its 16 bytes (a ULID), the body as compact JSON.
type StoredEvent struct {
	ID                             [16]byte
	Room, Kind, User, Session, Key string
	Body                           []byte
}

// AppendEventJSON appends the event frame in JSON, in Event's field order, with session, key and
// body left out when empty. It is built with plain byte appends (the body is copied as is): it
// runs for every event sent or printed.
func AppendEventJSON(dst []byte, e *StoredEvent) []byte {
	dst = append(dst, `{"type":"event","room":`...)
	dst = appendJSONString(dst, e.Room)
	dst = append(dst, `,"id":"`...)
	var id [ulid.EncodedSize]byte
	ulid.ULID(e.ID).MarshalTextTo(id[:])
	dst = append(dst, id[:]...)
	dst = append(dst, `","kind":`...)
	dst = appendJSONString(dst, e.Kind)
	dst = append(dst, `,"user":`...)
	dst = appendJSONString(dst, e.User)
	if e.Session != "" {
		dst = append(dst, `,"session":`...)
		dst = appendJSONString(dst, e.Session)
	}
	if e.Key != "" {
		dst = append(dst, `,"key":`...)
		dst = appendJSONString(dst, e.Key)
	}
	dst = append(dst, `,"ts":"`...)
	dst = AppendTimestamp(dst, int64(ulid.ULID(e.ID).Time()))
	dst = append(dst, '"')
	if len(e.Body) > 0 {
		dst = append(dst, `,"body":`...)
		dst = append(dst, e.Body...)
	}
	return append(dst, '}')
}

// AppendEventMsgpack appends the event frame in MessagePack: the same map as AppendEventJSON's
// object, the body as MessagePack values (JSONToMsgpack).
func AppendEventMsgpack(dst []byte, e *StoredEvent) []byte {
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
	kv("type", TypeEvent)
	kv("room", e.Room)
	kv("id", ulid.ULID(e.ID).String())
	kv("kind", e.Kind)
	kv("user", e.User)
	if e.Session != "" {
		kv("session", e.Session)
	}
	if e.Key != "" {
		kv("key", e.Key)
	}
	kv("ts", string(AppendTimestamp(nil, int64(ulid.ULID(e.ID).Time()))))
	if len(e.Body) > 0 {
		enc.EncodeString("body")
		enc.Encode(JSONToMsgpack(e.Body))
	}
	return append(dst, buf.Bytes()...)
}

// AppendTimestamp appends a time in Unix milliseconds as RFC 3339 with milliseconds in UTC
// (2026-11-27T10:21:06.123Z): an event's ts.
func AppendTimestamp(dst []byte, unixMilli int64) []byte {
	t := time.UnixMilli(unixMilli).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	}
	d2 := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	dst = d2(dst, year/100)
	dst = d2(dst, year%100)
	dst = d2(append(dst, '-'), int(month))
	dst = d2(append(dst, '-'), day)
	dst = d2(append(dst, 'T'), hour)
	dst = d2(append(dst, ':'), minute)
	dst = d2(append(dst, ':'), sec)
	m := int(unixMilli % 1000)
	return append(dst, '.', byte('0'+m/100), byte('0'+m/10%10), byte('0'+m%10), 'Z')
}

// appendJSONString appends s as a JSON string. Identifiers rarely need escaping, so the common
// case is one copy.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
