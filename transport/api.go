package transport

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/adminapi"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/webhooks"
	"github.com/roomlog/roomlog/wire"
)

// The HTTP API of docs/protocol.md, on the same listener. Errors are JSON:
// {"error":{"code":"<code>","message":"<text>"}} with the WebSocket error codes.

func (s *Server) routeAPI() {
	s.mux.HandleFunc("POST /v1/rooms/{room}/events", s.apiPublish)
	s.mux.HandleFunc("GET /v1/rooms/{room}/events", s.apiRoomEvents)
	s.mux.HandleFunc("GET /v1/events", s.apiAudit)
	s.mux.HandleFunc("GET /v1/rooms", s.apiRooms)
	s.mux.HandleFunc("GET /v1/verify", s.apiVerify)
	s.mux.HandleFunc("POST /v1/verify", s.apiVerify)
	s.mux.HandleFunc("GET /v1/backup", s.apiBackup)
	s.mux.HandleFunc("GET /v1/rooms/{room}/snapshot", s.apiSnapshot)
	s.mux.HandleFunc("POST /v1/rooms/{room}/compact", s.apiCompact)
	s.mux.HandleFunc("POST /v1/rooms/{room}/members/{user}/remove", s.apiRemove)
	s.mux.HandleFunc("POST /v1/users/{user}/disconnect", s.apiDisconnect)
	s.mux.HandleFunc("GET /v1/webhooks", s.apiWebhooks)
	if s.cfg.Revocations != nil {
		s.mux.HandleFunc("POST /v1/tokens/revoke", s.apiRevoke)
		s.mux.HandleFunc("GET /v1/tokens/revoked", s.apiRevoked)
	}
}

// apiCompact removes the events the room's latest snapshot covers (admin), recording the
// compaction in the room under the admin's name.
func (s *Server) apiCompact(w http.ResponseWriter, r *http.Request) {
	claims, room := s.roomAction(w, r, auth.Operate, "compact")
	if claims == nil {
		return
	}
	if !s.webhooksPast(w, r, room) {
		return
	}
	w = s.longAnswer(w)
	res, err := s.log.Compact(r.Context(), room, claims.Subject)
	if errors.Is(err, eventlog.ErrNoSnapshot) {
		writeAPIError(w, http.StatusConflict, wire.CodeConflict, "room %q has no snapshot to compact to", room)
		return
	}
	if err != nil {
		s.httpFail(w, "compact", room, err)
		return
	}
	s.logger.Info("room compacted", "room", room, "by", claims.Subject, "snapshot", res.Snapshot, "snapshot_by", res.SnapshotBy, "removed", res.Removed, "floor", res.Floor.ID)
	writeJSON(w, http.StatusOK, adminapi.NewCompactResult(room, res))
}

// webhooksPast reports whether every webhook has delivered room's latest snapshot, so that a
// compaction to it removes no event a webhook has yet to send; false means an error was
// written. A snapshot published between this check and the compaction is not checked: the
// guard is against compacting under a webhook whose receiver has been failing, not a lock.
func (s *Server) webhooksPast(w http.ResponseWriter, r *http.Request, room string) bool {
	if len(s.cfg.Webhooks) == 0 {
		return true
	}
	snap, found, err := s.log.LatestSnapshot(r.Context(), room)
	if err != nil {
		s.httpFail(w, "compact", room, err)
		return false
	}
	if !found {
		return true // Compact answers that there is nothing to compact to
	}
	for _, hook := range s.cfg.Webhooks {
		past, err := hook.HasDelivered(r.Context(), room, snap.ID)
		if err != nil {
			s.httpFail(w, "compact", room, err)
			return false
		}
		if !past {
			writeAPIError(w, http.StatusConflict, wire.CodeConflict, "webhook %q has not delivered the events of room %q that the compaction would remove: compact once it has (GET /v1/webhooks)", hook.Name(), room)
			return false
		}
	}
	return true
}

// admin authenticates a token allowed to operate the server (no room in particular); nil means
// an error was written.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) *auth.Claims {
	claims := s.authenticate(w, r)
	if claims == nil || !s.authorize(w, r, claims, auth.Operate, "", "operate") {
		return nil
	}
	return claims
}

