// Package client is roomlog's Go client. It makes the delivery guarantee effortless: it reconnects
// by itself, rejoins every room from the last event it delivered, so the application sees every
// event once and in order across any number of disconnects, and it keeps every publish in an
// outbox, under an idempotency key, until the server has acked it durably.
//
//	c, err := client.Dial(ctx, "ws://127.0.0.1:7070/v1/ws", client.Options{Token: tokens})
//	room, err := c.Join(ctx, "doc:42", client.JoinOptions{Handler: func(e client.Event) { ... }})
//	ack, err := c.Publish(ctx, "doc:42", "message", map[string]string{"text": "hi"})
package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/oklog/ulid/v2"

	"github.com/roomlog/roomlog/wire"
)

// Codec selects the wire encoding.
type Codec int

const (
	JSON        Codec = iota // roomlog.v1.json (the default)
	MessagePack              // roomlog.v1.msgpack
)

// Options configure a Client. Token is required.
type Options struct {
	// Token returns a token for the next connection or refresh. It is called again before the
	// current token expires.
	Token func(ctx context.Context) (string, error)
	// Session identifies this device or installation; keep it stable across restarts so that
	// membership and server-side cursors follow it. Default: a random id per Client.
	Session string
	Codec   Codec
	Origin  string
	Logger  *slog.Logger
	// Store keeps cursors and the outbox; default NewMemoryStore(). The client does not close
	// it.
	Store Store
	// Backoff bounds for reconnecting (exponential with full jitter). Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// AckInterval is how often delivered events are acked to the server and cursors saved.
	// Default 250ms.
	AckInterval time.Duration
	// Dialer dials the WebSocket; default a Dialer with a 10s handshake timeout.
	Dialer *websocket.Dialer
	// Uncertain receives the outbox entries the client will not resend because they are older
	// than the server's key retention (welcome's key_retention_ms, 24 h by default): the server
	// may have forgotten their keys, so a resend could append one a second time. Whether each
	// reached the log is unknown; the application decides (look for it in the room's history,
	// ask the user, publish it again). Their Publish or Wait, if still waiting, then returns an
	// error wrapping ErrDeliveryUncertain (Uncertain is called first). When nil, each is logged
	// as a warning and dropped.
	Uncertain func(Outgoing)
}

// Event is one event delivered to the application.
type Event struct {
	Room, ID, Kind, User, Session, Key string
	Time                               time.Time
	Body                               json.RawMessage
}

// Ack is the server's durable acknowledgment of a publish.
type Ack struct {
	Room, ID, Key string
	Duplicate     bool // the server had this key already (a resend)
}

// Error is an error frame from the server.
type Error struct {
	Code, Message, Room, Head string
}

func (e *Error) Error() string { return fmt.Sprintf("roomlog: %s: %s", e.Code, e.Message) }

// Temporary reports whether retrying may succeed (rate_limited, internal, unavailable).
func (e *Error) Temporary() bool { return wire.Temporary(e.Code) }

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("roomlog client closed")

// ErrNotConnected is returned by what is never queued (Room.Signal) while the client has no
// connection.
var ErrNotConnected = errors.New("roomlog client not connected")

// Client is a connection to a roomlog server that survives disconnects.
type Client struct {
	url    string
	opts   Options
	store  Store
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// sendMu orders every write: the outbox resend after a connect and new publishes go out in
	// the order they were made.
	//
	// Lock order: sendMu before mu; a Room's mu is taken with neither held (rooms are looked up
	// under mu, then locked), and neither is taken while a Room's mu is held.
	sendMu sync.Mutex

	mu        sync.Mutex
	conn      *conn // nil while disconnected
	connected chan struct{}
	user      string
	rooms     map[string]*Room
	outbox    []*pending // in key order
	calls     map[string]chan frame
	refSeq    int
	conns     int   // connections made, the first included
	stopErr   error // why the client stopped by itself (Err)
}

// Reconnects is the number of times the client has connected again after the first connection.
func (c *Client) Reconnects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.conns-1, 0)
}

type pending struct {
	o    Outgoing
	done chan result
}

type result struct {
	ack Ack
	err error
}

