package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/roomlog/roomlog/eventlog"
)

// Membership across nodes. A session's marker (P.sess.R.S) records its join, the node serving
// it and its latest presence; the join, leave and presence events write it in the batch of the
// event. A session that reconnects to another node within its grace period finds its marker
// joined: the new node takes it over by rewriting the marker, and writes no join; the node it
// left then writes no leave, the marker being no longer its own. Every rewrite is conditional on
// the marker's sequence as read, so two nodes never both take a session over.

// sessionMarker is the data of a membership marker; empty data is a session that left.
type sessionMarker struct {
	User     string          `json:"user"`
	Session  string          `json:"session"`
	Joined   eventlog.ID     `json:"joined"`
	Node     string          `json:"node"`
	Presence json.RawMessage `json:"presence,omitempty"`
}

// memberState is a session's marker as a batch being planned sees it.
type memberState struct {
	marker  *sessionMarker // nil: not a member
	seq     uint64         // the marker's stream sequence (0: none), when read from the stream
	inBatch bool           // rewritten earlier in this batch: seq is not known yet
}

func isMembership(kind string) bool {
	return kind == eventlog.KindJoin || kind == eventlog.KindLeave || kind == eventlog.KindPresence
}

// membershipPlan is what a join, leave or presence does to its session's marker: with an event,
// marker makes the marker published with it; without one (skip), the op's outcome, and alone a
// marker rewrite to publish (a takeover), if any.
type membershipPlan struct {
	marker func(eventlog.ID) *nats.Msg
	leaves string // the session's subject when marker is a leave marker (forget.go)
	skip   *eventlog.AppendResult
	alone  *nats.Msg
}

// planMembership decides what op (a join, leave or presence) does to its session's marker.
func (l *Log) planMembership(ctx context.Context, op *appendOp, states map[string]*memberState) (membershipPlan, error) {
	req := &op.req
	subj := l.subj.session(req.Room, req.User, req.Session)
	st := states[subj]
	if st == nil {
		var err error
		if st, err = l.memberState(ctx, subj); err != nil {
			return membershipPlan{}, err
		}
		states[subj] = st
	}
	skip := func(alone *nats.Msg) (membershipPlan, error) {
		ev := eventlog.Event{Room: req.Room, Kind: req.Kind, User: req.User, Session: req.Session}
		if st.marker != nil {
			ev.ID, ev.Body = st.marker.Joined, st.marker.Presence
		}
		return membershipPlan{skip: &eventlog.AppendResult{Event: ev, Duplicate: true}, alone: alone}, nil
	}
	next := &sessionMarker{User: req.User, Session: req.Session, Node: l.node}
	switch req.Kind {
	case eventlog.KindJoin:
		if st.marker != nil {
			// A member already, served by another node (or by this one before): take it over.
			taken := *st.marker
			taken.Node = l.node
			if len(req.Body) > 0 {
				taken.Presence = req.Body
			}
			alone := l.memberMsg(subj, st, &taken)
			st.marker, st.inBatch = &taken, true
			return skip(alone)
		}
		next.Presence = req.Body
	case eventlog.KindLeave:
		switch {
		case st.marker == nil:
			return skip(nil) // left already
		case op.sweep != nil && (st.inBatch || st.seq != *op.sweep):
			return skip(nil) // the session moved on since the sweeper looked
		case op.sweep == nil && st.marker.Node != l.node:
			return skip(nil) // another node took the session over
		}
		next = nil
	case eventlog.KindPresence:
		if st.marker == nil {
			return membershipPlan{}, nil // not a member by the log: the event alone
		}
		*next = *st.marker
		next.Presence = req.Body
	}
	build := func(id eventlog.ID) *nats.Msg {
		if next != nil && req.Kind == eventlog.KindJoin {
			next.Joined = id
		}
		m := l.memberMsg(subj, st, next)
		st.marker, st.inBatch = next, true
		return m
	}
	if next == nil {
		return membershipPlan{marker: build, leaves: subj}, nil
	}
	return membershipPlan{marker: build}, nil
}

// memberMsg is the marker message that moves a session from st to next (nil: left).
func (l *Log) memberMsg(subj string, st *memberState, next *sessionMarker) *nats.Msg {
	m := nats.NewMsg(subj)
	if !st.inBatch {
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(st.seq, 10))
	}
	if next != nil {
		m.Data, _ = json.Marshal(next)
	}
	return m
}

// memberState reads a session's marker from the stream leader.
func (l *Log) memberState(ctx context.Context, subj string) (*memberState, error) {
	m, err := l.leader(ctx, getRequest{LastFor: subj})
	if err != nil || m == nil {
		return &memberState{}, err
	}
	st := &memberState{seq: m.seq}
	if len(m.data) > 0 {
		st.marker = &sessionMarker{}
		if err := json.Unmarshal(m.data, st.marker); err != nil {
			return nil, fmt.Errorf("%w: membership marker %d: %v", eventlog.ErrCorrupt, m.seq, err)
		}
	}
	return st, nil
}

// RoomMembers implements eventlog.Membership: one direct get of the last marker of each of the
// room's sessions. A room with more markers than one get may answer (every session that ever
// joined keeps one) is read through an ordered consumer instead.
func (l *Log) RoomMembers(ctx context.Context, room string) ([]eventlog.Member, error) {
	if err := eventlog.CheckRead(room, 1); err != nil {
		return nil, err
	}
	if l.isClosed() {
		return nil, eventlog.ErrClosed
	}
	var out []eventlog.Member
	add := func(data []byte, where string) error {
		if len(data) == 0 {
			return nil // left
		}
		var sm sessionMarker
		if err := json.Unmarshal(data, &sm); err != nil {
			return fmt.Errorf("%w: membership marker %s: %v", eventlog.ErrCorrupt, where, err)
		}
		out = append(out, eventlog.Member{Session: eventlog.Session{Room: room, User: sm.User, Session: sm.Session, Joined: sm.Joined}, Presence: sm.Presence})
		return nil
	}
	page, err := l.direct(ctx, getRequest{MultiLast: []string{l.subj.sessions(room)}, Batch: maxMembersListed})
	var status *errStatus
	if errors.As(err, &status) && status.status == "413" { // too many markers for one get
		err = l.lastPerSubject(ctx, l.subj.sessions(room), func(m jetstream.Msg) error { return add(m.Data(), m.Subject()) })
		if err != nil {
			return nil, fmt.Errorf("eventlog/jetstream: members of %q: %w", room, err)
		}
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: members of %q: %w", room, err)
	}
	for _, m := range page {
		if err := add(m.data, strconv.FormatUint(m.seq, 10)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxMembersListed is the most markers one direct get returns: JetStream answers a
// multi-subject get matching more with 413 Too Many Results.
const maxMembersListed = 1024
