// Package wire is roomlog's wire protocol (docs/protocol.md) as Go types, shared by the server and
// the Go client so that neither writes it by hand: the subprotocol names, frame types and codes,
// every frame's fields, the two codecs (JSON text frames, MessagePack binary frames, with one
// conversion of JSON numbers between them), the encoders of event frames (AppendEventJSON,
// AppendEventMsgpack: the server's hot path) and their fast decoder (ParseEventFrame: the
// client's).
//
// It imports nothing of the server: a client that uses it pulls in no storage.
package wire

import (
	"bytes"
	"encoding/json"

	"github.com/vmihailenco/msgpack/v5"
)

// Subprotocols (Sec-WebSocket-Protocol). Without one, a connection speaks JSON.
const (
	SubprotocolJSON    = "roomlog.v1.json"
	SubprotocolMsgpack = "roomlog.v1.msgpack"
)

// Frame types: the "type" of every frame.
const (
	TypeHello    = "hello"
	TypeWelcome  = "welcome"
	TypeRefresh  = "refresh"
	TypeJoin     = "join"
	TypeJoined   = "joined"
	TypeSynced   = "synced"
	TypeLeave    = "leave"
	TypeLeft     = "left"
	TypePresence = "presence"
	TypeOK       = "ok"
	TypePublish  = "publish"
	TypeAck      = "ack"
	TypeEvent    = "event"
	TypeHistory  = "history"
	TypePing     = "ping"
	TypePong     = "pong"
	TypeError    = "error"
	TypeBye      = "bye"
	TypeSignal   = "signal"
	// TypeRemoved: the server took the session out of a room (an administrator removed the
	// user); the client must not rejoin it by itself. An extension.
	TypeRemoved = "removed"
)

// Codes of error frames, bye frames and HTTP API errors.
const (
	CodeBadFrame      = "bad_frame"
	CodeFrameTooLarge = "frame_too_large"
	CodeBadRoom       = "bad_room"
	CodeForbidden     = "forbidden"
	CodeNotJoined     = "not_joined"
	CodeConflict      = "conflict"
	CodeRateLimited   = "rate_limited"
	CodeInternal      = "internal"
	// CodeUnavailable: the action could not be decided now (the application's hook did not
	// answer, or not usefully); nothing was done, and trying again later may succeed.
	CodeUnavailable     = "unavailable"
	CodeUnauthenticated = "unauthenticated"
	CodeTokenExpired    = "token_expired"
	// CodeTokenRevoked: the token was revoked (bye at hello, error at refresh, bye to a live
	// connection); ask the application for a new one.
	CodeTokenRevoked = "token_revoked"
	CodeSlowConsumer = "slow_consumer"
	CodeShutdown     = "shutdown"
	// CodeLimitExceeded: a bound of the server's was reached (rooms per connection); not
	// retryable as it is.
	CodeLimitExceeded = "limit_exceeded"
	// CodeTooManyConnections (bye): the user holds the most connections a node allows.
	CodeTooManyConnections = "too_many_connections"
	// CodeDisconnected (bye): an administrator disconnected the user; the client may reconnect.
	CodeDisconnected = "disconnected"

	// HTTP API only: no such endpoint, or not for this method.
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
)

// Temporary reports whether a request refused with code may succeed if sent again unchanged.
func Temporary(code string) bool {
	return code == CodeRateLimited || code == CodeInternal || code == CodeUnavailable
}

