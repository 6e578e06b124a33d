package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/roomlog/roomlog/wire"
)

// frame is a decoded server frame.
type frame = *wire.ServerFrame

// errorOf is the error an error frame carries.
func errorOf(f frame) *Error {
	return &Error{Code: f.Code, Message: f.Message, Room: f.Room, Head: f.Head}
}

// conn is one WebSocket connection of a Client.
type conn struct {
	ws    *websocket.Conn
	codec wire.Codec
	wmu   sync.Mutex

	refreshMu sync.Mutex
	refreshAt time.Time // when to refresh the token; zero when no refresh is due

	// keyRetention is the server's key retention from welcome; zero when it did not say (an
	// older server), and then every entry is resent.
	keyRetention time.Duration
}

// setToken schedules the refresh of tok: a third of its lifetime before it expires, at most 30s
// before.
func (cn *conn) setToken(tok string) {
	exp, ok := tokenExpiry(tok)
	cn.refreshMu.Lock()
	defer cn.refreshMu.Unlock()
	if !ok {
		cn.refreshAt = time.Time{}
		return
	}
	lead := min(30*time.Second, time.Until(exp)/3)
	cn.refreshAt = exp.Add(-lead)
}

// refreshDue reports (once) that the token should be refreshed now.
func (cn *conn) refreshDue() bool {
	cn.refreshMu.Lock()
	defer cn.refreshMu.Unlock()
	if cn.refreshAt.IsZero() || time.Now().Before(cn.refreshAt) {
		return false
	}
	cn.refreshAt = time.Time{}
	return true
}

// write sends a client frame.
func (cn *conn) write(f wire.ClientFrame) error {
	b, err := cn.codec.Encode(f)
	if err != nil {
		return err
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return cn.ws.WriteMessage(cn.codec.MessageType(), b)
}

func (cn *conn) read() (frame, error) {
	mt, b, err := cn.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	return decodeFrame(mt, b)
}

// decodeFrame decodes a server frame by its message type: text is JSON, binary MessagePack.
func decodeFrame(mt int, b []byte) (frame, error) {
	codec := wire.JSON
	if mt == websocket.BinaryMessage {
		codec = wire.MessagePack
	}
	f := &wire.ServerFrame{}
	if err := codec.DecodeServer(b, f); err != nil {
		return nil, fmt.Errorf("roomlog: %v", err)
	}
	return f, nil
}

// ErrRefused is wrapped by connection errors that retrying with the same settings will not fix
// (the server refused the token). They also wrap an *Error with the bye's code and reason.
var ErrRefused = errors.New("refused by the server")

// refusal is the error of a bye refusing a hello: ErrRefused and the bye as an *Error.
type refusal struct{ bye *Error }

func (r refusal) Error() string {
	return fmt.Sprintf("roomlog: %v: %s: %s", ErrRefused, r.bye.Code, r.bye.Message)
}
func (r refusal) Unwrap() []error { return []error{ErrRefused, r.bye} }

// connect dials, says hello and waits for welcome.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	tok, err := c.opts.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("roomlog: token: %w", err)
	}
	codec := wire.JSON
	if c.opts.Codec == MessagePack {
		codec = wire.MessagePack
	}
	d := *c.opts.Dialer
	d.Subprotocols = []string{codec.Subprotocol()}
	hdr := http.Header{}
	if c.opts.Origin != "" {
		hdr.Set("Origin", c.opts.Origin)
	}
	ws, _, err := d.DialContext(ctx, c.url, hdr)
	if err != nil {
		return nil, fmt.Errorf("roomlog: dial %s: %w", c.url, err)
	}
	cn := &conn{ws: ws, codec: codec}
	if err := cn.write(wire.ClientFrame{Type: wire.TypeHello, Token: tok, Session: c.opts.Session, Client: "roomlog-go/1"}); err != nil {
		ws.Close()
		return nil, err
	}
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	f, err := cn.read()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("roomlog: waiting for welcome: %w", err)
	}
	switch f.Type {
	case wire.TypeWelcome:
	case wire.TypeBye:
		ws.Close()
		return nil, refusal{&Error{Code: f.Code, Message: f.Reason}}
	default:
		ws.Close()
		return nil, fmt.Errorf("roomlog: expected welcome, got a %q frame", f.Type)
	}
	ws.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.user = f.User
	c.mu.Unlock()
	if f.KeyRetentionMS > 0 {
		cn.keyRetention = time.Duration(f.KeyRetentionMS) * time.Millisecond
	}
	cn.setToken(tok)
	return cn, nil
}

