package transport

import (
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/wire"
)

// Frames are wire's types (package wire): the protocol's frames and codes are written once, for
// the server and the Go client alike.

func memberFrames(ms []rooms.Member) []wire.Member {
	out := make([]wire.Member, len(ms))
	for i, m := range ms {
		out[i] = wire.Member{User: m.User, Session: m.Session, Presence: wire.RawJSON(m.Presence)}
	}
	return out
}