// ClientFrame holds every field any client frame may carry; Type says which apply. Pointer fields
// tell an omitted field from an empty one where the protocol gives them different meanings
// (after, expect, limit).
type ClientFrame struct {
	Type     string  `json:"type" msgpack:"type"`
	Ref      string  `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Token    string  `json:"token,omitempty" msgpack:"token,omitempty"`
	Session  string  `json:"session,omitempty" msgpack:"session,omitempty"`
	Client   string  `json:"client,omitempty" msgpack:"client,omitempty"`
	Room     string  `json:"room,omitempty" msgpack:"room,omitempty"`
	After    *string `json:"after,omitempty" msgpack:"after,omitempty"`
	Presence RawJSON `json:"presence,omitempty" msgpack:"presence,omitempty"`
	Kind     string  `json:"kind,omitempty" msgpack:"kind,omitempty"`
	Key      string  `json:"key,omitempty" msgpack:"key,omitempty"`
	Body     RawJSON `json:"body,omitempty" msgpack:"body,omitempty"`
	Expect   *string `json:"expect,omitempty" msgpack:"expect,omitempty"`
	State    RawJSON `json:"state,omitempty" msgpack:"state,omitempty"`
	ID       string  `json:"id,omitempty" msgpack:"id,omitempty"`
	Before   string  `json:"before,omitempty" msgpack:"before,omitempty"`
	Limit    *int    `json:"limit,omitempty" msgpack:"limit,omitempty"`
	// From is "snapshot" for a join that starts at the room's latest snapshot (an extension).
	From string `json:"from,omitempty" msgpack:"from,omitempty"`
	// Snapshot asks history for the room's latest snapshot instead of a page (an extension).
	Snapshot bool `json:"snapshot,omitempty" msgpack:"snapshot,omitempty"`
}

// FromSnapshot is the value of a join's "from" that starts at the latest snapshot.
const FromSnapshot = "snapshot"

// Server frames, as the server writes them. Field order follows the protocol document; empty
// optional fields are left out.

// Welcome answers hello.
type Welcome struct {
	Type        string `json:"type" msgpack:"type"`
	Conn        string `json:"conn" msgpack:"conn"`
	User        string `json:"user" msgpack:"user"`
	Session     string `json:"session" msgpack:"session"`
	HeartbeatMS int64  `json:"heartbeat_ms" msgpack:"heartbeat_ms"`
	MaxFrame    int    `json:"max_frame" msgpack:"max_frame"`
	// KeyRetentionMS: how long idempotency keys are remembered (an extension).
	KeyRetentionMS int64 `json:"key_retention_ms" msgpack:"key_retention_ms"`
}

// Joined answers join.
type Joined struct {
	Type          string   `json:"type" msgpack:"type"`
	Ref           string   `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room          string   `json:"room" msgpack:"room"`
	Head          string   `json:"head" msgpack:"head"`
	Members       []Member `json:"members" msgpack:"members"`
	ResumedFrom   string   `json:"resumed_from,omitempty" msgpack:"resumed_from,omitempty"`
	UnknownCursor bool     `json:"unknown_cursor,omitempty" msgpack:"unknown_cursor,omitempty"`
	// Unlogged: the log refused the join event (a failed or full disk); an extension.
	Unlogged bool `json:"unlogged,omitempty" msgpack:"unlogged,omitempty"`
	// CursorTooOld: a compaction removed what followed the cursor; the replay starts at the
	// latest snapshot, Snapshot.
	CursorTooOld bool `json:"cursor_too_old,omitempty" msgpack:"cursor_too_old,omitempty"`
	// Snapshot is the id of the snapshot the replay starts with, if any (an extension).
	Snapshot string `json:"snapshot,omitempty" msgpack:"snapshot,omitempty"`
	// MembersTruncated: Members lists only some of the room's MemberCount members (the
	// server's bound on the frame).
	MembersTruncated bool `json:"members_truncated,omitempty" msgpack:"members_truncated,omitempty"`
	MemberCount      int  `json:"member_count,omitempty" msgpack:"member_count,omitempty"`
}

// Member is a member session of a room, with its latest presence.
type Member struct {
	User     string  `json:"user" msgpack:"user"`
	Session  string  `json:"session" msgpack:"session"`
	Presence RawJSON `json:"presence,omitempty" msgpack:"presence,omitempty"`
}

// Synced says the replay is over: everything after it is live.
type Synced struct {
	Type   string `json:"type" msgpack:"type"`
	Room   string `json:"room" msgpack:"room"`
	Cursor string `json:"cursor" msgpack:"cursor"`
}

// Reply is a bare answer: left, ok, pong.
type Reply struct {
	Type string `json:"type" msgpack:"type"`
	Ref  string `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room string `json:"room,omitempty" msgpack:"room,omitempty"`
}

// Ack answers a publish once it is durable.
type Ack struct {
	Type      string `json:"type" msgpack:"type"`
	Ref       string `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room      string `json:"room" msgpack:"room"`
	ID        string `json:"id" msgpack:"id"`
	Duplicate bool   `json:"duplicate,omitempty" msgpack:"duplicate,omitempty"`
}

