package transport

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/wire"
)

// The past of a room over HTTP, for its readers (the editor's history panel, the audit page):
// pages of its events in a range, and the snapshot a version at some event is built from.

// Bounds of GET /v1/rooms/{room}/events: a page holds at most maxPageEvents events, and at most
// the server's MaxFrame bytes of them (at least one event), as a WebSocket history frame does
// (PROTOCOL.md, "Trust and limits").
const (
	defaultPageEvents = 100
	maxPageEvents     = 10000
)

// maxSnapshotSearch bounds the events GET /v1/rooms/{room}/snapshot?at= reads back from at to
// find a snapshot.
const maxSnapshotSearch = 100000

// roomPage is the answer of GET /v1/rooms/{room}/events.
type roomPage struct {
	Room   string            `json:"room"`
	Events []json.RawMessage `json:"events"`
	// More: events of the range after the last of Events were left out (by limit or by the
	// page's byte bound); ask again with after set to its id. Reading from the end: events
	// before the first were; ask again with until set to its id.
	More bool `json:"more"`
	// CursorTooOld: a compaction removed events after the page's after (the room's events
	// before and at Floor are gone by design); Events starts after Floor. Reading from the end,
	// it is said by the page that reaches the start of what remains.
	CursorTooOld bool   `json:"cursor_too_old,omitempty"`
	Floor        string `json:"floor,omitempty"`
}

// apiRoomEvents answers a page of a room's events (read permission or admin): those after the
// id after and before the id until (both optional), oldest first; the first of the range, or
// with from=end its last (a history view reads newest first).
func (s *Server) apiRoomEvents(w http.ResponseWriter, r *http.Request) {
	claims, room := s.roomAction(w, r, auth.Read, "read")
	if claims == nil {
		return
	}
	q := r.URL.Query()
	after, err1 := eventlog.ParseID(q.Get("after"))
	until, err2 := eventlog.ParseID(q.Get("until"))
	limit, err3 := queryLimit(q.Get("limit"), defaultPageEvents, maxPageEvents)
	maxBody, err4 := queryMaxBody(q.Get("max_body"))
	var err5 error
	fromEnd := q.Get("from") == "end"
	if v := q.Get("from"); v != "" && !fromEnd {
		err5 = fmt.Errorf(`want "end", or nothing (from the start), got %q`, v)
	}
	for i, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "%s: %v", []string{"after", "until", "limit", "max_body", "from"}[i], err)
			return
		}
	}
	read := s.pageForward
	if fromEnd {
		read = s.pageBackward
	}
	page := roomPage{Room: room, Events: []json.RawMessage{}}
	evs, more, err := read(r, room, after, until, limit)
	if err == nil && (!fromEnd || !more) { // the page starts the range
		err = s.markFloor(r, &page, room, after)
	}
	if err != nil {
		s.httpFail(w, "read", room, err)
		return
	}
	page.More = more
	// The page's byte bound keeps the end it reads from (at least one event); more then says
	// the rest of the range follows.
	encoded := make([][]byte, len(evs))
	size, keep := 0, 0
	for keep < len(evs) {
		i := keep
		if fromEnd {
			i = len(evs) - 1 - keep
		}
		encoded[i] = appendPageEvent(evs[i], maxBody)
		if size += len(encoded[i]); size > s.cfg.MaxFrame && keep > 0 {
			page.More = true
			break
		}
		keep++
	}
	kept := encoded[:keep]
	if fromEnd {
		kept = encoded[len(evs)-keep:]
	}
	for _, b := range kept {
		page.Events = append(page.Events, b)
	}
	writeJSON(w, http.StatusOK, page)
}

// pageForward reads the first limit events after after and before until; more: others of the
// range follow.
func (s *Server) pageForward(r *http.Request, room string, after, until eventlog.ID, limit int) ([]eventlog.Event, bool, error) {
	evs, err := s.log.ReadAfter(r.Context(), room, after, limit+1) // one more says whether more follow
	if err != nil {
		return nil, false, err
	}
	more := len(evs) > limit
	evs = evs[:min(len(evs), limit)]
	for i := range evs {
		if !until.IsZero() && evs[i].ID.Compare(until) >= 0 {
			return evs[:i], false, nil // the range ends here
		}
	}
	return evs, more, nil
}

