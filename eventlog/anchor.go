package eventlog

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// anchorJSON is an Anchor as one line of `roomlog heads`: {"room","count","id","hash"}.
type anchorJSON struct {
	Room  string `json:"room"`
	Count uint64 `json:"count"`
	ID    string `json:"id"`
	Hash  string `json:"hash"` // hex SHA-256
}

// MarshalJSON writes the anchor as {"room","count","id","hash"}.
func (a Anchor) MarshalJSON() ([]byte, error) {
	return json.Marshal(anchorJSON{Room: a.Room, Count: a.Count, ID: a.ID.String(), Hash: hex.EncodeToString(a.Hash[:])})
}

// UnmarshalJSON reads what MarshalJSON writes, checking every field.
func (a *Anchor) UnmarshalJSON(b []byte) error {
	var j anchorJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return err
	}
	if err := ValidRoom(j.Room); err != nil {
		return err
	}
	id, err := ParseID(j.ID)
	if err != nil || id.IsZero() {
		return fmt.Errorf("id %q is not an event id", j.ID)
	}
	if j.Count == 0 {
		return fmt.Errorf("count must be at least 1")
	}
	h, err := hex.DecodeString(j.Hash)
	if err != nil || len(h) != len(a.Hash) {
		return fmt.Errorf("hash must be %d hex digits", 2*len(a.Hash))
	}
	*a = Anchor{Room: j.Room, Head: Head{ID: id, Count: j.Count}}
	copy(a.Hash[:], h)
	return nil
}

// ReadAnchors reads anchors as JSON lines (blank lines skipped); an error names the line.
func ReadAnchors(r io.Reader) ([]Anchor, error) {
	var out []Anchor
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var a Anchor
		if err := json.Unmarshal(line, &a); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// The anchor checks every backend's verification makes (through ChainCheck).

// anchorsByRoom groups the anchors of room (of every room when room is "").
func anchorsByRoom(room string, anchors []Anchor) map[string][]Anchor {
	byRoom := map[string][]Anchor{}
	for _, a := range anchors {
		if room == "" || a.Room == room {
			byRoom[a.Room] = append(byRoom[a.Room], a)
		}
	}
	return byRoom
}

// anchorsAt indexes one room's anchors by their position in the room (1-based).
func anchorsAt(anchors []Anchor) map[uint64]Anchor {
	at := make(map[uint64]Anchor, len(anchors))
	for _, a := range anchors {
		at[a.Count] = a
	}
	return at
}

// checkAnchor checks the room's event number count (id, hash) against its anchor, if any, and
// takes that anchor off at.
func checkAnchor(room string, at map[uint64]Anchor, count uint64, id ID, hash [32]byte) *Break {
	a, ok := at[count]
	if !ok {
		return nil
	}
	delete(at, count)
	if a.ID != id || a.Hash != hash {
		return &Break{Room: room, ID: id, Reason: fmt.Sprintf("event %d of the room is %s with hash %x, but the anchor names %s with hash %x: the room was rewritten", count, id, hash[:6], a.ID, a.Hash[:6])}
	}
	return nil
}

// anchorsPast reports an anchor left in at once the room's count events are checked: the room no
// longer reaches it.
func anchorsPast(room string, at map[uint64]Anchor, count uint64) *Break {
	for _, a := range at {
		return &Break{Room: room, ID: a.ID, Reason: fmt.Sprintf("the room has %d events, but the anchor names event %d (%s): events were cut from its end", count, a.Count, a.ID)}
	}
	return nil
}

// anchoredRoomsMissing reports an anchored room the log does not have.
func anchoredRoomsMissing(byRoom map[string][]Anchor) *Break {
	for name, as := range byRoom {
		if len(as) == 0 {
			continue
		}
		a := as[0]
		return &Break{Room: name, ID: a.ID, Reason: fmt.Sprintf("anchored at event %d (%s), but the room is not in the log: it was removed", a.Count, a.ID)}
	}
	return nil
}

// anchorsBelowFloor checks the anchors a compaction reached: the one at the floor's position must
// name the floor's event, with its hash (the chain goes on from it); those before it name events
// removed, which can no longer be checked, and are taken off.
func anchorsBelowFloor(room string, at map[uint64]Anchor, floor Head) *Break {
	for n, a := range at {
		if n > floor.Count {
			continue
		}
		delete(at, n)
		if n == floor.Count && (a.ID != floor.ID || a.Hash != floor.Hash) {
			return &Break{Room: room, ID: floor.ID, Reason: fmt.Sprintf("the room was compacted to event %d (%s, hash %x), but the anchor names %s with hash %x there", n, floor.ID, floor.Hash[:6], a.ID, a.Hash[:6])}
		}
	}
	return nil
}
