package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/client/filestore"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/internal/servertest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, url string, opts client.Options) *client.Client {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 300*time.Millisecond
	}
	if opts.Logger == nil {
		// What the client logs (a reconnect and its cause) shows with a failing test.
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := client.Dial(ctxT(t), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testWriter writes to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// collector records delivered events.
type collector struct {
	mu  sync.Mutex
	evs []client.Event
}

func (c *collector) handle(e client.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, e)
	c.mu.Unlock()
}

func (c *collector) messages() []client.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []client.Event
	for _, e := range c.evs {
		if e.Kind == "message" {
			out = append(out, e)
		}
	}
	return out
}

func (c *collector) waitMessages(t *testing.T, n int) []client.Event {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := c.messages(); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages", len(c.messages()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJoinPublishReceive(t *testing.T) {
	for _, codec := range []client.Codec{client.JSON, client.MessagePack} {
		t.Run(fmt.Sprint("codec=", codec), func(t *testing.T) {
			s := startInProc(t)
			url := "ws://" + s.addr + "/v1/ws"
			var got collector
			sub := dial(t, url, client.Options{Token: token(t, "alice", "doc:*"), Session: "phone", Codec: codec})
			room, err := sub.Join(ctxT(t), "doc:1", client.JoinOptions{Handler: got.handle, Presence: map[string]string{"name": "Alice"}})
			if err != nil {
				t.Fatal(err)
			}
			if sub.User() != "alice" {
				t.Fatalf("user %q", sub.User())
			}
			pub := dial(t, url, client.Options{Token: token(t, "bob", "doc:*"), Codec: codec})
			for i := range 5 {
				ack, err := pub.Publish(ctxT(t), "doc:1", "", map[string]int{"i": i})
				if err != nil || ack.ID == "" || ack.Duplicate {
					t.Fatalf("publish %d: %+v %v", i, ack, err)
				}
			}
			msgs := got.waitMessages(t, 5)
			for i, e := range msgs {
				var body map[string]int
				json.Unmarshal(e.Body, &body)
				if body["i"] != i || e.User != "bob" || e.Key == "" || e.Time.IsZero() {
					t.Fatalf("message %d: %+v", i, e)
				}
			}
			if m := room.Members(); len(m) != 1 || m[0].User != "alice" || string(m[0].Presence) != `{"name":"Alice"}` {
				t.Fatalf("members %+v", m)
			}
			if err := room.SetPresence(ctxT(t), map[string]int{"cursor": 9}); err != nil {
				t.Fatal(err)
			}
			if err := room.Leave(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	s := startInProc(t)
	c := dial(t, "ws://"+s.addr+"/v1/ws", client.Options{Token: token(t, "alice", "doc:*")})
	start := time.Now()
	_, err := c.Publish(ctxT(t), "secret", "", 1)
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "forbidden" || !client.IsPermanent(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("forbidden publish: %v", err)
	}
	if _, err := c.Publish(ctxT(t), "doc:1", "join", 1); !client.IsPermanent(err) {
		t.Fatalf("reserved kind: %v", err)
	}
	ack, _ := c.Publish(ctxT(t), "doc:1", "", 1)
	if _, err := c.PublishExpect(ctxT(t), "doc:1", "", 2, ""); !errors.As(err, &e) || e.Code != "conflict" || e.Head != ack.ID {
		t.Fatalf("conflict: %v", err)
	}
	if c.Pending() != 0 {
		t.Fatalf("%d refused publishes still pending", c.Pending())
	}
	if _, err := c.Join(ctxT(t), "secret", client.JoinOptions{}); !client.IsPermanent(err) {
		t.Fatalf("forbidden join: %v", err)
	}
	_, err = client.Dial(ctxT(t), "ws://"+s.addr+"/v1/ws", client.Options{Token: func(context.Context) (string, error) { return "garbage", nil }})
	if !errors.Is(err, client.ErrRefused) {
		t.Fatalf("dial with a bad token: %v", err)
	}
}

// TestNetworkCuts: the network between clients and server is cut at random moments while one
// client publishes and another receives. The receiver sees every message once, in order; every
// publish is acked and appears in the log once.
func TestNetworkCuts(t *testing.T) {
	s := startInProc(t)
	px := startProxy(t, s.addr)
	var got collector
	sub := dial(t, px.url(), client.Options{Token: token(t, "alice", "doc:*"), Session: "sub"})
	if _, err := sub.Join(ctxT(t), "doc:cut", client.JoinOptions{Handler: got.handle}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, px.url(), client.Options{Token: token(t, "bob", "doc:*"), Session: "pub"})
	const n = 2000
	stop := make(chan struct{})
	var cuts atomic.Int32
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(5+rand.IntN(40)) * time.Millisecond):
				px.cut()
				cuts.Add(1)
			}
		}
	}()
	var wg sync.WaitGroup
	acks := make([]client.Ack, n)
	for w := range 4 { // four publishers, in order within each
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				ack, err := pub.Publish(ctxT(t), "doc:cut", "", map[string]int{"i": i})
				if err != nil {
					t.Errorf("publish %d: %v", i, err)
					return
				}
				acks[i] = ack
			}
		})
	}
	wg.Wait()
	msgs := got.waitMessages(t, n)
	close(stop)
	if cuts.Load() < 10 {
		t.Fatalf("only %d cuts happened; the test proves little", cuts.Load())
	}
	checkExactlyOnce(t, s.log, "doc:cut", msgs, acks)
	t.Logf("%d messages across %d network cuts", n, cuts.Load())
}