// Dial connects to the server at url (ws://host:port/v1/ws) and keeps the connection: it returns
// once the first connection is established, or with the first connection's error.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	if opts.Token == nil {
		return nil, errors.New("client: Options.Token is required")
	}
	if opts.Session == "" {
		opts.Session = "go-" + ulid.Make().String()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Store == nil {
		opts.Store = NewMemoryStore()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.AckInterval <= 0 {
		opts.AckInterval = 250 * time.Millisecond
	}
	if opts.Dialer == nil {
		opts.Dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 32 << 10}
	}
	c := &Client{
		url: url, opts: opts, store: opts.Store, logger: opts.Logger,
		done: make(chan struct{}), connected: make(chan struct{}),
		rooms: map[string]*Room{}, calls: map[string]chan frame{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	saved, err := c.store.Outgoing()
	if err != nil {
		return nil, err
	}
	for _, o := range saved {
		c.outbox = append(c.outbox, &pending{o: o, done: make(chan result, 1)})
	}
	first, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	go c.run(first)
	return c, nil
}

// Err is why the client stopped by itself (a revoked token its Token callback gave again,
// wrapping ErrRefused and an *Error with code token_revoked), or nil. Once it stopped, calls
// fail with ErrClosed; Close it.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopErr
}

// User is the user id the server welcomed this client as.
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Close leaves the connection (rooms are left by the server after its grace period), saves the
// cursors and returns. Publishes not yet acked stay in the Store's outbox.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	c.flushAcks()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.calls {
		close(ch)
	}
	c.calls = map[string]chan frame{}
	for _, p := range c.outbox {
		select {
		case p.done <- result{err: ErrClosed}:
		default:
		}
	}
	return nil
}

// run keeps the client connected until Close.
func (c *Client) run(first *conn) {
	defer close(c.done)
	cn := first
	attempt := 0
	for {
		if cn != nil {
			attempt = 0
			hint := c.serve(cn)
			if c.ctx.Err() != nil {
				return
			}
			if !c.sleep(max(hint, c.backoff(0))) {
				return
			}
		}
		var err error
		cn, err = c.connect(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			var refusal *Error
			if errors.As(err, &refusal) && refusal.Code == wire.CodeTokenRevoked {
				// The token callback was asked for this connection's token, and it is revoked
				// too: the application must sign the user in again. Stop, and say why.
				c.logger.Error("roomlog stopped: the token is revoked", "err", err)
				c.mu.Lock()
				c.stopErr = err
				c.mu.Unlock()
				c.cancel()
				return
			}
			attempt++
			c.logger.Debug("roomlog reconnect failed", "attempt", attempt, "err", err)
			if !c.sleep(c.backoff(attempt)) {
				return
			}
		}
	}
}

// backoff is exponential with full jitter: a random wait in [0, min(max, min*2^attempt)].
func (c *Client) backoff(attempt int) time.Duration {
	d := c.opts.MinBackoff << min(attempt, 20)
	if d > c.opts.MaxBackoff || d <= 0 {
		d = c.opts.MaxBackoff
	}
	return time.Duration(mrand.Int64N(int64(d) + 1))
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// nextRef returns a fresh ref for a call.
func (c *Client) nextRef(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refSeq++
	return fmt.Sprintf("%s%d", prefix, c.refSeq)
}

// call sends a frame with a ref on the current connection and waits for the answer with that
// ref. It fails if the connection drops first.
func (c *Client) call(ctx context.Context, f wire.ClientFrame) (frame, error) {
	ref := c.nextRef("c")
	f.Ref = ref
	ch := make(chan frame, 1)
	cn, err := c.waitConnected(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.calls[ref] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, ref)
		c.mu.Unlock()
	}()
	c.sendMu.Lock()
	err = cn.write(f)
	c.sendMu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, errors.New("roomlog: connection lost before the answer")
		}
		if r.Type == wire.TypeError {
			return nil, errorOf(r)
		}
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, ErrClosed
	}
}

// waitConnected returns the current connection, waiting for one.
func (c *Client) waitConnected(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ch := c.conn, c.connected
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// tokenExpiry reads a JWT's exp without verifying it (the server does that).
func tokenExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}

// newKey makes an idempotency key: a ULID, so that keys sort in the order publishes were made.
var keyEntropy = struct {
	sync.Mutex
	m *ulid.MonotonicEntropy
}{m: ulid.Monotonic(rand.Reader, 0)}

func newKey() string {
	keyEntropy.Lock()
	defer keyEntropy.Unlock()
	return ulid.MustNew(ulid.Now(), keyEntropy.m).String()
}
