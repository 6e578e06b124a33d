package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// The event record format; see the package comment for the layout.
const (
	hashOffset   = 0
	fieldsOffset = hashOffset + sha256.Size // record[fieldsOffset:] is what the hash covers
)

var kindCodes = [...]string{1: KindMessage, 2: KindJoin, 3: KindLeave, 4: KindPresence}

func kindCode(kind string) byte {
	for i, k := range kindCodes {
		if i > 0 && k == kind {
			return byte(i)
		}
	}
	return 0
}

var errBadRecord = errors.New("malformed event record")

// EncodeRecord appends the record of req (normalized) to dst, with its hash left zero for
// ChainRecord to fill in. The layout is in the package comment.
func EncodeRecord(dst []byte, req *AppendRequest) []byte {
	dst = append(dst, make([]byte, sha256.Size)...)
	code := kindCode(req.Kind)
	dst = append(dst, code)
	if code == 0 {
		dst = appendString(dst, req.Kind)
	}
	dst = appendString(dst, req.User)
	dst = appendString(dst, req.Session)
	dst = appendString(dst, req.Key)
	return append(dst, req.Body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// ChainRecord computes the chain hash of record rec, stored as event id of room after an event
// whose hash is prev (32 zero bytes for a room's first event), writes it into rec and returns it.
// The hash covers the room, the id and every field, so nothing can be moved unnoticed.
func ChainRecord(rec []byte, prev *[32]byte, room string, id ID) [32]byte {
	sum := chainHash(rec, prev, room, id)
	copy(rec[hashOffset:fieldsOffset], sum[:])
	return sum
}

func chainHash(rec []byte, prev *[32]byte, room string, id ID) [32]byte {
	h := sha256.New()
	var hdr [32 + 16 + binary.MaxVarintLen64]byte
	n := copy(hdr[:], prev[:])
	n += copy(hdr[n:], id[:])
	n += binary.PutUvarint(hdr[n:], uint64(len(room)))
	h.Write(hdr[:n])
	h.Write(unsafe.Slice(unsafe.StringData(room), len(room)))
	h.Write(rec[fieldsOffset:])
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// DecodeRecord fills e's kind, user, session, key, body and hash from rec; e.ID and e.Room are
// the caller's. The strings and body of e point into rec, which the caller must own and never
// change (a backend reading from a memory map copies records out first).
func DecodeRecord(e *Event, rec []byte) error {
	if len(rec) < fieldsOffset+4 {
		return fmt.Errorf("%w: %d bytes", errBadRecord, len(rec))
	}
	copy(e.Hash[:], rec[hashOffset:fieldsOffset])
	p := rec[fieldsOffset:]
	code := p[0]
	p = p[1:]
	var ok bool
	if code == 0 {
		if e.Kind, p, ok = readString(p); !ok {
			return fmt.Errorf("%w: kind", errBadRecord)
		}
	} else if int(code) < len(kindCodes) {
		e.Kind = kindCodes[code]
	} else {
		return fmt.Errorf("%w: kind code %d", errBadRecord, code)
	}
	if e.User, p, ok = readString(p); !ok {
		return fmt.Errorf("%w: user", errBadRecord)
	}
	if e.Session, p, ok = readString(p); !ok {
		return fmt.Errorf("%w: session", errBadRecord)
	}
	if e.Key, p, ok = readString(p); !ok {
		return fmt.Errorf("%w: key", errBadRecord)
	}
	if len(p) > 0 {
		e.Body = p[:len(p):len(p)]
	} else {
		e.Body = nil
	}
	return nil
}

func readString(p []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return "", p, false
	}
	s := p[w : w+int(n)]
	if len(s) == 0 {
		return "", p[w:], true
	}
	return unsafe.String(&s[0], len(s)), p[w+int(n):], true
}

// RecordHash is the chain hash stored in record rec (one that DecodeRecord accepts).
func RecordHash(rec []byte) [32]byte { return [32]byte(rec[hashOffset:fieldsOffset]) }
