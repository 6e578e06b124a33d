package jetstream

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/roomlog/roomlog/eventlog"
)

// subjects names the stream's subjects under one prefix (see the package comment).
type subjects struct {
	prefix string
}

func roomToken(room string) string { return base64.RawURLEncoding.EncodeToString([]byte(room)) }

func hashToken(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func (s subjects) events(room string) string { return s.prefix + ".ev." + roomToken(room) }
func (s subjects) allEvents() string         { return s.prefix + ".ev.>" }
func (s subjects) key(room, user, key string) string {
	return s.prefix + ".key." + hashToken(room, user, key)
}

// watermark is the room's key watermark (keys.go): a token more than a key marker's, so the two
// never meet.
func (s subjects) watermark(room string) string { return s.prefix + ".key.w." + roomToken(room) }
func (s subjects) snapshot(room string) string  { return s.prefix + ".snap." + roomToken(room) }
func (s subjects) floor(room string) string     { return s.prefix + ".floor." + roomToken(room) }
func (s subjects) session(room, user, session string) string {
	return s.prefix + ".sess." + roomToken(room) + "." + hashToken(user, session)
}
func (s subjects) sessions(room string) string { return s.prefix + ".sess." + roomToken(room) + ".*" }
func (s subjects) allSessions() string         { return s.prefix + ".sess.>" }

// live is where the stream republishes the headers of every stored event, for the watchers of
// every node.
func (s subjects) live() string { return s.prefix + ".live.>" }

// stored are the subjects the stream keeps.
func (s subjects) stored() []string {
	return []string{s.prefix + ".ev.>", s.prefix + ".key.>", s.prefix + ".snap.>", s.prefix + ".floor.>", s.prefix + ".sess.>"}
}

// roomOf decodes the room of an event subject (P.ev.R, or P.live.R as republished).
func (s subjects) roomOf(subject string) (string, error) {
	i := strings.LastIndexByte(subject, '.')
	b, err := base64.RawURLEncoding.DecodeString(subject[i+1:])
	if err != nil || i < 0 {
		return "", fmt.Errorf("subject %q does not name a room", subject)
	}
	room := string(b)
	if err := eventlog.ValidRoom(room); err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return room, nil
}
