package eventlog

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// ID identifies an event: a ULID, 48 bits of milliseconds since the Unix epoch followed by 80 bits
// that make ids assigned in the same millisecond distinct and increasing. IDs compare in time
// order. The zero ID is before every event: ReadAfter(room, ID{}) reads a room from its start.
type ID [16]byte

// ParseID parses the 26-character Crockford base32 form of an id. The empty string parses to the
// zero ID. Anything else that is not a ULID is an error wrapping ErrBadCursor.
func ParseID(s string) (ID, error) {
	if s == "" {
		return ID{}, nil
	}
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %q is not a ULID: %v", ErrBadCursor, s, err)
	}
	return ID(u), nil
}

// String returns the 26-character ULID form, or "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	return ulid.ULID(id).String()
}

// AppendText appends the 26-character ULID form to b (nothing for the zero ID).
func (id ID) AppendText(b []byte) ([]byte, error) {
	if id.IsZero() {
		return b, nil
	}
	n := len(b)
	b = append(b, make([]byte, ulid.EncodedSize)...)
	err := ulid.ULID(id).MarshalTextTo(b[n:])
	return b, err
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(nil) }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Compare returns -1, 0 or +1 as id sorts before, equal to or after other.
func (id ID) Compare(other ID) int { return bytes.Compare(id[:], other[:]) }

// Time is the instant encoded in the id, to the millisecond.
func (id ID) Time() time.Time { return time.UnixMilli(int64(id.Millis())).UTC() }

// Millis is the id's timestamp in milliseconds since the Unix epoch.
func (id ID) Millis() uint64 { return ulid.ULID(id).Time() }

// MinIDAt is the smallest id of the millisecond of t: every event appended at or after t has an
// id >= MinIDAt(t), every earlier one an id below it. It turns a time into a bound for ScanFilter.
func MinIDAt(t time.Time) ID {
	var id ID
	ms := uint64(t.UnixMilli())
	id[0], id[1], id[2] = byte(ms>>40), byte(ms>>32), byte(ms>>24)
	id[3], id[4], id[5] = byte(ms>>16), byte(ms>>8), byte(ms)
	return id
}

// IDSource hands out strictly increasing ids, for a backend that assigns them from one place (a
// single writer, or under a lock): it is not safe for concurrent use. The zero value starts from
// the zero id on the wall clock.
//
// Invariant: Next() > every id it returned before and > Last as it was set, even when the wall
// clock goes backwards: the millisecond part is max(now, last), and within a millisecond the
// 80-bit random part is incremented.
type IDSource struct {
	// Last is the last id handed out; a backend reopening its storage sets it to the last id it
	// ever assigned, so ids keep increasing across restarts.
	Last ID
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Next returns a new id, greater than every one before.
func (s *IDSource) Next() ID {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ms := uint64(now().UnixMilli())
	lastMs := s.Last.Millis()
	if ms <= lastMs {
		id, ok := increment(s.Last)
		if ok {
			s.Last = id
			return id
		}
		ms = lastMs + 1 // 2^80 ids in one millisecond: borrow the next one
	}
	var id ID
	id[0], id[1], id[2] = byte(ms>>40), byte(ms>>32), byte(ms>>24)
	id[3], id[4], id[5] = byte(ms>>16), byte(ms>>8), byte(ms)
	// Leave the top bit of the random part clear so that billions of increments within the
	// millisecond cannot overflow it.
	if _, err := rand.Read(id[6:]); err != nil {
		panic("eventlog: crypto/rand failed: " + err.Error())
	}
	id[6] &= 0x7f
	s.Last = id
	return id
}

// increment adds one to the 80-bit random part of id; ok is false on overflow.
func increment(id ID) (ID, bool) {
	lo := binary.BigEndian.Uint64(id[8:]) + 1
	hi := binary.BigEndian.Uint16(id[6:8])
	if lo == 0 {
		if hi == 0xffff {
			return id, false
		}
		hi++
	}
	binary.BigEndian.PutUint16(id[6:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id, true
}

// Next is the id just after id in the order of ids (id + 1, as a 128-bit number), for turning an
// inclusive bound into an exclusive one.
func (id ID) Next() ID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			break
		}
	}
	return id
}

// Prev is the id just before id in the order of ids (id - 1).
func (id ID) Prev() ID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]--
		if id[i] != 0xff {
			break
		}
	}
	return id
}
