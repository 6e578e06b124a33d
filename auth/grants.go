package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/roomlog/roomlog/eventlog"
)

// Grants is what a verified token allows its user: what Authorize decides room actions by. The
// zero value allows nothing but the user's personal room, read-only.
type Grants struct {
	User      string   // the token's sub
	Rooms     []string // patterns the user may join (read) and publish to (write)
	ReadRooms []string // patterns the user may only join
	// SnapshotRooms are the patterns where the user may publish snapshots (it needs write
	// permission there too): a snapshot decides what compaction removes.
	SnapshotRooms []string
	Admin         bool // the history and audit HTTP API over every room, and compaction
}

// SystemRoomPrefix starts the rooms the server keeps for itself (the token revocations): no
// client joins or publishes there, whatever its claims or the application's hook say; admins
// may read them.
const SystemRoomPrefix = "_roomlog/"

// IsSystemRoom reports whether room is one of the server's own.
func IsSystemRoom(room string) bool { return strings.HasPrefix(room, SystemRoomPrefix) }

// PersonalRoom is the room every user may read without a claim: a backend publishes there to
// reach all of that user's devices.
func PersonalRoom(user string) string { return "user:" + user }

// ErrForbidden is the error of every refused room action: Authorize returns it as a *Refusal.
var ErrForbidden = errors.New("forbidden")

// ErrUnavailable is the error of a room action that could not be decided (the application's
// hook did not answer in time, or answered garbage): never an allow; the client may try again.
var ErrUnavailable = errors.New("unavailable")

// Refusal is a refused room action: it wraps ErrForbidden, and Reason is the sentence the
// client is told.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return "forbidden: " + r.Reason }
func (r *Refusal) Unwrap() error { return ErrForbidden }

func refuse(format string, args ...any) error { return &Refusal{Reason: fmt.Sprintf(format, args...)} }

// Action is a room action Authorize decides.
type Action int

// The room actions. Each needs, of the grants:
const (
	Join     Action = iota // read: join the room and receive its events
	History                // read: a page of history, the latest snapshot, over the WebSocket
	Receipt                // read: record a receipt cursor (a client's ack of what it received)
	Publish                // write: append an event
	Snapshot               // write and snapshot_rooms: append an event of kind snapshot
	Read                   // read or admin: the room's events and snapshot over the HTTP API
	Operate                // admin: compaction, verification, backup, the room list, the audit stream
)

// Authorize says, as a *Refusal, why the grants do not allow action on room,
// or nil when they do. It is the one decision on room actions; room is ignored for Operate on no
// room in particular (pass ""). Presence and signals need the room joined, hence Join.
func (g *Grants) Authorize(action Action, room string) error {
	switch action {
	case Join, History, Receipt:
		if !g.CanRead(room) {
			return refuse("your token does not allow room %q", room)
		}
	case Publish:
		if !g.CanWrite(room) {
			return refuse("your token does not allow publishing to %q", room)
		}
	case Snapshot:
		if !g.CanWrite(room) {
			return refuse("your token does not allow publishing to %q", room)
		}
		if !matchAny(g.SnapshotRooms, room) {
			return refuse("publishing a snapshot to %q needs the token claim snapshot_rooms (snapshots decide what compaction removes)", room)
		}
	case Read:
		if !g.CanRead(room) && !g.Admin {
			return refuse("your token does not allow reading %q", room)
		}
	case Operate:
		if !g.Admin {
			return refuse("this endpoint needs an admin token")
		}
	default:
		return refuse("unknown action %d", action)
	}
	return nil
}

// PublishAction is the action of publishing an event of kind: Snapshot for snapshots, else
// Publish.
func PublishAction(kind string) Action {
	if kind == eventlog.KindSnapshot {
		return Snapshot
	}
	return Publish
}

// CanRead reports whether the user may join room and read its history.
func (g *Grants) CanRead(room string) bool {
	return room == PersonalRoom(g.User) || matchAny(g.Rooms, room) || matchAny(g.ReadRooms, room)
}

// CanWrite reports whether the user may publish to room.
func (g *Grants) CanWrite(room string) bool {
	return matchAny(g.Rooms, room)
}

// CanSnapshot reports whether the user may publish an event of kind snapshot to room.
func (g *Grants) CanSnapshot(room string) bool {
	return g.CanWrite(room) && matchAny(g.SnapshotRooms, room)
}

func matchAny(patterns []string, room string) bool {
	for _, p := range patterns {
		if eventlog.MatchRoom(p, room) {
			return true
		}
	}
	return false
}