// authorize asks the hub whether the token's holder may take action on room (the operation
// what, in errors); false means an error was written.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, claims *auth.Claims, action auth.Action, room, what string) bool {
	if err := s.hub.Authorize(r.Context(), claims.Grants(), action, room); err != nil {
		s.httpFail(w, what, room, err)
		return false
	}
	return true
}

// apiRooms lists every room as JSON lines, by name.
func (s *Server) apiRooms(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	w = s.longAnswer(w)
	online := s.hub.Online()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	err := s.log.Rooms(r.Context(), func(ri eventlog.RoomInfo) error {
		return enc.Encode(adminapi.NewRoomListing(ri, online[ri.Name]))
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.logger.Warn("room listing ended", "err", err)
	}
}

// apiVerify recomputes the hash chains (of ?room= or of every room) on the live log.
func (s *Server) apiVerify(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	var anchors []eventlog.Anchor
	if r.Method == http.MethodPost { // the body is anchors, as roomlog heads prints them
		var err error
		if anchors, err = eventlog.ReadAnchors(io.LimitReader(r.Body, 64<<20)); err != nil {
			writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "anchors: %v", err)
			return
		}
	}
	w = s.longAnswer(w) // a whole log's verification takes its time
	rep, err := s.log.Verify(r.Context(), r.URL.Query().Get("room"), anchors...)
	if errors.Is(err, eventlog.ErrBadRoom) {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadRoom, "%v", err)
		return
	}
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, wire.CodeInternal, "verify failed: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, adminapi.NewVerifyResult(rep))
}

// apiBackup streams a consistent copy of the data file, taken in one read transaction while the
// server goes on appending.
func (s *Server) apiBackup(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	w = s.longAnswer(w)
	wt, ok := s.log.(io.WriterTo)
	if !ok {
		writeAPIError(w, http.StatusNotImplemented, wire.CodeInternal, "this log backend has no file to copy")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="roomlog-backup.db"`)
	if _, err := wt.WriteTo(w); err != nil {
		s.logger.Warn("backup stream ended", "err", err)
	}
}

type apiError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Head    *string `json:"head,omitempty"`
}

func writeAPIError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: fmt.Sprintf(format, args...)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// authenticate verifies the request's bearer token; nil means an error was written.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *auth.Claims {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		s.metrics.authFailures.Inc()
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeAPIError(w, http.StatusUnauthorized, wire.CodeUnauthenticated, "an Authorization: Bearer <JWT> header is required")
		return nil
	}
	claims, err := s.auth.Verify(token)
	if err != nil {
		s.metrics.authFailures.Inc()
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeAPIError(w, http.StatusUnauthorized, tokenCode(err), "%v", err)
		return nil
	}
	return claims
}

// authenticateRoom authenticates the request and validates the {room} of its path; a nil claims
// means an error was written.
// apiWebhooks lists the webhooks this server delivers: cursor, events pending, last error.
func (s *Server) apiWebhooks(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	out := make([]webhooks.Status, 0, len(s.cfg.Webhooks))
	for _, wh := range s.cfg.Webhooks {
		out = append(out, wh.Status(r.Context()))
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
}

// roomAction authenticates a request on the room its path names and asks the hub whether the
// token may do action there; it answers the refusal and returns nil claims when not.
func (s *Server) roomAction(w http.ResponseWriter, r *http.Request, action auth.Action, what string) (*auth.Claims, string) {
	claims, room := s.authenticateRoom(w, r)
	if claims == nil || !s.authorize(w, r, claims, action, room, what) {
		return nil, ""
	}
	return claims, room
}

func (s *Server) authenticateRoom(w http.ResponseWriter, r *http.Request) (*auth.Claims, string) {
	claims := s.authenticate(w, r)
	if claims == nil {
		return nil, ""
	}
	room := r.PathValue("room")
	if err := eventlog.ValidRoom(room); err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadRoom, "%v", err)
		return nil, ""
	}
	return claims, room
}

func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	claims, room := s.authenticateRoom(w, r)
	if claims == nil {
		return
	}
	var in struct {
		Kind   string          `json:"kind"`
		Key    string          `json:"key"`
		Body   json.RawMessage `json:"body"`
		Expect *string         `json:"expect"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(s.cfg.MaxFrame)+1))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "reading the request: %v", err)
		return
	}
	if len(body) > s.cfg.MaxFrame {
		writeAPIError(w, http.StatusRequestEntityTooLarge, wire.CodeFrameTooLarge, "requests are limited to %d bytes", s.cfg.MaxFrame)
		return
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "the body must be a JSON object {\"kind\",\"key\",\"body\",\"expect\"}: %s", wire.DescribeJSONError(err))
		return
	}
	req := eventlog.AppendRequest{Room: room, Kind: in.Kind, Key: in.Key, Body: in.Body}
	if in.Expect != nil {
		id, err := eventlog.ParseID(*in.Expect)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "expect: %v", err)
			return
		}
		req.Expect = &id
	}
	permit, err := s.hub.AuthorizePublish(r.Context(), claims.Grants(), room, req.Kind)
	if err != nil { // before the rate: a refusal spends none
		s.httpFail(w, "publish", room, err)
		return
	}
	if !s.httpRates.allow(token(r)) {
		s.metrics.appends.WithLabelValues("refused").Inc()
		writeAPIError(w, http.StatusTooManyRequests, wire.CodeRateLimited, "more than %g publishes per second with this token", s.cfg.PublishRate)
		return
	}
	start := time.Now()
	p, err := s.hub.Publish(permit, req)
	var res eventlog.AppendResult
	if err == nil {
		res, err = p.Wait(r.Context())
	}
	if err != nil {
		s.httpFail(w, "publish", room, err)
		return
	}
	s.metrics.appendLatency.Observe(time.Since(start).Seconds())
	ev := jsonCodec.appendEvent(nil, &res.Event)
	status := http.StatusCreated
	if res.Duplicate {
		s.metrics.appends.WithLabelValues("duplicate").Inc()
		status = http.StatusOK
		ev = append(ev[:len(ev)-1], `,"duplicate":true}`...)
	} else {
		s.metrics.appends.WithLabelValues("appended").Inc()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(ev, '\n'))
}

