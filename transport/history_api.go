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

// Bounds of GET /v1/rooms/{room}/events: a page holds at most maxPageEvents events and
// maxPageBytes bytes of them (at least one event), so a reader fetching a long history asks a
// few large pages instead of many frames' worth.
const (
	defaultPageEvents = 100
	maxPageEvents     = 10000
	maxPageBytes      = 4 << 20
)

// maxSnapshotSearch bounds the events GET /v1/rooms/{room}/snapshot?at= reads back from at to
// find a snapshot.
const maxSnapshotSearch = 100000

// roomPage is the answer of GET /v1/rooms/{room}/events.
type roomPage struct {
	Room   string            `json:"room"`
	Events []json.RawMessage `json:"events"`
	// More: events of the range after the last of Events were left out (by limit or by the
	// page's byte bound); ask again with after set to its id.
	More bool `json:"more"`
	// CursorTooOld: a compaction removed events after the page's after (the room's events
	// before and at Floor are gone by design); Events starts after Floor.
	CursorTooOld bool   `json:"cursor_too_old,omitempty"`
	Floor        string `json:"floor,omitempty"`
}

// apiRoomEvents answers a page of a room's events (read permission or admin): those after the
// id after and before the id until (both optional), oldest first.
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
	for i, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, wire.CodeBadFrame, "%s: %v", []string{"after", "until", "limit", "max_body"}[i], err)
			return
		}
	}
	page := roomPage{Room: room}
	floor, err := s.log.Floor(r.Context(), room)
	if err != nil {
		s.httpFail(w, "read", room, err)
		return
	}
	if !floor.ID.IsZero() && after.Compare(floor.ID) < 0 {
		page.CursorTooOld, page.Floor = true, floor.ID.String()
	}
	// One more than asked says whether more follow.
	evs, err := s.log.ReadAfter(r.Context(), room, after, limit+1)
	if err != nil {
		s.httpFail(w, "read", room, err)
		return
	}
	page.More = len(evs) > limit
	evs = evs[:min(len(evs), limit)]
	size := 0
	for i := range evs {
		if !until.IsZero() && evs[i].ID.Compare(until) >= 0 {
			page.More = false // the range ends here
			break
		}
		b := appendPageEvent(evs[i], maxBody)
		if size += len(b); size > maxPageBytes && len(page.Events) > 0 {
			page.More = true
			break
		}
		page.Events = append(page.Events, b)
	}
	if page.Events == nil {
		page.Events = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, page)
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
