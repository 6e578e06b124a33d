// Package revocation keeps the token revocations: each is an event in a system room of the
// event log (Room), so it is as durable as the log, survives restarts, and reaches every node
// that shares the log (each watches the room). A List answers auth.Revocations from them, and
// drops a revocation once the tokens it covers could no longer be valid.
package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/follow"
)

// Room is the system room the revocations are logged in.
const Room = auth.SystemRoomPrefix + "revocations"

// Kind is the kind of a revocation event.
const Kind = "revocation"

// Revocation revokes the token with the id JTI, or every token of User issued before
// IssuedBefore (a token without iat counts as issued before), until Expires.
type Revocation struct {
	JTI          string    `json:"jti,omitempty"`
	User         string    `json:"user,omitempty"`
	IssuedBefore time.Time `json:"issued_before,omitzero"`
	Expires      time.Time `json:"expires,omitzero"` // derived from At when read (bound), never stored
	By           string    `json:"by,omitempty"`     // who revoked
	At           time.Time `json:"at"`               // when (the event's time)
}

// ErrBadRevocation is returned by Revoke for a request that names neither a jti nor a user and a
// time, or both.
var ErrBadRevocation = errors.New("a revocation names a jti, or a user and issued_before")

// List is the revocations in force. Its zero value is not usable: Open it.
type List struct {
	log      eventlog.Log
	maxTTL   time.Duration
	now      func() time.Time
	follower *follow.Follower

	mu     sync.Mutex
	byJTI  map[string]Revocation
	byUser map[string][]Revocation
}

// Open reads the revocations logged in log and keeps reading new ones (those other nodes append
// too) until Close; onChange (may be nil) is called after new ones are read, so that live
// connections are checked again. maxTokenTTL bounds how long a token is valid after it is
// issued (auth.Config.MaxTTL): a revocation is kept that long.
func Open(ctx context.Context, log eventlog.Log, maxTokenTTL time.Duration, onChange func()) (*List, error) {
	if maxTokenTTL <= 0 {
		return nil, errors.New("revocation: maxTokenTTL must be positive")
	}
	l := &List{log: log, maxTTL: maxTokenTTL, now: time.Now, byJTI: map[string]Revocation{}, byUser: map[string][]Revocation{}}
	f, err := follow.Start(ctx, log, Room, eventlog.ID{}, l.apply, onChange, slog.Default())
	if err != nil {
		return nil, fmt.Errorf("revocation: reading %s: %w", Room, err)
	}
	l.follower = f
	return l, nil
}

func (l *List) apply(ev *eventlog.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applyLocked(ev)
}

func (l *List) applyLocked(ev *eventlog.Event) {
	if ev.Kind != Kind {
		return
	}
	var r Revocation
	if json.Unmarshal(ev.Body, &r) != nil {
		return
	}
	r.At = ev.Time()
	l.bound(&r)
	switch {
	case r.JTI != "":
		l.byJTI[r.JTI] = r
	case r.User != "":
		l.byUser[r.User] = append(l.byUser[r.User], r)
	}
}

// Close stops following the room. It must be called once, before the log is closed.
func (l *List) Close() { l.follower.Close() }

// Revoked implements auth.Revocations.
func (l *List) Revoked(c *auth.Claims) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.byJTI[c.ID]; ok && c.ID != "" && now.Before(r.Expires) {
		return true
	}
	for _, r := range l.byUser[c.Subject] {
		if now.Before(r.Expires) && (c.IssuedAt == nil || c.IssuedAt.Time.Before(r.IssuedBefore)) {
			return true
		}
	}
	return false
}

// Revoke logs r (JTI, or User and IssuedBefore, not in the future) as revoked by by, until the
// tokens it covers could no longer be valid: maxTokenTTL after now for a jti, after
// IssuedBefore for a user. It
// returns once the revocation is durable; this List applies it at once, the others of the log
// as they read it.
func (l *List) Revoke(ctx context.Context, r Revocation, by string) (Revocation, error) {
	switch {
	case (r.JTI == "") == (r.User == ""), r.User != "" && r.IssuedBefore.IsZero(), r.JTI != "" && !r.IssuedBefore.IsZero():
		return Revocation{}, ErrBadRevocation
	case len(r.JTI) > 256:
		return Revocation{}, fmt.Errorf("%w: the jti is over 256 bytes", ErrBadRevocation)
	}
	if r.User != "" {
		if err := eventlog.CheckUser(r.User); err != nil {
			return Revocation{}, fmt.Errorf("%w: %v", ErrBadRevocation, err)
		}
		if r.IssuedBefore.After(l.now().Add(time.Minute)) {
			return Revocation{}, fmt.Errorf("%w: issued_before is in the future", ErrBadRevocation)
		}
	}
	r.By, r.At, r.Expires = by, time.Time{}, time.Time{}
	body, err := json.Marshal(r)
	if err != nil {
		return Revocation{}, err
	}
	res, err := l.log.Append(ctx, eventlog.AppendRequest{Room: Room, User: by, Kind: Kind, Body: body, System: true})
	if err != nil {
		return Revocation{}, err
	}
	if _, err := l.follower.CatchUp(ctx); err != nil {
		return Revocation{}, err
	}
	r.At = res.Event.Time()
	l.bound(&r)
	return r, nil
}

// bound sets r's lifetime from when it was made (r.At), not from what its event's body says
// (the room held client events before it was the server's own): a user revocation covers tokens
// issued before it was made at the latest, and every revocation ends once the tokens it covers
// could no longer be valid.
func (l *List) bound(r *Revocation) {
	if r.User != "" && (r.IssuedBefore.IsZero() || r.IssuedBefore.After(r.At)) {
		r.IssuedBefore = r.At
	}
	r.Expires = r.At.Add(l.maxTTL)
	if r.User != "" {
		r.Expires = r.IssuedBefore.Add(l.maxTTL)
	}
}

// Active lists the revocations in force, oldest first.
func (l *List) Active() []Revocation {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Revocation
	for jti, r := range l.byJTI {
		if now.Before(r.Expires) {
			out = append(out, r)
		} else {
			delete(l.byJTI, jti)
		}
	}
	for user, rs := range l.byUser {
		kept := rs[:0]
		for _, r := range rs {
			if now.Before(r.Expires) {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			delete(l.byUser, user)
		} else {
			l.byUser[user] = kept
		}
		out = append(out, kept...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
