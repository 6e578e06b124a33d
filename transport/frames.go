package transport

import (
	"encoding/json"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomlog/roomlog/rooms"
)

// Error codes of PROTOCOL.md's error frame, plus bye codes.
const (
	CodeBadFrame        = "bad_frame"
	CodeFrameTooLarge   = "frame_too_large"
	CodeBadRoom         = "bad_room"
	CodeForbidden       = "forbidden"
	CodeNotJoined       = "not_joined"
	CodeConflict        = "conflict"
	CodeRateLimited     = "rate_limited"
	CodeInternal        = "internal"
	CodeUnauthenticated = "unauthenticated"
	CodeTokenExpired    = "token_expired"
	CodeSlowConsumer    = "slow_consumer"
	CodeShutdown        = "shutdown"

	// HTTP API only: no such endpoint, or not for this method.
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
)

// clientFrame holds every field any client frame may carry; Type says which apply. Pointer fields
// tell an omitted field from an empty one where PROTOCOL.md gives them different meanings.
type clientFrame struct {
	Type     string          `json:"type"`
	Ref      string          `json:"ref"`
	Token    string          `json:"token"`
	Session  string          `json:"session"`
	Client   string          `json:"client"`
	Room     string          `json:"room"`
	After    *string         `json:"after"`
	Presence json.RawMessage `json:"presence"`
	Kind     string          `json:"kind"`
	Key      string          `json:"key"`
	Body     json.RawMessage `json:"body"`
	Expect   *string         `json:"expect"`
	State    json.RawMessage `json:"state"`
	ID       string          `json:"id"`
	Before   string          `json:"before"`
	Limit    *int            `json:"limit"`
}

// Server frames. Field order follows PROTOCOL.md; empty optional fields are left out.

type welcomeFrame struct {
	Type        string `json:"type" msgpack:"type"`
	Conn        string `json:"conn" msgpack:"conn"`
	User        string `json:"user" msgpack:"user"`
	Session     string `json:"session" msgpack:"session"`
	HeartbeatMS int64  `json:"heartbeat_ms" msgpack:"heartbeat_ms"`
	MaxFrame    int    `json:"max_frame" msgpack:"max_frame"`
	// KeyRetentionMS: how long idempotency keys are remembered (an extension).
	KeyRetentionMS int64 `json:"key_retention_ms" msgpack:"key_retention_ms"`
}

type joinedFrame struct {
	Type          string        `json:"type" msgpack:"type"`
	Ref           string        `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room          string        `json:"room" msgpack:"room"`
	Head          string        `json:"head" msgpack:"head"`
	Members       []memberFrame `json:"members" msgpack:"members"`
	ResumedFrom   string        `json:"resumed_from,omitempty" msgpack:"resumed_from,omitempty"`
	UnknownCursor bool          `json:"unknown_cursor,omitempty" msgpack:"unknown_cursor,omitempty"`
	// Unlogged: the log refused the join event (failed or full disk); see rooms.Joined.
	Unlogged bool `json:"unlogged,omitempty" msgpack:"unlogged,omitempty"`
}

type memberFrame struct {
	User     string  `json:"user" msgpack:"user"`
	Session  string  `json:"session" msgpack:"session"`
	Presence rawJSON `json:"presence,omitempty" msgpack:"presence,omitempty"`
}

func memberFrames(ms []rooms.Member) []memberFrame {
	out := make([]memberFrame, len(ms))
	for i, m := range ms {
		out[i] = memberFrame{User: m.User, Session: m.Session, Presence: rawJSON(m.Presence)}
	}
	return out
}

// rawJSON is a stored JSON value: copied as is into JSON frames, converted to the equivalent
// value in MessagePack frames.
type rawJSON json.RawMessage

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

func (r rawJSON) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(r) == 0 {
		return enc.EncodeNil()
	}
	return enc.Encode(jsonToMsgpackValue(r))
}

type syncedFrame struct {
	Type   string `json:"type" msgpack:"type"`
	Room   string `json:"room" msgpack:"room"`
	Cursor string `json:"cursor" msgpack:"cursor"`
}

type refFrame struct { // left, ok, pong
	Type string `json:"type" msgpack:"type"`
	Ref  string `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room string `json:"room,omitempty" msgpack:"room,omitempty"`
}

type ackFrame struct {
	Type      string `json:"type" msgpack:"type"`
	Ref       string `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room      string `json:"room" msgpack:"room"`
	ID        string `json:"id" msgpack:"id"`
	Duplicate bool   `json:"duplicate,omitempty" msgpack:"duplicate,omitempty"`
}

type errorFrame struct {
	Type    string  `json:"type" msgpack:"type"`
	Ref     string  `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Code    string  `json:"code" msgpack:"code"`
	Message string  `json:"message" msgpack:"message"`
	Room    string  `json:"room,omitempty" msgpack:"room,omitempty"`
	Head    *string `json:"head,omitempty" msgpack:"head,omitempty"`
}

type byeFrame struct {
	Type        string `json:"type" msgpack:"type"`
	Code        string `json:"code" msgpack:"code"`
	Reason      string `json:"reason,omitempty" msgpack:"reason,omitempty"`
	ReconnectMS int64  `json:"reconnect_ms,omitempty" msgpack:"reconnect_ms,omitempty"`
}

// historyFrame carries already-encoded event objects.
type historyFrame struct {
	Type   string `json:"type" msgpack:"type"`
	Ref    string `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room   string `json:"room" msgpack:"room"`
	Events []any  `json:"events" msgpack:"events"`
	// More: the room has older events than the first of Events; page on with before.
	More bool `json:"more,omitempty" msgpack:"more,omitempty"`
}
