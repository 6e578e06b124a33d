package rooms

import (
	"fmt"

	"github.com/roomlog/roomlog/eventlog"
)

// Grants is what a verified token allows its user. The zero value allows nothing but the user's
// personal room, read-only.
type Grants struct {
	User      string   // the token's sub
	Rooms     []string // patterns the user may join (read) and publish to (write)
	ReadRooms []string // patterns the user may only join
	// SnapshotRooms are the patterns where the user may publish snapshots (it needs write
	// permission there too): a snapshot decides what compaction removes.
	SnapshotRooms []string
	Admin         bool // the history and audit HTTP API over every room
}

// PersonalRoom is the room every user may read without a claim: a backend publishes there to
// reach all of that user's devices.
func PersonalRoom(user string) string { return "user:" + user }

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

// CheckPublish says, as an error wrapping ErrForbidden, why the user may not publish an event of
// kind to room; nil when it may.
func (g *Grants) CheckPublish(room, kind string) error {
	switch {
	case !g.CanWrite(room):
		return fmt.Errorf("%w: your token does not allow publishing to %q", ErrForbidden, room)
	case kind == eventlog.KindSnapshot && !g.CanSnapshot(room):
		return fmt.Errorf("%w: publishing a snapshot to %q needs the token claim snapshot_rooms (snapshots decide what compaction removes)", ErrForbidden, room)
	}
	return nil
}

// CanAudit reports whether the user may read any room through the HTTP API.
func (g *Grants) CanAudit() bool { return g.Admin }

func matchAny(patterns []string, room string) bool {
	for _, p := range patterns {
		if eventlog.MatchRoom(p, room) {
			return true
		}
	}
	return false
}
