// Package actions carries the actions taken on live sessions (removing a user from a room,
// disconnecting a user) to every node that serves sessions: each action is an event in the log's
// system room Room, and every node follows the room and applies the actions it did not take
// itself to its own sessions. On one node it is only a record; on JetStream it is how an action
// taken through one node reaches the sessions of all.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/follow"
)

// Room is the system room the actions are logged in.
const Room = auth.SystemRoomPrefix + "actions"

// Kinds of action events.
const (
	KindRemove     = "remove"
	KindDisconnect = "disconnect"
)

// Action is one action on live sessions.
type Action struct {
	Kind   string `json:"kind"`           // KindRemove or KindDisconnect
	Room   string `json:"room,omitempty"` // KindRemove: the room
	User   string `json:"user"`
	Reason string `json:"reason,omitempty"`
	By     string `json:"by"` // the administrator
}

// Log logs actions and follows those other nodes take. The zero value is not usable: Follow.
type Log struct {
	log      eventlog.Log
	apply    func(Action)
	follower *follow.Follower

	mu   sync.Mutex
	mine map[eventlog.ID]bool // actions this node took and applied itself
}

// Follow starts following the actions logged in log after now (earlier ones concern sessions
// long gone), calling apply with each action another node takes, in log order.
func Follow(ctx context.Context, log eventlog.Log, apply func(Action), logger *slog.Logger) (*Log, error) {
	head, err := log.Head(ctx, Room)
	if err != nil {
		return nil, fmt.Errorf("actions: %w", err)
	}
	l := &Log{log: log, apply: apply, mine: map[eventlog.ID]bool{}}
	if l.follower, err = follow.Start(ctx, log, Room, head.ID, l.applyEvent, nil, logger); err != nil {
		return nil, fmt.Errorf("actions: %w", err)
	}
	return l, nil
}

// applyEvent applies an action event another node logged.
func (l *Log) applyEvent(ev *eventlog.Event) {
	l.mu.Lock() // waits for a Take of this node to mark its event
	mine := l.mine[ev.ID]
	delete(l.mine, ev.ID)
	l.mu.Unlock()
	var a Action
	if !mine && json.Unmarshal(ev.Body, &a) == nil {
		l.apply(a)
	}
}

// Take logs a, which this node applies itself: the others apply it as they read it.
func (l *Log) Take(ctx context.Context, a Action) error {
	if a.Kind != KindRemove && a.Kind != KindDisconnect {
		return errors.New("actions: unknown kind " + a.Kind)
	}
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	// Held across the append, so that the follower cannot apply the event before it is marked
	// mine.
	l.mu.Lock()
	defer l.mu.Unlock()
	res, err := l.log.Append(ctx, eventlog.AppendRequest{Room: Room, User: a.By, Kind: a.Kind, Body: body, System: true})
	if err != nil {
		return err
	}
	l.mine[res.Event.ID] = true
	return nil
}

// Close stops following. It must be called once, before the log is closed.
func (l *Log) Close() { l.follower.Close() }