// pageBackward reads the last limit events before until (the room's last without it) and after
// after; more: others of the range precede them.
func (s *Server) pageBackward(r *http.Request, room string, after, until eventlog.ID, limit int) ([]eventlog.Event, bool, error) {
	evs, err := s.log.ReadBefore(r.Context(), room, until, limit+1)
	if err != nil {
		return nil, false, err
	}
	more := len(evs) > limit
	evs = evs[max(0, len(evs)-limit):]
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].ID.Compare(after) <= 0 {
			return evs[i+1:], false, nil // the range starts here
		}
	}
	return evs, more, nil
}

// markFloor adds cursor_too_old and the floor to page, which starts the range after after, when
// a compaction removed events of that range.
func (s *Server) markFloor(r *http.Request, page *roomPage, room string, after eventlog.ID) error {
	floor, err := s.log.Floor(r.Context(), room)
	if err == nil && !floor.ID.IsZero() && after.Compare(floor.ID) < 0 {
		page.CursorTooOld, page.Floor = true, floor.ID.String()
	}
	return err
}

// queryMaxBody reads max_body: bodies larger than it (in bytes) are left out of a page; -1
// when not given.
func queryMaxBody(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a number of bytes, got %q", s)
	}
	return n, nil
}

// appendPageEvent is e as a page holds it: its body left out, and its size said as
// "body_size", when it is larger than maxBody (-1: never). A history view reads the many small
// edits of a document without its snapshots' states, and fetches the one it needs.
func appendPageEvent(e eventlog.Event, maxBody int) []byte {
	if maxBody < 0 || len(e.Body) <= maxBody {
		return jsonCodec.appendEvent(nil, &e)
	}
	size := len(e.Body)
	e.Body = nil
	b := jsonCodec.appendEvent(nil, &e)
	b = append(b[:len(b)-1], `,"body_size":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	return append(b, '}')
}

// apiSnapshot answers a snapshot event of the room (read permission or admin): its latest, or
// with ?at=<id> the latest at or before that event of the room, from which the room as it was
// at that event is built. 404 when there is none.
func (s *Server) apiSnapshot(w http.ResponseWriter, r *http.Request) {
	claims, room := s.roomAction(w, r, auth.Read, "snapshot")
	if claims == nil {
		return
	}
	var at eventlog.ID
	if v := r.URL.Query().Get("at"); v != "" {
		var err error
		if at, err = eventlog.ParseID(v); err != nil {
			writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "at: %v", err)
			return
		}
	}
	snap, missing, err := s.snapshotAt(r, room, at)
	if err != nil {
		s.httpFail(w, "snapshot", room, err)
		return
	}
	if missing != "" {
		writeAPIError(w, http.StatusNotFound, wire.CodeNotFound, "%s", missing)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(jsonCodec.appendEvent(nil, &snap), '\n'))
}

// snapshotAt finds room's latest snapshot at or before at (the zero id: the latest of all):
// the room's latest when that is at or before at (one lookup), else the first found reading
// back from at, up to maxSnapshotSearch events and never past the room's floor. missing says
// why there is none.
func (s *Server) snapshotAt(r *http.Request, room string, at eventlog.ID) (snap eventlog.Event, missing string, err error) {
	ctx := r.Context()
	latest, found, err := s.log.LatestSnapshot(ctx, room)
	switch {
	case err != nil:
		return snap, "", err
	case at.IsZero() && !found:
		return snap, fmt.Sprintf("room %q has no snapshot", room), nil
	case at.IsZero():
		return latest, "", nil
	}
	if ok, err := s.log.Contains(ctx, room, at); err != nil || !ok {
		return snap, fmt.Sprintf("room %q has no event %s (never, or compacted away)", room, at), err
	}
	if found && latest.ID.Compare(at) <= 0 {
		return latest, "", nil
	}
	before := at.Next()
	for read := 0; read < maxSnapshotSearch; {
		evs, err := s.log.ReadBefore(ctx, room, before, min(1000, maxSnapshotSearch-read))
		if err != nil || len(evs) == 0 {
			return snap, fmt.Sprintf("room %q has no snapshot at or before %s", room, at), err
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Kind == eventlog.KindSnapshot {
				return evs[i], "", nil
			}
		}
		read += len(evs)
		before = evs[0].ID
	}
	return snap, fmt.Sprintf("room %q has no snapshot among the %d events at or before %s", room, maxSnapshotSearch, at), nil
}
