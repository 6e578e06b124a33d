package transport

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/roomlog/roomlog/actions"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/revocation"
	"github.com/roomlog/roomlog/wire"
)

// Acting on live sessions (admin): removing a user from a room, disconnecting a user, revoking
// tokens. Each acts on this node's connections, and reaches the other nodes' through the log.

// maxReasonBytes bounds the reason an administrator gives (it is logged in leave events and sent
// to clients).
const maxReasonBytes = 1024

// userAndReason reads the user the path names and the body's reason; false means an error was
// written.
func userAndReason(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	user := r.PathValue("user")
	if err := eventlog.CheckUser(user); err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "%v", err)
		return "", "", false
	}
	reason, ok := readReason(w, r)
	return user, reason, ok
}

// readReason reads the body {"reason":".."} of an action on sessions; false means an error was
// written.
func readReason(w http.ResponseWriter, r *http.Request) (string, bool) {
	var in struct {
		Reason string `json:"reason"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReasonBytes+256))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &in)
	}
	switch {
	case err != nil:
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "the body must be {\"reason\":\"...\"}: %v", err)
		return "", false
	case len(in.Reason) > maxReasonBytes:
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "the reason is over %d bytes", maxReasonBytes)
		return "", false
	}
	return in.Reason, true
}

// apiRemove takes a user out of a room, on every node: the action is logged for the others
// (Config.Actions) and applied here (removeUser).
func (s *Server) apiRemove(w http.ResponseWriter, r *http.Request) {
	claims, room := s.roomAction(w, r, auth.Operate, "remove")
	if claims == nil {
		return
	}
	user, reason, ok := userAndReason(w, r)
	if !ok {
		return
	}
	if err := s.logAction(r.Context(), actions.Action{Kind: actions.KindRemove, Room: room, User: user, Reason: reason, By: claims.Subject}); err != nil {
		s.httpFail(w, "remove", room, err)
		return
	}
	sessions, conns, err := s.removeUser(r.Context(), room, user, claims.Subject, reason)
	if err != nil {
		s.httpFail(w, "remove", room, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "user": user, "sessions": sessions, "connections": conns})
}

// removeUser takes user out of room on this node: each of the user's connections here stops
// receiving the room and is sent removed, and the hub appends a leave per session saying who
// removed it and why (and forgets a reusable hook decision, so that a rejoin is decided afresh).
func (s *Server) removeUser(ctx context.Context, room, user, by, reason string) (sessions, conns int, err error) {
	for _, c := range s.connsOf(user) {
		if c.removeFrom(room, reason) {
			conns++
		}
	}
	removed, err := s.hub.Remove(ctx, room, user, by, reason)
	s.logger.Info("user removed from room", "room", room, "user", user, "by", by, "sessions", len(removed), "connections", conns)
	return len(removed), conns, err
}

// apiDisconnect closes every connection of a user, on every node (see apiRemove).
func (s *Server) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	claims := s.admin(w, r)
	if claims == nil {
		return
	}
	user, reason, ok := userAndReason(w, r)
	if !ok {
		return
	}
	if err := s.logAction(r.Context(), actions.Action{Kind: actions.KindDisconnect, User: user, Reason: reason, By: claims.Subject}); err != nil {
		s.httpFail(w, "disconnect", "", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "connections": s.disconnectUser(user, claims.Subject, reason)})
}

// disconnectUser sends every connection of user here bye disconnected and closes it.
func (s *Server) disconnectUser(user, by, reason string) int {
	conns := s.connsOf(user)
	for _, c := range conns {
		c.shutdown(&wire.Bye{Type: wire.TypeBye, Code: wire.CodeDisconnected, Reason: reason}, websocket.ClosePolicyViolation)
	}
	s.logger.Info("user disconnected", "user", user, "by", by, "connections", len(conns))
	return len(conns)
}

// logAction logs a for the other nodes, when the server has Config.Actions.
func (s *Server) logAction(ctx context.Context, a actions.Action) error {
	if s.cfg.Actions == nil {
		return nil
	}
	return s.cfg.Actions.Take(ctx, a)
}

// ApplyAction applies an action on live sessions another node took (actions.Follow's apply).
func (s *Server) ApplyAction(a actions.Action) {
	switch a.Kind {
	case actions.KindRemove:
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, _, err := s.removeUser(ctx, a.Room, a.User, a.By, a.Reason); err != nil {
			s.logger.Warn("cannot apply a removal taken on another node", "room", a.Room, "user", a.User, "err", err)
		}
	case actions.KindDisconnect:
		s.disconnectUser(a.User, a.By, a.Reason)
	}
}

// apiRevoke revokes a token ({"jti":..}) or a user's tokens issued before a time
// ({"user":..,"issued_before":"<RFC 3339>"}): durably, in the log; the live connections they
// authenticated are closed with bye token_revoked, here at once and on other nodes as they read
// it.
func (s *Server) apiRevoke(w http.ResponseWriter, r *http.Request) {
	claims := s.admin(w, r)
	if claims == nil {
		return
	}
	var in revocation.Revocation
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, `the body must be {"jti":".."} or {"user":"..","issued_before":"<RFC 3339>"}: %v`, err)
		return
	}
	if !in.Expires.IsZero() || in.By != "" || !in.At.IsZero() {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "expires, by and at are the server's to set")
		return
	}
	rev, err := s.cfg.Revocations.Revoke(r.Context(), in, claims.Subject)
	if errors.Is(err, revocation.ErrBadRevocation) {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "%v", err)
		return
	} else if err != nil {
		s.httpFail(w, "revoke", revocation.Room, err)
		return
	}
	// Closed here at once; the other nodes close theirs as they read the revocation (and so may
	// this node's follower, first: the connections closed are not counted in the answer).
	s.RecheckTokens()
	s.logger.Info("tokens revoked", "jti", rev.JTI, "user", rev.User, "issued_before", rev.IssuedBefore, "by", claims.Subject)
	writeJSON(w, http.StatusOK, map[string]any{"revocation": rev})
}

// apiRevoked lists the revocations in force.
func (s *Server) apiRevoked(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"), defaultRevokedListed, maxRevokedListed)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "%v", err)
		return
	}
	var listed []revocation.Revocation
	count := 0
	for _, rev := range s.cfg.Revocations.Active() {
		if user := q.Get("user"); user != "" && rev.User != user {
			continue
		}
		count++
		if len(listed) < limit {
			listed = append(listed, rev)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"revocations": listed, "count": count, "truncated": count > len(listed)})
}

// Bounds of GET /v1/tokens/revoked's answer (?limit=).
const (
	defaultRevokedListed = 1000
	maxRevokedListed     = 10000
)

// RecheckTokens closes, with bye token_revoked, every live connection whose token is revoked
// now; it returns how many. The revocations' list calls it when it reads new ones.
func (s *Server) RecheckTokens() int {
	s.mu.Lock()
	all := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range all {
		c.mu.Lock()
		claims, ending := c.claims, c.closing != nil || c.closed
		c.mu.Unlock()
		if claims != nil && !ending && s.auth.Revoked(claims) {
			c.shutdown(&wire.Bye{Type: wire.TypeBye, Code: wire.CodeTokenRevoked, Reason: "the token was revoked; ask the application for a new one"}, websocket.ClosePolicyViolation)
			n++
		}
	}
	return n
}

// connsOf lists the open, welcomed connections of user.
func (s *Server) connsOf(user string) []*conn {
	s.mu.Lock()
	all := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	var out []*conn
	for _, c := range all {
		c.mu.Lock()
		mine := c.welcomed && c.user == user // user is written before welcomed is set, under mu
		c.mu.Unlock()
		if mine {
			out = append(out, c)
		}
	}
	return out
}

// removeFrom ends the connection's stream of room, if it has one, and tells the client it was
// removed; it reports whether the connection was in the room. The hub's membership is the
// caller's to end (Hub.Remove), once for every session.
func (c *conn) removeFrom(room, reason string) bool {
	rs := c.dropStream(room)
	if rs == nil {
		return false
	}
	rs.end()
	c.reply(&wire.Removed{Type: wire.TypeRemoved, Room: room, Reason: reason})
	return true
}
