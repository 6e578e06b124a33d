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
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
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
	log    eventlog.Log
	apply  func(Action)
	logger *slog.Logger

	mu     sync.Mutex
	cursor eventlog.ID
	mine   map[eventlog.ID]bool // actions this node took and applied itself

	watch *eventlog.Watch
	stop  chan struct{}
	done  chan struct{}
}

// Follow starts following the actions logged in log after now (earlier ones concern sessions
// long gone), calling apply with each action another node takes, in log order.
func Follow(ctx context.Context, log eventlog.Log, apply func(Action), logger *slog.Logger) (*Log, error) {
	l := &Log{log: log, apply: apply, logger: logger, mine: map[eventlog.ID]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	l.watch = log.Watch(Room)
	head, err := log.Head(ctx, Room)
	if err != nil {
		l.watch.Close()
		return nil, fmt.Errorf("actions: %w", err)
	}
	l.cursor = head.ID
	go l.follow()
	return l, nil
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
	// Held across the append, so that the follower cannot read the event before it is marked mine.
	l.mu.Lock()
	defer l.mu.Unlock()
	res, err := l.log.Append(ctx, eventlog.AppendRequest{Room: Room, User: a.By, Kind: a.Kind, Body: body, System: true})
	if err != nil {
		return err
	}
	l.mine[res.Event.ID] = true
	return nil
}

func (l *Log) follow() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		case <-l.watch.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := l.catchUp(ctx)
		cancel()
		if err != nil && !errors.Is(err, eventlog.ErrClosed) {
			l.logger.Warn("cannot read the actions on live sessions", "err", err)
		}
	}
}

// catchUp applies the actions after the cursor that other nodes took.
func (l *Log) catchUp(ctx context.Context) error {
	for {
		l.mu.Lock()
		after := l.cursor
		l.mu.Unlock()
		evs, err := l.log.ReadAfter(ctx, Room, after, 100)
		if err != nil || len(evs) == 0 {
			return err
		}
		for i := range evs {
			l.mu.Lock()
			mine := l.mine[evs[i].ID]
			delete(l.mine, evs[i].ID)
			l.cursor = evs[i].ID
			l.mu.Unlock()
			var a Action
			if mine || json.Unmarshal(evs[i].Body, &a) != nil {
				continue
			}
			l.apply(a)
		}
	}
}

// Close stops following. It must be called once, before the log is closed.
func (l *Log) Close() {
	close(l.stop)
	l.watch.Close()
	<-l.done
}
