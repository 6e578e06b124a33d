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
