package eventlog

import "time"

// The append rules, written once. Every backend applies an append the same way: a key seen
// within the retention makes a duplicate, an Expect that is not the room's head makes a
// conflict, and anything else becomes a new event chained to the room's head, which moves the
// room's head, remembers the key, keeps the session index in step with joins and leaves and
// points the room at its latest snapshot. ApplyAppend is that order; a backend supplies only its
// storage of each part, as an AppendTarget.
//
// A backend that plans a batch of appends against a remote store (eventlog/jetstream) applies
// the same rules with CheckExpect and NewEvent, as its requests cannot wait for a lookup each.

// DefaultKeyRetention is how long a backend remembers idempotency keys unless told otherwise.
const DefaultKeyRetention = 24 * time.Hour

// AppendTarget is one backend's storage, as one write (a transaction, or a lock held) sees it,
// for ApplyAppend. Its methods see the writes ApplyAppend made through it before.
type AppendTarget interface {
	// FindKey returns the event first appended with req's (room, user, key), when the key is
	// still remembered. An event a compaction removed since is returned with only its ID and
	// Room set.
	FindKey(req *AppendRequest) (ev Event, found bool, err error)
	// Head is the room's head: the zero Head for a room without events.
	Head(room string) (Head, error)
	// PutEvent stores ev, whose record is rec (its hash filled in), as the room's newest event;
	// head is the room's head after it.
	PutEvent(ev *Event, rec []byte, head Head) error
	// PutKey remembers that ev was appended with its key (ev.Key is not empty).
	PutKey(ev *Event) error
	// PutSession records a join (joined) or removes the session a leave ends.
	PutSession(s Session, joined bool) error
	// PutSnapshot points the room at ev, its newest snapshot.
	PutSnapshot(ev *Event) error
}

// ApplyAppend applies req (normalized) to t, taking a new event's id from ids. A refusal (a
// *ConflictError) is returned as refused and changes nothing; err is a storage failure, after
// which the write must be abandoned, as t may hold part of it.
func ApplyAppend(t AppendTarget, req *AppendRequest, ids *IDSource) (res AppendResult, refused, err error) {
	if req.Key != "" {
		ev, found, err := t.FindKey(req)
		if err != nil || found {
			return AppendResult{Event: ev, Duplicate: found}, nil, err
		}
	}
	head, err := t.Head(req.Room)
	if err != nil {
		return AppendResult{}, nil, err
	}
	if refused := CheckExpect(req, head); refused != nil {
		return AppendResult{}, refused, nil
	}
	ev, rec, head := NewEvent(req, ids.Next(), head)
	if err := t.PutEvent(&ev, rec, head); err != nil {
		return AppendResult{}, nil, err
	}
	if req.Key != "" {
		if err := t.PutKey(&ev); err != nil {
			return AppendResult{}, nil, err
		}
	}
	switch req.Kind {
	case KindJoin, KindLeave:
		s := Session{Room: ev.Room, User: ev.User, Session: ev.Session, Joined: ev.ID}
		err = t.PutSession(s, req.Kind == KindJoin)
	case KindSnapshot:
		err = t.PutSnapshot(&ev)
	}
	return AppendResult{Event: ev}, nil, err
}

// CheckExpect returns the conflict of a conditional append with a room whose head is head, or
// nil when req has no Expect or its Expect is the head.
func CheckExpect(req *AppendRequest, head Head) error {
	if req.Expect != nil && *req.Expect != head.ID {
		return &ConflictError{Room: req.Room, Head: head.ID}
	}
	return nil
}

// NewEvent makes the event req (normalized) becomes as id, after head: the event, its record with
// the hash chaining it to head, and the room's head after it. The event's strings and body are
// req's.
func NewEvent(req *AppendRequest, id ID, head Head) (Event, []byte, Head) {
	rec := EncodeRecord(make([]byte, 0, 64+len(req.Body)), req)
	hash := ChainRecord(rec, &head.Hash, req.Room, id)
	ev := Event{
		ID: id, Room: req.Room, Kind: req.Kind, User: req.User, Session: req.Session,
		Key: req.Key, Body: req.Body, Hash: hash,
	}
	return ev, rec, Head{ID: id, Hash: hash, Count: head.Count + 1}
}
