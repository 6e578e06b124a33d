package transport

import (
	"errors"
	"net/http"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/wire"
)

// refusal is how a failed request is answered: the one mapping from the errors of rooms, replay
// and eventlog to the protocol's codes (WebSocket) and to HTTP statuses, for both.
type refusal struct {
	code    string
	status  int
	message string
	head    *string // the room's head, for a conflict
	outcome string  // the appends metric label for a publish: conflict, refused or failed
	// storage is set for failures of the storage rather than of the request: they are logged
	// (ErrFailed only at debug level, since it is logged once where the log failed).
	storage bool
}

// refusalOf maps err, the failure of the operation what ("publish", "join", ...).
func refusalOf(what string, err error) refusal {
	var conflict *eventlog.ConflictError
	switch {
	case errors.As(err, &conflict):
		head := conflict.Head.String()
		return refusal{code: wire.CodeConflict, status: http.StatusConflict, message: "the room's head is not the expected id", head: &head, outcome: "conflict"}
	case errors.Is(err, auth.ErrForbidden):
		message := err.Error()
		var why *auth.Refusal
		if errors.As(err, &why) {
			message = why.Reason // the code says forbidden already
		}
		return refusal{code: wire.CodeForbidden, status: http.StatusForbidden, message: message, outcome: "refused"}
	case errors.Is(err, auth.ErrUnavailable):
		return refusal{code: wire.CodeUnavailable, status: http.StatusServiceUnavailable, message: what + " could not be decided now; try again", outcome: "refused"}
	case errors.Is(err, rooms.ErrNotJoined):
		return refusal{code: wire.CodeNotJoined, status: http.StatusConflict, message: err.Error()}
	case errors.Is(err, eventlog.ErrBadRoom):
		return refusal{code: wire.CodeBadRoom, status: http.StatusBadRequest, message: err.Error(), outcome: "refused"}
	case isBadInput(err):
		return refusal{code: wire.CodeBadFrame, status: http.StatusBadRequest, message: err.Error(), outcome: "refused"}
	case errors.Is(err, eventlog.ErrFailed):
		return refusal{code: wire.CodeInternal, status: http.StatusServiceUnavailable, message: what + " failed: storage is unavailable; try again", outcome: "failed", storage: true}
	default:
		return refusal{code: wire.CodeInternal, status: http.StatusInternalServerError, message: what + " failed; try again", outcome: "failed", storage: true}
	}
}

// tokenCode is the code refusing a token that failed verification with err.
func tokenCode(err error) string {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return wire.CodeTokenExpired
	case errors.Is(err, auth.ErrTokenRevoked):
		return wire.CodeTokenRevoked
	}
	return wire.CodeUnauthenticated
}

func isBadInput(err error) bool {
	for _, e := range []error{eventlog.ErrBadKind, eventlog.ErrReservedKind, eventlog.ErrBadUser, eventlog.ErrBadSession,
		eventlog.ErrBadKey, eventlog.ErrBadBody, eventlog.ErrBodyTooLarge, eventlog.ErrBadCursor, eventlog.ErrBadLimit} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// fail answers the frame ref (of room) whose operation what failed with err.
func (c *conn) fail(ref, room, what string, err error) {
	r := refusalOf(what, err)
	if r.storage {
		if errors.Is(err, eventlog.ErrFailed) {
			c.s.logger.Debug("request refused: the event log is recovering from a failed commit", "op", what, "conn", c.id, "user", c.user, "err", err)
		} else {
			c.s.logger.Error("request failed", "op", what, "conn", c.id, "user", c.user, "err", err)
		}
	}
	if what == "publish" && r.outcome != "" {
		c.s.metrics.appends.WithLabelValues(r.outcome).Inc()
	}
	c.refusedFrame(r.code, r.message)
	var frameRoom string
	if r.head != nil {
		frameRoom = room
	}
	c.reply(&wire.Error{Type: "error", Ref: ref, Code: r.code, Room: frameRoom, Head: r.head, Message: r.message})
}

// httpFail answers an HTTP request whose operation what (on room) failed with err.
func (s *Server) httpFail(w http.ResponseWriter, what, room string, err error) {
	r := refusalOf(what, err)
	if r.storage {
		if errors.Is(err, eventlog.ErrFailed) {
			s.logger.Debug("HTTP request refused: the event log is recovering from a failed commit", "op", what, "room", room, "err", err)
			w.Header().Set("Retry-After", "1")
		} else {
			s.logger.Error("HTTP request failed", "op", what, "room", room, "err", err)
		}
	}
	if r.code == wire.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if what == "publish" && r.outcome != "" {
		s.metrics.appends.WithLabelValues(r.outcome).Inc()
	}
	writeJSON(w, r.status, map[string]apiError{"error": {Code: r.code, Message: r.message, Head: r.head}})
}