// checkExactlyOnce: msgs are the log's messages of room, in order, once each, and every ack is
// one of them.
func checkExactlyOnce(t *testing.T, l eventlog.Log, room string, msgs []client.Event, acks []client.Ack) {
	t.Helper()
	evs, err := l.ReadAfter(context.Background(), room, eventlog.ID{}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var logIDs []string
	keys := map[string]int{}
	for _, e := range evs {
		if e.Kind == "message" {
			logIDs = append(logIDs, e.ID.String())
			keys[e.Key]++
		}
	}
	var got []string
	for _, e := range msgs {
		got = append(got, e.ID)
	}
	logtest.SameIDs(t, got, logIDs)
	for k, n := range keys {
		if n != 1 {
			t.Fatalf("key %s appended %d times", k, n)
		}
	}
	for i, a := range acks {
		if !slices.Contains(logIDs, a.ID) {
			t.Fatalf("ack %d (%s) is not in the log", i, a.ID)
		}
	}
}

// TestServerKilledAndRestarted kills the server with SIGKILL (and once stops it gracefully)
// repeatedly, mid-stream and mid-publish, restarting it on the same file each time.
func TestServerKilledAndRestarted(t *testing.T) {
	servertest.Long(t, "process test")
	data := filepath.Join(t.TempDir(), "rooms.db")
	srv := startProc(t, data)
	px := startProxy(t, srv.addr)
	var got collector
	sub := dial(t, px.url(), client.Options{Token: token(t, "alice", "doc:*"), Session: "sub"})
	if _, err := sub.Join(ctxT(t), "doc:k", client.JoinOptions{Handler: got.handle}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, px.url(), client.Options{Token: token(t, "bob", "doc:*"), Session: "pub"})
	const n = 600
	acks := make([]client.Ack, n)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			ack, err := pub.Publish(ctxT(t), "doc:k", "", map[string]int{"i": i})
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			acks[i] = ack
		}
	})
	for round := range 4 {
		time.Sleep(time.Duration(150+rand.IntN(200)) * time.Millisecond)
		if round == 2 {
			srv.cmd.Process.Signal(syscall.SIGTERM)
		} else {
			srv.cmd.Process.Signal(syscall.SIGKILL)
		}
		<-srv.done
		srv = startProc(t, data)
		px.setTarget(srv.addr)
		px.cut() // connections to the dead server may linger in the proxy
	}
	wg.Wait()
	msgs := got.waitMessages(t, n)
	// Check against the file itself, after a last clean stop.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.done
	l := servertest.OpenData(t, data)
	checkExactlyOnce(t, l, "doc:k", msgs, acks)
	for i := 1; i < n; i++ {
		if acks[i].ID <= acks[i-1].ID {
			t.Fatalf("publishes acked out of order at %d", i)
		}
	}
}

// TestTokenRefresh: a short-lived token is refreshed before it expires; the connection stays.
func TestTokenRefresh(t *testing.T) {
	s := startInProc(t)
	var issued atomic.Int32
	tokens := tokenTTL(t, "alice", 3*time.Second, "doc:*")
	c := dial(t, "ws://"+s.addr+"/v1/ws", client.Options{Token: func(ctx context.Context) (string, error) {
		issued.Add(1)
		return tokens(ctx)
	}, AckInterval: 100 * time.Millisecond})
	time.Sleep(5 * time.Second) // past the first token's expiry
	if issued.Load() < 2 {
		t.Fatalf("the token was never refreshed")
	}
	if c.Reconnects() != 0 {
		t.Fatalf("%d reconnects: the token expired before its refresh", c.Reconnects())
	}
	if _, err := c.Publish(ctxT(t), "doc:1", "", 1); err != nil {
		t.Fatal(err)
	}
}

