package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"
)

// frame is a decoded frame: a JSON object or MessagePack map.
type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

func (f frame) err() *Error {
	return &Error{Code: f.str("code"), Message: f.str("message"), Room: f.str("room"), Head: f.str("head")}
}

// conn is one WebSocket connection of a Client.
type conn struct {
	ws    *websocket.Conn
	codec Codec
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

func (cn *conn) write(f frame) error {
	var b []byte
	var err error
	mt := websocket.TextMessage
	if cn.codec == MessagePack {
		m := make(map[string]any, len(f))
		for k, v := range f {
			if raw, ok := v.(json.RawMessage); ok {
				// Bodies and presence are JSON values; MessagePack carries them as values,
				// not as bytes.
				d := json.NewDecoder(bytes.NewReader(raw))
				d.UseNumber()
				var x any
				if err := d.Decode(&x); err != nil {
					return err
				}
				v = msgpackValue(x)
			}
			m[k] = v
		}
		b, err = msgpack.Marshal(m)
		mt = websocket.BinaryMessage
	} else {
		b, err = json.Marshal(f)
	}
	if err != nil {
		return err
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return cn.ws.WriteMessage(mt, b)
}

func (cn *conn) read() (frame, error) {
	mt, b, err := cn.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	return decodeFrame(mt, b)
}

func decodeFrame(mt int, b []byte) (frame, error) {
	var f frame
	var err error
	if mt == websocket.BinaryMessage {
		err = msgpack.Unmarshal(b, &f)
	} else {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		err = d.Decode(&f)
	}
	if err != nil {
		return nil, fmt.Errorf("roomlog: undecodable frame: %v", err)
	}
	return f, nil
}

// ErrRefused is wrapped by connection errors that retrying with the same settings will not fix
// (the server refused the token).
var ErrRefused = errors.New("refused by the server")

// connect dials, says hello and waits for welcome.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	tok, err := c.opts.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("roomlog: token: %w", err)
	}
	d := *c.opts.Dialer
	d.Subprotocols = []string{"roomlog.v1.json"}
	if c.opts.Codec == MessagePack {
		d.Subprotocols = []string{"roomlog.v1.msgpack"}
	}
	hdr := http.Header{}
	if c.opts.Origin != "" {
		hdr.Set("Origin", c.opts.Origin)
	}
	ws, _, err := d.DialContext(ctx, c.url, hdr)
	if err != nil {
		return nil, fmt.Errorf("roomlog: dial %s: %w", c.url, err)
	}
	cn := &conn{ws: ws, codec: c.opts.Codec}
	if err := cn.write(frame{"type": "hello", "token": tok, "session": c.opts.Session, "client": "roomlog-go/1"}); err != nil {
		ws.Close()
		return nil, err
	}
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	f, err := cn.read()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("roomlog: waiting for welcome: %w", err)
	}
	switch f.str("type") {
	case "welcome":
	case "bye":
		ws.Close()
		return nil, fmt.Errorf("roomlog: %w: %s: %s", ErrRefused, f.str("code"), f.str("reason"))
	default:
		ws.Close()
		return nil, fmt.Errorf("roomlog: expected welcome, got %v", f)
	}
	ws.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.user = f.str("user")
	c.mu.Unlock()
	if ms := toInt64(f["key_retention_ms"]); ms > 0 {
		cn.keyRetention = time.Duration(ms) * time.Millisecond
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
	if _, err := c.call(ctx, frame{"type": "refresh", "token": tok}); err != nil {
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
			if e, ok := parseEventFrame(b); ok {
				c.deliverEvent(e)
				continue
			}
		}
		f, err := decodeFrame(mt, b)
		if err != nil {
			c.logger.Warn("roomlog client got an undecodable frame", "err", err)
			continue
		}
		switch f.str("type") {
		case "event":
			c.deliver(f)
		case "joined":
			c.joined(f)
		case "synced":
			if r := c.room(f.str("room")); r != nil {
				r.setSynced()
			}
		case "ack":
			c.acked(f)
		case "error":
			switch {
			case strings.HasPrefix(f.str("ref"), "join:"):
				c.joinFailed(f)
			case !c.publishFailed(f):
				c.answer(f)
			}
		case "bye":
			c.logger.Info("roomlog server said bye", "code", f.str("code"), "reason", f.str("reason"))
			return time.Duration(toInt64(f["reconnect_ms"])) * time.Millisecond
		case "left":
			if f.str("ref") == "" { // the server left the room for us (token refresh)
				c.dropRoom(f.str("room"))
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

// msgpackValue turns JSON numbers into integers or floats for MessagePack.
func msgpackValue(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, x := range t {
			t[k] = msgpackValue(x)
		}
	case []any:
		for i, x := range t {
			t[i] = msgpackValue(x)
		}
	}
	return v
}

// toInt64 reads an integer as JSON (json.Number) or MessagePack (sized ints) decodes it.
func toInt64(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return int64(n)
	}
	return 0
}

// answer hands a frame with a ref to the call waiting for it.
func (c *Client) answer(f frame) {
	ref := f.str("ref")
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