// Error refuses a frame; the connection stays open.
type Error struct {
	Type    string  `json:"type" msgpack:"type"`
	Ref     string  `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Code    string  `json:"code" msgpack:"code"`
	Message string  `json:"message" msgpack:"message"`
	Room    string  `json:"room,omitempty" msgpack:"room,omitempty"`
	Head    *string `json:"head,omitempty" msgpack:"head,omitempty"`
}

// Bye is the server's last frame before it closes the connection.
type Bye struct {
	Type        string `json:"type" msgpack:"type"`
	Code        string `json:"code" msgpack:"code"`
	Reason      string `json:"reason,omitempty" msgpack:"reason,omitempty"`
	ReconnectMS int64  `json:"reconnect_ms,omitempty" msgpack:"reconnect_ms,omitempty"`
}

// Removed tells a session it is no longer a member of Room, and why (an extension).
type Removed struct {
	Type   string `json:"type" msgpack:"type"`
	Room   string `json:"room" msgpack:"room"`
	Reason string `json:"reason,omitempty" msgpack:"reason,omitempty"`
}

// Signal is an ephemeral message from a member to the room's other members (an extension of
// protocol v1 for awareness): not logged, no id, best effort.
type Signal struct {
	Type    string  `json:"type" msgpack:"type"`
	Room    string  `json:"room" msgpack:"room"`
	User    string  `json:"user" msgpack:"user"`
	Session string  `json:"session" msgpack:"session"`
	Body    RawJSON `json:"body" msgpack:"body"`
}

// History answers history with a page of events, each already encoded by the server's codec.
type History struct {
	Type   string `json:"type" msgpack:"type"`
	Ref    string `json:"ref,omitempty" msgpack:"ref,omitempty"`
	Room   string `json:"room" msgpack:"room"`
	Events []any  `json:"events" msgpack:"events"`
	// More: the room has older events than the first of Events; page on with before.
	More bool `json:"more,omitempty" msgpack:"more,omitempty"`
}

// Event is an event frame as a client reads it. The server writes its fields in this order:
//
//	{"type":"event","room":R,"id":I,"kind":K,"user":U[,"session":S][,"key":K],"ts":T[,"body":B]}
type Event struct {
	Room    string          `json:"room"`
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	User    string          `json:"user"`
	Session string          `json:"session,omitempty"`
	Key     string          `json:"key,omitempty"`
	TS      string          `json:"ts"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// ServerFrame holds every field any server frame may carry, for a client to decode into; Type
// says which apply. Bodies and presence are JSON whichever the codec.
type ServerFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref"`
	Room string `json:"room"`

	// welcome
	Conn           string `json:"conn"`
	User           string `json:"user"`
	Session        string `json:"session"`
	HeartbeatMS    int64  `json:"heartbeat_ms"`
	MaxFrame       int    `json:"max_frame"`
	KeyRetentionMS int64  `json:"key_retention_ms"`

	// joined
	Head          string   `json:"head"`
	Members       []Member `json:"members"`
	ResumedFrom   string   `json:"resumed_from"`
	UnknownCursor bool     `json:"unknown_cursor"`
	Unlogged      bool     `json:"unlogged"`
	CursorTooOld  bool     `json:"cursor_too_old"`
	Snapshot      string   `json:"snapshot"`
	// MembersTruncated: Members lists only some of the room's MemberCount members.
	MembersTruncated bool `json:"members_truncated"`
	MemberCount      int  `json:"member_count"`

	// synced
	Cursor string `json:"cursor"`

	// ack and event
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`

	// event and signal
	Kind string          `json:"kind"`
	Key  string          `json:"key"`
	TS   string          `json:"ts"`
	Body json.RawMessage `json:"body"`

	// error and bye
	Code        string `json:"code"`
	Message     string `json:"message"`
	Reason      string `json:"reason"`
	ReconnectMS int64  `json:"reconnect_ms"`

	// history
	Events []Event `json:"events"`
	More   bool    `json:"more"`
}

// Event returns the event an event frame carries.
func (f *ServerFrame) Event() Event {
	return Event{Room: f.Room, ID: f.ID, Kind: f.Kind, User: f.User, Session: f.Session, Key: f.Key, TS: f.TS, Body: f.Body}
}

// RawJSON is a JSON value carried as is: copied into JSON frames, turned into the equivalent
// value in MessagePack frames (JSON numbers as integers where they are integers).
type RawJSON json.RawMessage

// MarshalJSON writes the value (null when empty).
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of the value (null included, as json.RawMessage does).
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// EncodeMsgpack writes the value as MessagePack.
func (r RawJSON) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(r) == 0 {
		return enc.EncodeNil()
	}
	return enc.Encode(JSONToMsgpack(r))
}

// JSONToMsgpack decodes JSON into the values MessagePack encodes naturally: integers stay
// integers (int64, or uint64 past its range), other numbers become float64, and a number no
// float64 holds (1e999) stays its text. It is the one conversion of JSON numbers to MessagePack,
// for the server's frames and the client's alike.
func JSONToMsgpack(b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return string(b) // not JSON: keep the text rather than lose it
	}
	return numbers(v)
}
