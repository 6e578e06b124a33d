package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// WebSocket message types of the two codecs (RFC 6455 opcodes; gorilla's message types).
const (
	TextMessage   = 1
	BinaryMessage = 2
)

// Codec encodes and decodes frames of one subprotocol.
type Codec interface {
	Subprotocol() string
	// MessageType is the WebSocket message type its frames travel in.
	MessageType() int
	// Encode encodes a frame (any of this package's frame types, or a map).
	Encode(v any) ([]byte, error)
	// DecodeClient decodes a client frame, as the server reads it; the error wraps ErrBadFrame
	// and says what is wrong in the protocol's words.
	DecodeClient(data []byte, f *ClientFrame) error
	// DecodeServer decodes a server frame, as a client reads it.
	DecodeServer(data []byte, f *ServerFrame) error
}

// The codecs.
var (
	JSON        Codec = jsonCodec{}
	MessagePack Codec = msgpackCodec{}
)

// CodecFor is the codec of a negotiated subprotocol (JSON without one).
func CodecFor(subprotocol string) Codec {
	if subprotocol == SubprotocolMsgpack {
		return MessagePack
	}
	return JSON
}

// ErrBadFrame is wrapped by the errors of decoding a malformed client frame.
var ErrBadFrame = errors.New("bad frame")

type jsonCodec struct{}

func (jsonCodec) Subprotocol() string { return SubprotocolJSON }
func (jsonCodec) MessageType() int    { return TextMessage }

func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) DecodeClient(data []byte, f *ClientFrame) error {
	*f = ClientFrame{}
	if err := json.Unmarshal(data, f); err != nil {
		return fmt.Errorf("%w: %s", ErrBadFrame, DescribeJSONError(err))
	}
	return nil
}

func (jsonCodec) DecodeServer(data []byte, f *ServerFrame) error {
	*f = ServerFrame{}
	if err := json.Unmarshal(data, f); err != nil {
		return fmt.Errorf("wire: undecodable server frame: %s", DescribeJSONError(err))
	}
	return nil
}

// DescribeJSONError says what is wrong with a JSON object in the protocol's words, without the
// Go names encoding/json puts in its errors ("Go struct field ClientFrame.session of type
// string").
func DescribeJSONError(err error) string {
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

type msgpackCodec struct{}

func (msgpackCodec) Subprotocol() string { return SubprotocolMsgpack }
func (msgpackCodec) MessageType() int    { return BinaryMessage }

func (msgpackCodec) Encode(v any) ([]byte, error) { return msgpack.Marshal(v) }

// decodeMap decodes a MessagePack frame into a map with string keys.
func decodeMap(data []byte) (map[string]any, error) {
	// The decoder allocates what an array header declares before reading its elements, so a
	// few bytes claiming a billion elements would exhaust memory. A skip pass first checks that
	// every declared element is really there (each takes at least a byte), bounding what the
	// decode allocates by the frame's size.
	check := msgpack.NewDecoder(bytes.NewReader(data))
	if err := check.Skip(); err != nil {
		return nil, fmt.Errorf("%w: not a MessagePack value: %v", ErrBadFrame, err)
	}
	if _, err := check.PeekCode(); err == nil {
		return nil, fmt.Errorf("%w: data after the frame's map", ErrBadFrame)
	}
	// Decoding into a generic map, not a struct: msgpack's reflection decoder panics on some
	// inputs (a repeated key of another type), and fields are type-checked here anyway.
	v, err := msgpack.NewDecoder(bytes.NewReader(data)).DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a frame is a map with string keys", ErrBadFrame)
	}
	return m, nil
}

func (msgpackCodec) DecodeClient(data []byte, f *ClientFrame) error {
	m, err := decodeMap(data)
	if err != nil {
		return err
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
	*f = ClientFrame{
		Type: str("type"), Ref: str("ref"), Token: str("token"), Session: str("session"), Client: str("client"),
		Room: str("room"), After: optStr("after"), Kind: str("kind"), Key: str("key"), Expect: optStr("expect"),
		ID: str("id"), Before: str("before"), From: str("from"),
	}
	switch x := m["snapshot"].(type) {
	case nil:
	case bool:
		f.Snapshot = x
	default:
		errs = append(errs, "snapshot must be a boolean")
	}
	if l, present := m["limit"]; present && l != nil {
		n, ok := msgpackInt(l)
		if !ok {
			errs = append(errs, "limit must be an integer")
		}
		f.Limit = &n
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrBadFrame, strings.Join(errs, "; "))
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

// DecodeServer reads the map as JSON would: the frame's values, bodies and presence included,
// become JSON, then fill f. Event frames, the many, are filled directly: only their body goes
// through JSON.
func (msgpackCodec) DecodeServer(data []byte, f *ServerFrame) error {
	m, err := decodeMap(data)
	if err != nil {
		return fmt.Errorf("wire: undecodable server frame: %v", err)
	}
	if m["type"] == TypeEvent {
		return eventFromMap(m, f)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("wire: server frame has no JSON form: %v", err)
	}
	return JSON.DecodeServer(b, f)
}

// eventFromMap fills f from a decoded event frame.
func eventFromMap(m map[string]any, f *ServerFrame) error {
	str := func(k string) string { s, _ := m[k].(string); return s }
	*f = ServerFrame{Type: TypeEvent, Room: str("room"), ID: str("id"), Kind: str("kind"), User: str("user"),
		Session: str("session"), Key: str("key"), TS: str("ts")}
	if body, ok := m["body"]; ok && body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("wire: event body has no JSON form: %v", err)
		}
		f.Body = b
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

func msgpackToJSON(field string, v any) (RawJSON, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no JSON form: %v", ErrBadFrame, field, err)
	}
	return b, nil
}

// numbers turns the json.Numbers of a decoded JSON value into MessagePack's numbers.
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
