package transport

import (
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/wire"
)

// Frames are wire's types (package wire): the protocol's frames and codes are written once, for
// the server and the Go client alike.

// memberFrames is the member list of a joined frame. It is bounded, so that members joining a
// room with large presence states cannot make every newcomer's joined frame huge: at most maxListed members, and members' presence of at most
// maxMembersBytes in all. truncated says some were left out.
func memberFrames(ms []rooms.Member, maxListed int) (out []wire.Member, truncated bool) {
	out = make([]wire.Member, 0, min(len(ms), maxListed))
	size := 0
	for _, m := range ms {
		size += len(m.User) + len(m.Session) + len(m.Presence)
		if len(out) >= maxListed || size > maxMembersBytes {
			return out, true
		}
		out = append(out, wire.Member{User: m.User, Session: m.Session, Presence: wire.RawJSON(m.Presence)})
	}
	return out, false
}

// maxMembersBytes bounds the members of a joined frame, in bytes of users, sessions and presence.
const maxMembersBytes = 256 << 10