// longAnswer frees a request that may run long (a stream, a backup, a whole-log verification)
// from the HTTP server's read and write timeouts; each write is bounded by the stall time
// instead, so a client that stops reading is still cut.
func (s *Server) longAnswer(w http.ResponseWriter) http.ResponseWriter {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	return &stallWriter{ResponseWriter: w, rc: rc, stall: s.cfg.StallTimeout}
}

// stallWriter arms the write deadline before each write and flush.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (w *stallWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	return w.ResponseWriter.Write(p)
}

// FlushError implements what http.ResponseController.Flush looks for.
func (w *stallWriter) FlushError() error {
	w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	return w.rc.Flush()
}

func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// token is the request's bearer token (authenticate has checked it).
func token(r *http.Request) string {
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return t
}

func queryLimit(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("limit must be a positive integer, got %q", s)
	}
	return min(n, max), nil
}

// apiAudit streams matching events across rooms as JSON lines, in id order. With follow=true it
// keeps streaming new events until the client goes away.
func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	q := r.URL.Query()
	f, err := replay.ParseFilter(replay.FilterArgs{
		Rooms: q["room"], User: q.Get("user"), Kind: q.Get("kind"),
		Since: q.Get("since"), Until: q.Get("until"), After: q.Get("after"), Limit: q.Get("limit"),
	})
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "%v", err)
		return
	}
	follow, _ := strconv.ParseBool(q.Get("follow"))
	hashes, _ := strconv.ParseBool(q.Get("hashes"))
	w = s.longAnswer(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	flusher := http.NewResponseController(w)
	err = replay.Audit(r.Context(), s.log, f, follow, func(e *eventlog.Event) error {
		b := jsonCodec.appendEvent(bw.AvailableBuffer(), e)
		if hashes { // the event's chain hash, for an auditor's page
			b = append(b[:len(b)-1], `,"hash":"`...)
			b = hex.AppendEncode(b, e.Hash[:])
			b = append(b, `"}`...)
		}
		_, err := bw.Write(append(b, '\n'))
		return err
	}, func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return flusher.Flush()
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.logger.Warn("audit stream ended", "err", err)
	}
	bw.Flush()
}
