package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomlog/roomlog/eventlog"
)

// Subprotocols of PROTOCOL.md.
const (
	SubprotocolJSON    = "roomlog.v1.json"
	SubprotocolMsgpack = "roomlog.v1.msgpack"
)

// codec turns client frames into clientFrame values and server frames into bytes. Each codec has
// a slot in rooms.Entry's encoding cache, so an event is encoded once per codec, not per member.
type codec interface {
	subprotocol() string
	messageType() int
	slot() int
	decode(data []byte, f *clientFrame) error
	encode(v any) ([]byte, error)
	appendEvent(dst []byte, e *eventlog.Event) []byte
	// rawEvent wraps an encoded event for embedding in another frame (history).
	rawEvent(b []byte) any
}

var (
	jsonCodec    codec = jsonC{}
	msgpackCodec codec = msgpackC{}
)

func codecFor(subprotocol string) codec {
	if subprotocol == SubprotocolMsgpack {
		return msgpackCodec
	}
	return jsonCodec
}

var errBadFrame = errors.New("bad frame")

type jsonC struct{}

func (jsonC) subprotocol() string { return SubprotocolJSON }
func (jsonC) messageType() int    { return websocket.TextMessage }
func (jsonC) slot() int           { return 0 }

func (jsonC) decode(data []byte, f *clientFrame) error {
	if err := json.Unmarshal(data, f); err != nil {
		return fmt.Errorf("%w: %s", errBadFrame, describeJSONError(err))
	}
	return nil
}

// describeJSONError says what is wrong with a JSON object in the protocol's words, without the
// Go names encoding/json puts in its errors ("Go struct field clientFrame.session of type
// string").
func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return fmt.Sprintf("expected a JSON object, got %s", jsonArticle(typeErr.Value))
	case errors.As(err, &typeErr):
		return fmt.Sprintf("%s must be %s, not %s", typeErr.Field, jsonTypeName(typeErr.Type), jsonArticle(typeErr.Value))
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("not valid JSON at byte %d: %v", syntaxErr.Offset, err)
	default:
		return err.Error()
	}
}

// jsonTypeName names the JSON value a Go field type takes.
func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array"
	default:
		return "a JSON value of another type"
	}
}

// jsonArticle turns encoding/json's value description ("number", "array", "number 1.5") into a
// phrase.
func jsonArticle(value string) string {
	switch {
	case value == "array" || value == "object":
		return "an " + value
	case value == "":
		return "this value"
	default:
		return "a " + value
	}
}

func (jsonC) encode(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonC) rawEvent(b []byte) any { return json.RawMessage(b) }

func (jsonC) appendEvent(dst []byte, e *eventlog.Event) []byte { return e.AppendJSON(dst) }

type msgpackC struct{}

func (msgpackC) subprotocol() string { return SubprotocolMsgpack }
func (msgpackC) messageType() int    { return websocket.BinaryMessage }
func (msgpackC) slot() int           { return 1 }

func (msgpackC) decode(data []byte, f *clientFrame) error {
	// The decoder allocates what an array header declares before reading its elements, so a
	// few bytes claiming a billion elements would exhaust memory. A skip pass first checks that
	// every declared element is really there (each takes at least a byte), bounding what the
	// decode allocates by the frame's size.
	check := msgpack.NewDecoder(bytes.NewReader(data))
	if err := check.Skip(); err != nil {
		return fmt.Errorf("%w: not a MessagePack value: %v", errBadFrame, err)
	}
	if _, err := check.PeekCode(); err == nil {
		return fmt.Errorf("%w: data after the frame's map", errBadFrame)
	}
	// Decoding into a generic map, not a struct: msgpack's reflection decoder panics on some
	// inputs (a repeated key of another type), and fields are type-checked here anyway.
	v, err := msgpack.NewDecoder(bytes.NewReader(data)).DecodeInterface()
	if err != nil {
		return fmt.Errorf("%w: %v", errBadFrame, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: a frame is a map with string keys", errBadFrame)
	}
	var errs []string
	str := func(k string) string {
		switch x := m[k].(type) {
		case nil:
			return ""
		case string:
			return x
		default:
			errs = append(errs, k+" must be a string")
			return ""
		}
	}
	optStr := func(k string) *string {
		if _, present := m[k]; !present || m[k] == nil {
			return nil
		}
		s := str(k)
		return &s
	}
	*f = clientFrame{
		Type: str("type"), Ref: str("ref"), Token: str("token"), Session: str("session"), Client: str("client"),
		Room: str("room"), After: optStr("after"), Kind: str("kind"), Key: str("key"), Expect: optStr("expect"),
		ID: str("id"), Before: str("before"),
	}
	if l, present := m["limit"]; present && l != nil {
		n, ok := msgpackInt(l)
		if !ok {
			errs = append(errs, "limit must be an integer")
		}
		f.Limit = &n
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", errBadFrame, strings.Join(errs, "; "))
	}
	if f.Presence, err = msgpackToJSON("presence", m["presence"]); err != nil {
		return err
	}
	if f.Body, err = msgpackToJSON("body", m["body"]); err != nil {
		return err
	}
	if f.State, err = msgpackToJSON("state", m["state"]); err != nil {
		return err
	}
	return nil
}

func msgpackInt(v any) (int, bool) {
	switch n := v.(type) {
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), true
	case uint64:
		if n > math.MaxInt32 {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

func msgpackToJSON(field string, v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no JSON form: %v", errBadFrame, field, err)
	}
	return b, nil
}

func (msgpackC) encode(v any) ([]byte, error) { return msgpack.Marshal(v) }

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
		enc.Encode(jsonToMsgpackValue(e.Body))
	}
	return append(dst, buf.Bytes()...)
}

// jsonToMsgpackValue decodes stored JSON into values MessagePack encodes naturally: integers
// stay integers.
func jsonToMsgpackValue(b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return string(b) // cannot happen for a stored body; keep the text rather than lose it
	}
	return numbers(v)
}

func numbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(t), 10, 64); err == nil {
			return u
		}
		f, err := t.Float64()
		if err != nil || math.IsInf(f, 0) {
			return string(t)
		}
		return f
	case map[string]any:
		for k, x := range t {
			t[k] = numbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = numbers(x)
		}
	}
	return v
}