// TestFileStoreSurvivesRestart: publishes made while the server is unreachable survive a restart
// of the application in its file store, are sent once it can connect, and appear once; the
// room's cursor survives too.
func TestFileStoreSurvivesRestart(t *testing.T) {
	s := startInProc(t)
	px := startProxy(t, s.addr)
	storePath := filepath.Join(t.TempDir(), "app.db")
	store, err := filestore.Open(storePath)
	if err != nil {
		t.Fatal(err)
	}
	var got collector
	c := dial(t, px.url(), client.Options{Token: token(t, "alice", "doc:*"), Session: "app", Store: store})
	if _, err := c.Join(ctxT(t), "doc:f", client.JoinOptions{Handler: got.handle}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctxT(t), "doc:f", "", "before"); err != nil {
		t.Fatal(err)
	}
	got.waitMessages(t, 1)
	// The network goes away; publishes wait in the outbox; the app is stopped.
	px.setTarget("127.0.0.1:1")
	px.cut()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		if _, err := c.Publish(ctx, "doc:f", "", fmt.Sprint("offline ", i)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("offline publish: %v", err)
		}
		cancel()
	}
	c.Close()
	store.Close()

	// The app starts again with the same store; the network is back.
	px.setTarget(s.addr)
	store, err = filestore.Open(storePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() }) // after the client's Close, which saves cursors
	var again collector
	c2 := dial(t, px.url(), client.Options{Token: token(t, "alice", "doc:*"), Session: "app", Store: store})
	if _, err := c2.Join(ctxT(t), "doc:f", client.JoinOptions{Handler: again.handle}); err != nil {
		t.Fatal(err)
	}
	msgs := again.waitMessages(t, 3)
	deadline := time.Now().Add(30 * time.Second)
	for c2.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var bodies []string
	for _, m := range msgs {
		bodies = append(bodies, string(m.Body))
	}
	if fmt.Sprint(bodies) != `["offline 0" "offline 1" "offline 2"]` {
		t.Fatalf("after the restart the app received %v (the cursor should skip \"before\")", bodies)
	}
	evs, _ := s.log.ReadAfter(context.Background(), "doc:f", eventlog.ID{}, 100)
	n := 0
	for _, e := range evs {
		if e.Kind == "message" {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("the log has %d messages, want 4 (each once)", n)
	}
}

