package eventlog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Snapshots and compaction: a long room (a document edited for a year) is opened from its latest
// snapshot instead of from its first event, and an operator may remove the events a snapshot
// covers to bound the data file, keeping the audit chain verifiable.
//
// A snapshot is an event of kind "snapshot" whose body is a JSON object naming the id it covers,
// {"covers":"<id>", ...the state...}, appended with Expect set to that id: it covers exactly the
// events up to that id, and it is the event right after it. A compaction removes the events
// before a snapshot (the covered id included) and records where the chain stood there (the
// room's floor) and, as an event of kind "compaction" written by the log itself, who removed
// what and when.

// Kinds of snapshots and compaction records.
const (
	KindSnapshot   = "snapshot"
	KindCompaction = "compaction"
)

// ErrNoSnapshot is returned by Compact for a room without a snapshot to compact to.
var ErrNoSnapshot = errors.New("no snapshot")

// Compactor is implemented by backends that index snapshots and can compact rooms. Both backends
// of this package are; logtest checks them.
type Compactor interface {
	// LatestSnapshot returns the room's latest snapshot event, found in one lookup; ok is false
	// when the room has none.
	LatestSnapshot(ctx context.Context, room string) (ev Event, ok bool, err error)

	// Floor returns where the room's remaining events start: the last removed event's id, its
	// chain hash and its position in the room (zero values when nothing was removed). Every id
	// at or below Floor().ID was removed; a cursor below it is too old to resume from.
	Floor(ctx context.Context, room string) (Head, error)

	// Compact removes the room's events before its latest snapshot, moves the floor to the
	// event that snapshot covers, and appends a "compaction" event by user by recording it. It
	// works in steps of bounded size, each durable and each leaving the room consistent, so a
	// crash stops it part way and a new Compact finishes it. A room without a snapshot gets
	// ErrNoSnapshot; one already compacted to its latest snapshot removes nothing and records
	// nothing (Removed is 0).
	Compact(ctx context.Context, room, by string) (CompactResult, error)
}

// CompactResult says what Compact did.
type CompactResult struct {
	Snapshot   ID     // the snapshot compacted to
	SnapshotBy string // the user who published it: whom the removal trusted
	Floor      Head   // the room's floor afterwards: the covered event
	Removed    int    // events removed by this call
	Record     Event  // the compaction event, when Removed > 0
}

// compactionBody is the body of a compaction event.
type compactionBody struct {
	Snapshot   string `json:"snapshot"`
	SnapshotBy string `json:"snapshot_by"` // the user who published the snapshot
	Floor      string `json:"floor"`       // the last id removed
	Hash       string `json:"floor_hash"`  // its chain hash, hex
	Count      uint64 `json:"floor_count"` // its position in the room
	Removed    int    `json:"removed"`     // events removed by this compaction
}

// checkSnapshot validates a snapshot append: a JSON object body naming the id it covers, and
// Expect set to that id.
func checkSnapshot(req *AppendRequest) error {
	var body struct {
		Covers *string `json:"covers"`
	}
	if len(req.Body) == 0 || req.Body[0] != '{' || json.Unmarshal(req.Body, &body) != nil || body.Covers == nil {
		return fmt.Errorf("%w: a snapshot's body is an object naming the id it covers: {\"covers\":\"<id>\", ...}", ErrBadBody)
	}
	covers, err := ParseID(*body.Covers)
	if err != nil {
		return fmt.Errorf("%w: snapshot covers: %v", ErrBadBody, err)
	}
	if req.Expect == nil || *req.Expect != covers {
		return fmt.Errorf("%w: a snapshot is appended with expect set to the id it covers (%s)", ErrBadBody, covers)
	}
	if covers.IsZero() {
		return fmt.Errorf("%w: a snapshot covers an event; an empty room has nothing to cover", ErrBadBody)
	}
	return nil
}

// SnapshotCovers returns the id a snapshot event covers, as its body names it.
func SnapshotCovers(snap Event) (ID, error) {
	var body struct {
		Covers string `json:"covers"`
	}
	if err := json.Unmarshal(snap.Body, &body); err != nil {
		return ID{}, fmt.Errorf("%w: snapshot %s: body: %v", ErrCorrupt, snap.ID, err)
	}
	id, err := ParseID(body.Covers)
	if err != nil {
		return ID{}, fmt.Errorf("%w: snapshot %s covers: %v", ErrCorrupt, snap.ID, err)
	}
	return id, nil
}

// CompactionBody is the body of the compaction event a backend appends when it has removed
// removed events of a room up to floor, compacting it to snapshot, which snapshotBy wrote.
func CompactionBody(snapshot ID, snapshotBy string, floor Head, removed int) json.RawMessage {
	body, _ := json.Marshal(compactionBody{
		Snapshot: snapshot.String(), SnapshotBy: snapshotBy, Floor: floor.ID.String(), Hash: hex.EncodeToString(floor.Hash[:]),
		Count: floor.Count, Removed: removed,
	})
	return body
}
