// Package natsrelay carries a hub's signals (rooms.Signal: awareness, cursors, typing) between
// roomlog nodes over core NATS, so that members of one room on different nodes see each other's.
// Signals are best effort, as on one node: core NATS delivers at most once.
//
// Every node publishes its members' signals on <prefix>.sig.<room> (the room base64url-encoded),
// and subscribes to the subjects of the rooms it has subscribers of (rooms.RelayInterest), so a
// node receives the signals of its own rooms only, however many rooms and nodes there are. The
// subscriptions all deliver to one channel, read by one goroutine: a room costs a subscription,
// not a goroutine.
package natsrelay

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/roomlog/roomlog/rooms"
)

// Relay is a rooms.Relay and rooms.RelayInterest on a NATS connection.
type Relay struct {
	nc      *nats.Conn
	prefix  string
	origin  string // this relay's id: its own signals come back to it, and are dropped
	deliver func(*rooms.Signal) int
	logger  *slog.Logger

	in   chan *nats.Msg // every room's subscription delivers here
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	rooms  map[string]*interest
	closed bool
}

// interest is a room this node has subscribers of: its subscription, and how many feeds hold it.
type interest struct {
	sub  *nats.Subscription
	held int
}

// inboxSize bounds the signals received but not yet handed to the hub; past it NATS drops them
// (signals are best effort).
const inboxSize = 8192

// message is a relayed signal on the wire.
type message struct {
	Origin  string          `json:"o"`
	Room    string          `json:"r"`
	User    string          `json:"u"`
	Session string          `json:"s"`
	Body    json.RawMessage `json:"b,omitempty"`
}

// New starts relaying signals on nc under prefix (jetstream.DefaultPrefix when empty); deliver
// is called with each signal from another node (Hub.Relayed), for the rooms the hub has said it
// has subscribers of (Interest). Close stops it.
func New(nc *nats.Conn, prefix string, deliver func(*rooms.Signal) int, logger *slog.Logger) (*Relay, error) {
	if prefix == "" {
		prefix = "roomlog"
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Relay{nc: nc, prefix: prefix, origin: nuid.Next(), deliver: deliver, logger: logger,
		in: make(chan *nats.Msg, inboxSize), done: make(chan struct{}), rooms: map[string]*interest{}}
	r.wg.Go(r.run)
	return r, nil
}

func (r *Relay) subject(room string) string {
	return r.prefix + ".sig." + strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(room)), "=")
}

func (r *Relay) run() {
	for {
		select {
		case <-r.done:
			return
		case m := <-r.in:
			var msg message
			if err := json.Unmarshal(m.Data, &msg); err != nil || msg.Origin == r.origin {
				continue
			}
			r.deliver(&rooms.Signal{Room: msg.Room, User: msg.User, Session: msg.Session, Body: msg.Body})
		}
	}
}

// Send implements rooms.Relay.
func (r *Relay) Send(s *rooms.Signal) {
	b, _ := json.Marshal(message{Origin: r.origin, Room: s.Room, User: s.User, Session: s.Session, Body: s.Body})
	if err := r.nc.Publish(r.subject(s.Room), b); err != nil {
		r.logger.Debug("signal not relayed", "room", s.Room, "err", err)
	}
}

// Interest implements rooms.RelayInterest: the first interest in a room subscribes to its
// signals, and waits (a second at most) for the server to have the subscription, so that a
// signal sent after the hub's subscriber came reaches it; the last one ends it.
func (r *Relay) Interest(room string, on bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	in := r.rooms[room]
	subscribed := false
	if on {
		if in == nil {
			sub, err := r.nc.ChanSubscribe(r.subject(room), r.in)
			if err != nil {
				r.mu.Unlock()
				r.logger.Debug("signals of a room not received", "room", room, "err", err)
				return
			}
			in = &interest{sub: sub}
			r.rooms[room], subscribed = in, true
		}
		in.held++
	} else if in != nil {
		if in.held--; in.held == 0 {
			in.sub.Unsubscribe()
			delete(r.rooms, room)
		}
	}
	r.mu.Unlock()
	if subscribed && r.nc.IsConnected() {
		r.nc.FlushTimeout(time.Second)
	}
}

// Close stops receiving signals from other nodes.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for _, in := range r.rooms {
		in.sub.Unsubscribe()
	}
	r.rooms = nil
	r.mu.Unlock()
	close(r.done)
	r.wg.Wait()
	return nil
}
