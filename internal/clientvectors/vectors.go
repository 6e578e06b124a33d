// Package clientvectors plays the client test vectors in testdata/client-vectors: scripted
// conversations that pin down what a client does on each server frame and each failure (the
// "Client behaviour" section of docs/protocol.md). A vector says what the application does, what
// the server sends and expects to receive, and what the application must end up seeing. Player
// plays the server's side over a real WebSocket; the Go client's tests run it in process, the
// JavaScript client's tests through the command in ./play. Each side checks the application's
// view with its own client and the same Expect.
package clientvectors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Vector is one scripted conversation.
type Vector struct {
	Name  string `json:"-"` // the file's name without .json
	About string `json:"about"`
	// App is what the application does, in order, once the client is connected: a join waits
	// for its answer before the next step; a publish does not wait for its ack.
	App []AppStep `json:"app"`
	// Script is the server's side, in order, across the client's connections.
	Script []Step `json:"script"`
	// Expect is what the application must see once the script has run.
	Expect Expect `json:"expect"`
}

// AppStep is one action of the application: exactly one field is set.
type AppStep struct {
	Join    *AppJoin    `json:"join,omitempty"`
	Publish *AppPublish `json:"publish,omitempty"`
}

// AppJoin joins Room; FromStart and FromSnapshot are the join options of both clients.
type AppJoin struct {
	Room         string `json:"room"`
	FromStart    bool   `json:"from_start,omitempty"`
	FromSnapshot bool   `json:"from_snapshot,omitempty"`
}

// AppPublish publishes Body (any JSON) as a message to Room.
type AppPublish struct {
	Room string          `json:"room"`
	Body json.RawMessage `json:"body"`
}

// Step is one step of the server's side: exactly one of Expect, Send, Drop and QuietMS is set.
type Step struct {
	// Expect is the client's next frame (pings and receipts the script does not expect are
	// skipped): each field named must be in it with this value; "*" stands for any value, null
	// for a field that must be absent, and "$name.field" as in Send. As names the frame for
	// later steps.
	Expect map[string]any `json:"expect,omitempty"`
	As     string         `json:"as,omitempty"`
	// Send is a server frame to send. A string "$name.field" is that field of the frame named
	// name by an earlier Expect's As.
	Send map[string]any `json:"send,omitempty"`
	// Drop closes the connection; the client's next connection goes on with the next step.
	Drop bool `json:"drop,omitempty"`
	// QuietMS: for this many milliseconds the client sends nothing but pings and receipts.
	QuietMS int `json:"quiet_ms,omitempty"`
}

// Expect is the application's view once the script has run.
type Expect struct {
	// Delivered lists, by room, the ids of the events the application was given, in order.
	Delivered map[string][]string `json:"delivered,omitempty"`
	// Published gives, for each of App's publishes in order, its outcome: "ack <id>",
	// "duplicate <id>" or "error <code>".
	Published []string `json:"published,omitempty"`
	// Members lists, by room, the room's members as "user/session", sorted.
	Members map[string][]string `json:"members,omitempty"`
	// Rooms gives, by room, what the application is told of it (RoomState).
	Rooms map[string]RoomState `json:"rooms,omitempty"`
	// Refused is the code of a client that stopped for good at its first connection (the bye
	// refusing its first hello); App then does not run.
	Refused string `json:"refused,omitempty"`
	// Stopped is the code of the refusal that stopped the client later (a revoked token).
	Stopped string `json:"stopped,omitempty"`
}

// RoomState is what a room's object tells the application.
type RoomState struct {
	JoinError     string `json:"join_error,omitempty"` // the code refusing App's join
	UnknownCursor bool   `json:"unknown_cursor,omitempty"`
	CursorTooOld  bool   `json:"cursor_too_old,omitempty"`
	Snapshot      string `json:"snapshot,omitempty"`
	Cursor        string `json:"cursor,omitempty"`
	Removed       string `json:"removed,omitempty"` // why the server removed the session
}

// Dir is the vectors' directory, relative to the repository's root.
const Dir = "testdata/client-vectors"

// Load reads every vector in dir, sorted by name.
func Load(dir string) ([]*Vector, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var out []*Vector
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		v := &Vector{Name: strings.TrimSuffix(filepath.Base(p), ".json")}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if err := v.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no vectors in %s", dir)
	}
	return out, nil
}

// check refuses a vector whose steps set none or several of their fields.
func (v *Vector) check() error {
	for i, s := range v.Script {
		n := 0
		for _, set := range []bool{s.Expect != nil, s.Send != nil, s.Drop, s.QuietMS > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("script step %d sets %d of expect, send, drop and quiet_ms; want one", i, n)
		}
	}
	for i, a := range v.App {
		if (a.Join == nil) == (a.Publish == nil) {
			return fmt.Errorf("app step %d: want one of join and publish", i)
		}
	}
	return nil
}
