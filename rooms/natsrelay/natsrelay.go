// Package natsrelay carries a hub's signals (rooms.Signal: awareness, cursors, typing) between
// roomlog nodes over core NATS, so that members of one room on different nodes see each other's.
// Signals are best effort, as on one node: core NATS delivers at most once.
//
// Every node publishes its members' signals on <prefix>.sig.<room> (the room base64url-encoded)
// and subscribes to <prefix>.sig.>: each node receives every room's signals and hands them to the
// room's subscribers it has, if any.
package natsrelay

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/roomlog/roomlog/rooms"
)

// Relay is a rooms.Relay on a NATS connection.
type Relay struct {
	nc     *nats.Conn
	prefix string
	origin string // this relay's id: its own signals come back to it, and are dropped
	sub    *nats.Subscription
	logger *slog.Logger
}

// message is a relayed signal on the wire.
type message struct {
	Origin  string          `json:"o"`
	Room    string          `json:"r"`
	User    string          `json:"u"`
	Session string          `json:"s"`
	Body    json.RawMessage `json:"b,omitempty"`
}

// New starts relaying signals on nc under prefix (jetstream.DefaultPrefix when empty); deliver
// is called with each signal from another node (Hub.Relayed). Close stops it.
func New(nc *nats.Conn, prefix string, deliver func(*rooms.Signal) int, logger *slog.Logger) (*Relay, error) {
	if prefix == "" {
		prefix = "roomlog"
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Relay{nc: nc, prefix: prefix, origin: nuid.Next(), logger: logger}
	sub, err := nc.Subscribe(prefix+".sig.>", func(m *nats.Msg) {
		var msg message
		if err := json.Unmarshal(m.Data, &msg); err != nil || msg.Origin == r.origin {
			return
		}
		deliver(&rooms.Signal{Room: msg.Room, User: msg.User, Session: msg.Session, Body: msg.Body})
	})
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, 16<<20) // past that, signals are dropped: they are best effort
	r.sub = sub
	if err := nc.Flush(); err != nil { // the server has the subscription when New returns
		sub.Unsubscribe()
		return nil, err
	}
	return r, nil
}

// Send implements rooms.Relay.
func (r *Relay) Send(s *rooms.Signal) {
	b, _ := json.Marshal(message{Origin: r.origin, Room: s.Room, User: s.User, Session: s.Session, Body: s.Body})
	subject := r.prefix + ".sig." + strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(s.Room)), "=")
	if err := r.nc.Publish(subject, b); err != nil {
		r.logger.Debug("signal not relayed", "room", s.Room, "err", err)
	}
}

// Close stops receiving signals from other nodes.
func (r *Relay) Close() error { return r.sub.Unsubscribe() }