// TestHonoursReconnectMS: a server shutting down says bye with reconnect_ms (1s); the client
// waits that long before reconnecting, then resumes on the new server.
func TestHonoursReconnectMS(t *testing.T) {
	a := startInProc(t)
	px := startProxy(t, a.addr)
	c := dial(t, px.url(), client.Options{Token: token(t, "alice", "doc:*"), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	b := startInProc(t)
	px.setTarget(b.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- a.srv.Shutdown(ctx) }()
	defer func() { <-shutdown }() // before the cleanup's own Shutdown
	time.Sleep(600 * time.Millisecond)
	if n := c.Reconnects(); n != 0 {
		t.Fatalf("reconnected %d times within 600ms of a bye asking for 1000ms", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Reconnects() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("never reconnected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Publish(ctxT(t), "doc:1", "", "after the move"); err != nil {
		t.Fatal(err)
	}
}

// waitAck waits until the server has recorded the session's cursor for room at want.
func waitAck(t *testing.T, l eventlog.Cursors, user, session, room, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := l.Cursor(context.Background(), user, session, room)
		if err == nil && got.String() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server recorded %s for %s, want %s (%v)", got, room, want, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerSideResume: a device that lost its local state but kept its session id gets, from the
// cursor the server recorded for the session, every event it had not acknowledged.
func TestServerSideResume(t *testing.T) {
	s := startInProc(t)
	url := "ws://" + s.addr + "/v1/ws"
	var first collector
	c1 := dial(t, url, client.Options{Token: token(t, "alice", "doc:*"), Session: "phone"})
	if _, err := c1.Join(ctxT(t), "doc:s", client.JoinOptions{Handler: first.handle}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c1.Publish(ctxT(t), "doc:s", "", fmt.Sprint("seen ", i)); err != nil {
			t.Fatal(err)
		}
	}
	seen := first.waitMessages(t, 3)
	waitAck(t, s.log, "alice", "phone", "doc:s", seen[2].ID)
	c1.Close()

	other := dial(t, url, client.Options{Token: token(t, "bob", "doc:*"), Session: "desk"})
	for i := range 2 {
		if _, err := other.Publish(ctxT(t), "doc:s", "", fmt.Sprint("missed ", i)); err != nil {
			t.Fatal(err)
		}
	}
	var again collector
	c2 := dial(t, url, client.Options{Token: token(t, "alice", "doc:*"), Session: "phone", Store: client.NewMemoryStore()})
	if _, err := c2.Join(ctxT(t), "doc:s", client.JoinOptions{Handler: again.handle}); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range again.waitMessages(t, 2) {
		bodies = append(bodies, string(m.Body))
	}
	if fmt.Sprint(bodies) != `["missed 0" "missed 1"]` {
		t.Fatalf("the resumed session received %v", bodies)
	}
}

// TestCursorPastTheHead: a stored cursor the server's log is not as far as (a restored data file)
// is reported, and the room still delivers what comes next.
func TestCursorPastTheHead(t *testing.T) {
	s := startInProc(t)
	url := "ws://" + s.addr + "/v1/ws"
	store := client.NewMemoryStore()
	store.SetCursor("doc:p", eventlog.MinIDAt(time.Now().Add(time.Hour)).String())
	var got collector
	c := dial(t, url, client.Options{Token: token(t, "alice", "doc:*"), Session: "phone", Store: store})
	room, err := c.Join(ctxT(t), "doc:p", client.JoinOptions{Handler: got.handle})
	if err != nil {
		t.Fatal(err)
	}
	if !room.UnknownCursor() {
		t.Fatalf("a cursor past the head was not reported")
	}
	if _, err := c.Publish(ctxT(t), "doc:p", "", "next"); err != nil {
		t.Fatal(err)
	}
	if m := got.waitMessages(t, 1); string(m[0].Body) != `"next"` {
		t.Fatalf("after a cursor past the head the room delivered %s", m[0].Body)
	}
}

// TestOutboxPastTheKeyRetention: a publish that waited in the outbox longer than the server
// remembers keys is not resent (it could be appended twice): it is handed back as uncertain.
func TestOutboxPastTheKeyRetention(t *testing.T) {
	s := startInProcWith(t, 2*time.Second)
	px := startProxy(t, s.addr)
	var mu sync.Mutex
	var handed []client.Outgoing
	c := dial(t, px.url(), client.Options{Token: token(t, "alice", "doc:*"), Session: "app",
		Uncertain: func(o client.Outgoing) { mu.Lock(); handed = append(handed, o); mu.Unlock() }})
	if _, err := c.Publish(ctxT(t), "doc:u", "", "fresh"); err != nil {
		t.Fatal(err)
	}
	px.setTarget("127.0.0.1:1")
	px.cut()
	stale, err := c.Send("doc:u", "", "stale")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // longer than the retention, offline
	px.setTarget(s.addr)
	if _, err := stale.Wait(ctxT(t)); !errors.Is(err, client.ErrDeliveryUncertain) {
		t.Fatalf("a publish older than the key retention: %v, want ErrDeliveryUncertain", err)
	}
	mu.Lock()
	got := slices.Clone(handed)
	mu.Unlock()
	if len(got) != 1 || got[0].Key != stale.Key() || string(got[0].Body) != `"stale"` {
		t.Fatalf("handed back %+v", got)
	}
	if c.Pending() != 0 {
		t.Fatalf("%d publishes still pending", c.Pending())
	}
	// Newer publishes go on as usual.
	if _, err := c.Publish(ctxT(t), "doc:u", "", "after"); err != nil {
		t.Fatal(err)
	}
	evs, _ := s.log.ReadAfter(context.Background(), "doc:u", eventlog.ID{}, 100)
	var bodies []string
	for _, e := range evs {
		if e.Kind == "message" {
			bodies = append(bodies, string(e.Body))
		}
	}
	if fmt.Sprint(bodies) != `["fresh" "after"]` {
		t.Fatalf("the room holds %v", bodies)
	}
}

// TestMembersTruncated: a server that lists a bounded number of members says so, and the client
// tells the application how many the room had.
func TestMembersTruncated(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "members.db"), "--max-members-listed", "2")
	ctx := ctxT(t)
	for i := range 3 {
		c, err := client.Dial(ctx, "ws://"+p.addr+"/v1/ws", client.Options{Token: token(t, fmt.Sprint("m", i), "*")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Join(ctx, "crowd", client.JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.Dial(ctx, "ws://"+p.addr+"/v1/ws", client.Options{Token: token(t, "newcomer", "*")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Join(ctx, "crowd", client.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if truncated, count := r.MembersTruncated(); !truncated || count != 4 {
		t.Fatalf("MembersTruncated: %v %d, want true 4", truncated, count)
	}
}
