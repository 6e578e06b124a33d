// Package adminapi holds the JSON shapes of the server's admin HTTP API (/v1/rooms, /v1/verify),
// which the server writes and the roomlog CLI reads, made from the log's own types. It is not
// public API: the shapes are documented in docs/protocol.md.
package adminapi

import (
	"encoding/hex"

	"github.com/roomlog/roomlog/eventlog"
)

// RoomListing is one line of GET /v1/rooms.
type RoomListing struct {
	Room    string `json:"room"`
	Events  uint64 `json:"events"`
	First   string `json:"first"`
	Last    string `json:"last"`
	Hash    string `json:"hash"`    // the chain hash of last, hex: with events and last, an anchor
	Members int    `json:"members"` // sessions online (on the server's node; offline, as the log records)
}

// NewRoomListing describes a room with members online.
func NewRoomListing(ri eventlog.RoomInfo, members int) RoomListing {
	return RoomListing{Room: ri.Name, Events: ri.Count, First: ri.First.String(), Last: ri.Last.String(),
		Hash: hex.EncodeToString(ri.Hash[:]), Members: members}
}

// VerifyResult is the answer of /v1/verify.
type VerifyResult struct {
	Rooms  int    `json:"rooms"`
	Events uint64 `json:"events"`
	First  string `json:"first"`
	Last   string `json:"last"`
	// Compacted counts events removed by compactions before the chains' floors.
	Compacted uint64       `json:"compacted,omitempty"`
	Broken    *VerifyBreak `json:"broken,omitempty"`
}

// VerifyBreak is the first broken link a verification found.
type VerifyBreak struct {
	Room   string `json:"room"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// NewVerifyResult turns a report into its JSON form.
func NewVerifyResult(rep eventlog.VerifyReport) VerifyResult {
	v := VerifyResult{Rooms: rep.Rooms, Events: rep.Events, First: rep.First.String(), Last: rep.Last.String(), Compacted: rep.Compacted}
	if b := rep.Broken; b != nil {
		v.Broken = &VerifyBreak{Room: b.Room, ID: b.ID.String(), Reason: b.Reason}
	}
	return v
}

// CompactResult is the answer of POST /v1/rooms/{room}/compact.
type CompactResult struct {
	Room       string `json:"room"`
	Snapshot   string `json:"snapshot"`
	SnapshotBy string `json:"snapshot_by"` // who published the snapshot the removal trusted
	Floor      string `json:"floor"`       // the last event removed, over all compactions
	FloorCount uint64 `json:"floor_count"` // its position in the room
	Removed    int    `json:"removed"`     // events this compaction removed
	Record     string `json:"record,omitempty"`
}

// NewCompactResult turns a compaction's outcome into its JSON form.
func NewCompactResult(room string, r eventlog.CompactResult) CompactResult {
	c := CompactResult{Room: room, Snapshot: r.Snapshot.String(), SnapshotBy: r.SnapshotBy, Floor: r.Floor.ID.String(), FloorCount: r.Floor.Count, Removed: r.Removed}
	if !r.Record.ID.IsZero() {
		c.Record = r.Record.ID.String()
	}
	return c
}