// serve runs one connection: it rejoins the rooms, resends the outbox, then reads until the
// connection ends. It returns how long the server asked to wait before reconnecting.
func (c *Client) serve(cn *conn) (reconnectAfter time.Duration) {
	// Every write until the resend is done happens here, in order: rejoin, then the outbox.
	c.sendMu.Lock()
	c.mu.Lock()
	c.conns++
	rooms := make([]*Room, 0, len(c.rooms))
	for _, r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	for _, r := range rooms {
		if err := cn.write(r.joinFrame()); err != nil {
			break
		}
	}
	c.handBackUncertain(cn.keyRetention)
	c.mu.Lock()
	out := append([]*pending(nil), c.outbox...)
	c.mu.Unlock()
	for _, p := range out {
		if err := cn.write(p.frame()); err != nil {
			break
		}
	}
	c.mu.Lock()
	c.conn = cn
	close(c.connected)
	c.mu.Unlock()
	c.sendMu.Unlock()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.tick(cn, stop) })
	reconnectAfter = c.readLoop(cn)

	close(stop)
	wg.Wait()
	cn.ws.Close()
	c.mu.Lock()
	c.conn = nil
	c.connected = make(chan struct{})
	for ref, ch := range c.calls {
		close(ch) // calls on this connection fail; publishes stay in the outbox
		delete(c.calls, ref)
	}
	c.mu.Unlock()
	return reconnectAfter
}

// tick sends batched acks and refreshes the token before it expires, while cn lives.
func (c *Client) tick(cn *conn, stop chan struct{}) {
	t := time.NewTicker(c.opts.AckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-c.ctx.Done():
			cn.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			cn.ws.Close()
			return
		case <-t.C:
			c.sendAcks(cn)
			if cn.refreshDue() {
				go c.refresh(cn)
			}
		}
	}
}

// refresh fetches a new token and sends it on cn.
func (c *Client) refresh(cn *conn) {
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	tok, err := c.opts.Token(ctx)
	if err != nil {
		c.logger.Warn("roomlog token refresh failed", "err", err)
		return
	}
	if _, err := c.call(ctx, wire.ClientFrame{Type: wire.TypeRefresh, Token: tok}); err != nil {
		c.logger.Warn("roomlog token refresh refused", "err", err)
		return
	}
	cn.setToken(tok)
}

// readLoop handles frames until the connection ends.
func (c *Client) readLoop(cn *conn) time.Duration {
	for {
		mt, b, err := cn.ws.ReadMessage()
		if err != nil {
			c.connectionLost(err)
			return 0
		}
		if mt == websocket.TextMessage {
			if e, ok := wire.ParseEventFrame(b); ok {
				c.deliverEvent(eventOf(e))
				continue
			}
		}
		f, err := decodeFrame(mt, b)
		if err != nil {
			c.logger.Warn("roomlog client got an undecodable frame", "err", err)
			continue
		}
		switch f.Type {
		case wire.TypeEvent:
			c.deliverEvent(eventOf(f.Event()))
		case wire.TypeJoined:
			c.joined(f)
		case wire.TypeSynced:
			if r := c.room(f.Room); r != nil {
				r.setSynced()
			}
		case wire.TypeAck:
			c.acked(f)
		case wire.TypeError:
			switch {
			case strings.HasPrefix(f.Ref, "join:"):
				c.joinFailed(f)
			case !c.publishFailed(f):
				c.answer(f)
			}
		case wire.TypeBye:
			c.logger.Info("roomlog server said bye", "code", f.Code, "reason", f.Reason)
			return time.Duration(f.ReconnectMS) * time.Millisecond
		case wire.TypeSignal:
			c.signal(f)
		case wire.TypeRemoved:
			c.removed(f)
		case wire.TypeLeft:
			if f.Ref == "" { // the server left the room for us (token refresh)
				c.dropRoom(f.Room)
			}
			c.answer(f)
		default: // ok, pong, history
			c.answer(f)
		}
	}
}

// connectionLost logs why the connection ended, with the close code and reason when the server
// sent a close frame: an unexplained reconnect (and the resends it causes) is then traceable.
func (c *Client) connectionLost(err error) {
	if c.ctx.Err() != nil {
		return // Close ended it
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.logger.Info("roomlog connection closed by the server; reconnecting", "code", ce.Code, "reason", ce.Text)
		return
	}
	c.logger.Info("roomlog connection lost; reconnecting", "err", err)
}

// answer hands a frame with a ref to the call waiting for it.
func (c *Client) answer(f frame) {
	ref := f.Ref
	if ref == "" {
		return
	}
	c.mu.Lock()
	ch := c.calls[ref]
	delete(c.calls, ref)
	c.mu.Unlock()
	if ch != nil {
		ch <- f
	}
}
