package eventlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names, from the protocol (docs/protocol.md).
const (
	MaxRoomLen    = 128
	MaxKindLen    = 32
	MaxKeyLen     = 128
	MaxUserLen    = 256
	MaxSessionLen = 128

	// DefaultMaxBody is the default limit on an event body's compact JSON size.
	DefaultMaxBody = 64 << 10
)

// ValidRoom checks a room name: 1-128 bytes of [A-Za-z0-9_.:@/-].
func ValidRoom(room string) error {
	if len(room) == 0 || len(room) > MaxRoomLen {
		return fmt.Errorf("%w: %q must be 1-%d bytes", ErrBadRoom, room, MaxRoomLen)
	}
	if i := badByte(room, &roomByte); i >= 0 {
		return fmt.Errorf("%w: %q has %s at byte %d; allowed are A-Z a-z 0-9 _ . : @ / -", ErrBadRoom, room, describeRune(room[i:]), i)
	}
	return nil
}

// ValidKind checks an event kind: 1-32 bytes of [a-z0-9_.-]. Whether it is reserved is checked
// separately (IsReservedKind).
func ValidKind(kind string) error {
	if len(kind) == 0 || len(kind) > MaxKindLen {
		return fmt.Errorf("%w: %q must be 1-%d bytes", ErrBadKind, kind, MaxKindLen)
	}
	if i := badByte(kind, &kindByte); i >= 0 {
		return fmt.Errorf("%w: %q has %s at byte %d; allowed are a-z 0-9 _ . -", ErrBadKind, kind, describeRune(kind[i:]), i)
	}
	return nil
}

// badByte is the index of the first byte of s not allowed by allowed, or -1.
func badByte(s string, allowed *[256]bool) int {
	for i := 0; i < len(s); i++ {
		if !allowed[s[i]] {
			return i
		}
	}
	return -1
}

// describeRune quotes the character s starts with ('é'), or its byte when s does not start with
// valid UTF-8 (byte 0xc3).
func describeRune(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", s[0])
	}
	return fmt.Sprintf("%q", r)
}

// IsReservedKind reports whether only the server may write kind.
func IsReservedKind(kind string) bool {
	return kind == KindJoin || kind == KindLeave || kind == KindPresence || kind == KindCompaction
}

// MatchRoom reports whether room matches pattern: the room name itself, or a prefix ending in '*'.
func MatchRoom(pattern, room string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(room, prefix)
	}
	return pattern == room
}

// ValidPattern checks a room pattern of a token: a room name, or a prefix of one (possibly
// empty) followed by '*'.
func ValidPattern(pattern string) error {
	prefix, wildcard := strings.CutSuffix(pattern, "*")
	if !wildcard {
		return ValidRoom(pattern)
	}
	if len(prefix) >= MaxRoomLen {
		return fmt.Errorf("%w: pattern %q: the prefix must be under %d bytes", ErrBadRoom, pattern, MaxRoomLen)
	}
	if i := badByte(prefix, &roomByte); i >= 0 {
		return fmt.Errorf("%w: pattern %q has %s at byte %d; a pattern is a room name or a prefix followed by *", ErrBadRoom, pattern, describeRune(prefix[i:]), i)
	}
	return nil
}

var roomByte, kindByte [256]bool

func init() {
	for c := 'a'; c <= 'z'; c++ {
		roomByte[c], kindByte[c] = true, true
		roomByte[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		roomByte[c], kindByte[c] = true, true
	}
	for _, c := range "_.:@/-" {
		roomByte[c] = true
	}
	for _, c := range "_.-" {
		kindByte[c] = true
	}
}

// validText checks a free-form identifier (user, session, key): valid UTF-8, no NUL (the storage
// layout separates fields with it), within max bytes and at least min.
func validText(what error, name, s string, min, max int) error {
	if len(s) < min || len(s) > max {
		if min > 0 {
			return fmt.Errorf("%w: %s must be %d-%d bytes, got %d", what, name, min, max, len(s))
		}
		return fmt.Errorf("%w: %s must be at most %d bytes, got %d", what, name, max, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", what, name)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", what, name)
	}
	return nil
}

// Normalize validates req as every backend must before storing it, and returns it with the
// default kind filled in and the body compacted (a "null" body becomes none). Its errors wrap
// the ErrBad... values. A backend stores exactly what it returns: it is all the checking an
// append needs before it reaches storage.
func Normalize(req AppendRequest, maxBody int) (AppendRequest, error) {
	if err := ValidRoom(req.Room); err != nil {
		return req, err
	}
	if req.Kind == "" {
		req.Kind = KindMessage
	}
	if err := ValidKind(req.Kind); err != nil {
		return req, err
	}
	if IsReservedKind(req.Kind) && !req.System {
		return req, fmt.Errorf("%w: %q is written by the server only", ErrReservedKind, req.Kind)
	}
	if err := validText(ErrBadUser, "user", req.User, 1, MaxUserLen); err != nil {
		return req, err
	}
	if err := validText(ErrBadSession, "session", req.Session, 0, MaxSessionLen); err != nil {
		return req, err
	}
	if req.Key != "" {
		if err := validText(ErrBadKey, "key", req.Key, 1, MaxKeyLen); err != nil {
			return req, err
		}
	}
	if len(req.Body) > 0 {
		var buf bytes.Buffer
		buf.Grow(len(req.Body))
		if err := json.Compact(&buf, req.Body); err != nil {
			return req, fmt.Errorf("%w: not JSON: %v", ErrBadBody, err)
		}
		if buf.Len() > maxBody {
			return req, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBodyTooLarge, buf.Len(), maxBody)
		}
		req.Body = buf.Bytes()
		if string(req.Body) == "null" {
			req.Body = nil
		}
	}
	if req.Kind == KindSnapshot {
		if err := checkSnapshot(&req); err != nil {
			return req, err
		}
	}
	return req, nil
}

// CheckRead validates a read's room and limit as every backend does (ErrBadRoom, ErrBadLimit).
func CheckRead(room string, limit int) error {
	if err := ValidRoom(room); err != nil {
		return fmt.Errorf("eventlog: read: %w", err)
	}
	if limit <= 0 {
		return fmt.Errorf("eventlog: read: %w: %d, must be positive", ErrBadLimit, limit)
	}
	return nil
}

// CheckCursor validates a Cursors.SetCursor as every backend does.
func CheckCursor(user, session, room string, id ID) error {
	if err := ValidRoom(room); err != nil {
		return fmt.Errorf("eventlog: cursor: %w", err)
	}
	if err := validText(ErrBadUser, "user", user, 1, MaxUserLen); err != nil {
		return fmt.Errorf("eventlog: cursor: %w", err)
	}
	if err := validText(ErrBadSession, "session", session, 0, MaxSessionLen); err != nil {
		return fmt.Errorf("eventlog: cursor: %w", err)
	}
	if id.IsZero() {
		return fmt.Errorf("eventlog: cursor: %w: the zero id acknowledges nothing", ErrBadCursor)
	}
	return nil
}

// CheckUser validates the user a system action is recorded under (Compactor.Compact's by).
func CheckUser(user string) error { return validText(ErrBadUser, "user", user, 1, MaxUserLen) }
