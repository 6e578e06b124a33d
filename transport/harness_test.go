package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/transport"
	"github.com/roomlog/roomlog/wire"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is a real server on a loopback port with a real data file.
type testServer struct {
	t       testing.TB
	url     string // http://127.0.0.1:port
	log     *boltlog.Log
	hub     *rooms.Hub
	srv     *transport.Server
	http    *http.Server
	path    string
	stopped bool
}

type serverOpts struct {
	cfg        transport.Config
	grace      time.Duration
	ring       int
	path       string
	authorizer rooms.Authorizer
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	path := o.path
	if path == "" {
		path = filepath.Join(t.TempDir(), "roomlog.db")
	}
	metrics := transport.NewMetrics()
	log, err := boltlog.Open(path, boltlog.Options{MaxBody: o.cfg.MaxFrame, OnCommit: metrics.ObserveCommit})
	if err != nil {
		t.Fatal(err)
	}
	grace := o.grace
	if grace == 0 {
		grace = rooms.NoGrace
	}
	hub := rooms.NewHub(log, rooms.Options{Grace: grace, RingSize: o.ring, Authorizer: o.authorizer})
	if _, err := hub.CloseOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := o.cfg
	cfg.Hub = hub
	if os.Getenv("ROOMLOG_TEST_NO_POLLER") != "" {
		cfg.NoPoller = true // the whole suite again with a goroutine reading each connection
	}
	cfg.Metrics = metrics
	if cfg.Auth == nil {
		v, err := auth.NewVerifier(auth.Config{Secret: []byte(servertest.Secret)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = v
	}
	srv, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As roomlog serve runs it: the HTTP timeouts, and sockets counted by a LimitListener (so
	// every test goes through its connections, the poller's included).
	hs := transport.NewHTTPServer(srv, transport.HTTPTimeouts{})
	go hs.Serve(transport.LimitListener(ln, transport.DefaultMaxConns, transport.DefaultMaxConnsPerIP, srv.RefusedSocket))
	ts := &testServer{t: t, url: "http://" + ln.Addr().String(), log: log, hub: hub, srv: srv, http: hs, path: path}
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.stopped {
		return
	}
	ts.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts.http.Shutdown(ctx)
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("server shutdown: %v", err)
	}
	if err := ts.log.Close(); err != nil {
		ts.t.Errorf("log close: %v", err)
	}
}

func (ts *testServer) wsURL() string { return "ws" + strings.TrimPrefix(ts.url, "http") + "/v1/ws" }

func token(t testing.TB, sub string, rooms []string, opts ...func(*auth.TokenSpec)) string {
	t.Helper()
	spec := auth.TokenSpec{Subject: sub, Rooms: rooms}
	for _, o := range opts {
		o(&spec)
	}
	return servertest.Token(t, spec)
}

// frame is a decoded server frame.
type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

// client is a raw protocol client for tests.
type client struct {
	t       testing.TB
	ws      *websocket.Conn
	msgpack bool
}

func dial(t testing.TB, ts *testServer, subprotocol string, hdr http.Header) (*client, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if subprotocol != "" {
		d.Subprotocols = []string{subprotocol}
	}
	ws, resp, err := d.Dial(ts.wsURL(), hdr)
	if err != nil {
		return nil, resp, err
	}
	c := &client{t: t, ws: ws, msgpack: ws.Subprotocol() == wire.SubprotocolMsgpack}
	t.Cleanup(func() { ws.Close() })
	return c, resp, nil
}

// connect dials and says hello; it fails the test unless welcomed.
func connect(t testing.TB, ts *testServer, tok, session string) *client {
	t.Helper()
	c, _, err := dial(t, ts, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.hello(tok, session)
	return c
}

func (c *client) hello(tok, session string) frame {
	c.t.Helper()
	c.send(frame{"type": "hello", "token": tok, "session": session, "client": "test/1"})
	return c.expect("welcome")
}

func (c *client) send(f frame) {
	c.t.Helper()
	var b []byte
	var err error
	mt := websocket.TextMessage
	if c.msgpack {
		b, err = msgpack.Marshal(map[string]any(f))
		mt = websocket.BinaryMessage
	} else {
		b, err = json.Marshal(f)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(mt, b)
}

func (c *client) sendRaw(mt int, b []byte) {
	c.t.Helper()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.ws.WriteMessage(mt, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv reads the next frame; err is set when the connection ended.
func (c *client) recvErr(timeout time.Duration) (frame, error) {
	c.ws.SetReadDeadline(time.Now().Add(timeout))
	mt, b, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	return c.decode(mt, b)
}

// decode decodes a frame of the connection's codec.
func (c *client) decode(mt int, b []byte) (frame, error) {
	var err error
	var f frame
	if c.msgpack {
		if mt != websocket.BinaryMessage {
			return nil, fmt.Errorf("msgpack connection got a text frame: %s", b)
		}
		err = msgpack.Unmarshal(b, &f)
	} else {
		if mt != websocket.TextMessage {
			return nil, fmt.Errorf("JSON connection got a binary frame")
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		err = d.Decode(&f)
	}
	if err != nil {
		return nil, fmt.Errorf("undecodable frame %q: %v", b, err)
	}
	return f, nil
}

// recvRaw reads the next frame and returns its bytes as well.
func (c *client) recvRaw() ([]byte, frame) {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	mt, b, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	f, err := c.decode(mt, b)
	if err != nil {
		c.t.Fatal(err)
	}
	return b, f
}

func (c *client) recv() frame {
	c.t.Helper()
	f, err := c.recvErr(10 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return f
}

// expect reads the next frame and checks its type.
func (c *client) expect(typ string) frame {
	c.t.Helper()
	f := c.recv()
	if f.str("type") != typ {
		c.t.Fatalf("got %v, want a %s frame", f, typ)
	}
	return f
}

// answer reads frames up to the next one that is not an event, and checks its type.
func (c *client) answer(typ string) frame {
	c.t.Helper()
	for {
		f := c.recv()
		if f.str("type") == "event" {
			continue
		}
		if f.str("type") != typ {
			c.t.Fatalf("got %v, want a %s frame", f, typ)
		}
		return f
	}
}

// expectError reads an error frame with the code.
func (c *client) expectError(code string) frame {
	c.t.Helper()
	f := c.expect("error")
	if f.str("code") != code {
		c.t.Fatalf("error %v, want code %s", f, code)
	}
	return f
}

// expectClosed reads until the connection closes and returns the close code and frames seen.
func (c *client) expectClosed() (int, []frame) {
	c.t.Helper()
	var seen []frame
	for {
		f, err := c.recvErr(10 * time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if ok := asClose(err, &ce); ok {
				return ce.Code, seen
			}
			return -1, seen
		}
		seen = append(seen, f)
	}
}

func asClose(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	if ok {
		*ce = e
	}
	return ok
}

// join joins a room and reads joined, the replayed events and synced.
func (c *client) join(room string, after *string) (joined frame, events []frame) {
	c.t.Helper()
	f := frame{"type": "join", "ref": "j-" + room, "room": room}
	if after != nil {
		f["after"] = *after
	}
	return c.joinFrame(f)
}

// joinFrame sends a join frame as given and reads joined, the replayed events and synced.
func (c *client) joinFrame(f frame) (joined frame, events []frame) {
	c.t.Helper()
	room := f.str("room")
	c.send(f)
	joined = c.expect("joined")
	for {
		f := c.recv()
		switch f.str("type") {
		case "event":
			if f.str("room") == room {
				events = append(events, f)
			}
		case "synced":
			if f.str("room") == room {
				return joined, events
			}
		default:
			c.t.Fatalf("while joining %s got %v", room, f)
		}
	}
}

// publish publishes and waits for the ack (skipping events of joined rooms).
func (c *client) publish(room string, body any, extra frame) frame {
	c.t.Helper()
	ref := fmt.Sprintf("p-%d", time.Now().UnixNano())
	f := frame{"type": "publish", "ref": ref, "room": room, "body": body}
	for k, v := range extra {
		f[k] = v
	}
	c.send(f)
	for {
		r := c.recv()
		if r.str("type") == "event" {
			continue
		}
		if r.str("ref") != ref {
			c.t.Fatalf("waiting for the answer to %s got %v", ref, r)
		}
		return r
	}
}

func strp(s string) *string { return &s }
