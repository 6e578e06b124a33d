package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/internal/clientvectors"
)

// TestVectors plays every client test vector (testdata/client-vectors, package clientvectors)
// against this client, over a real WebSocket: the server's side is scripted, and what the
// application sees must be what the vector expects. The JavaScript client's tests play the same
// vectors.
func TestVectors(t *testing.T) {
	vectors, err := clientvectors.Load("../" + clientvectors.Dir)
	if err != nil {
		t.Fatal(err)
	}
	player := clientvectors.NewPlayer(vectors)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: player}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			seen := playVector(t, "ws://"+ln.Addr().String()+"/v/"+v.Name, v, player)
			seen.check(t, v)
		})
	}
}

// appView is what the application saw of a vector's play.
type appView struct {
	mu        sync.Mutex
	delivered map[string][]string
	published []string
	rooms     map[string]*client.Room
	states    map[string]clientvectors.RoomState
	refused   string
	stopped   string
}

func playVector(t *testing.T, url string, v *clientvectors.Vector, player *clientvectors.Player) *appView {
	seen := &appView{delivered: map[string][]string{}, rooms: map[string]*client.Room{}, states: map[string]clientvectors.RoomState{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{
		Token:      func(context.Context) (string, error) { return "t", nil },
		Session:    "s1",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		var refusal *client.Error
		if !errors.As(err, &refusal) {
			t.Fatalf("dial: %v", err)
		}
		seen.refused = refusal.Code
		waitPlayed(t, player, v.Name)
		return seen
	}
	defer c.Close()
	var sendings []*client.Sending
	for _, step := range v.App {
		if j := step.Join; j != nil {
			seen.join(ctx, c, j)
			continue
		}
		s, err := c.Send(step.Publish.Room, "", step.Publish.Body)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		sendings = append(sendings, s)
	}
	for _, s := range sendings {
		ack, err := s.Wait(ctx)
		seen.published = append(seen.published, outcome(ack, err))
	}
	waitPlayed(t, player, v.Name)
	seen.waitDelivered(v.Expect.Delivered)
	var stop *client.Error
	if errors.As(c.Err(), &stop) {
		seen.stopped = stop.Code
	}
	return seen
}

// join joins as the vector says, recording the refusal's code when the join is refused.
func (a *appView) join(ctx context.Context, c *client.Client, j *clientvectors.AppJoin) {
	r, err := c.Join(ctx, j.Room, client.JoinOptions{
		FromStart: j.FromStart, FromSnapshot: j.FromSnapshot,
		Handler: func(e client.Event) {
			a.mu.Lock()
			a.delivered[e.Room] = append(a.delivered[e.Room], e.ID)
			a.mu.Unlock()
		},
	})
	var refusal *client.Error
	switch {
	case errors.As(err, &refusal):
		a.states[j.Room] = clientvectors.RoomState{JoinError: refusal.Code}
	case err != nil:
		a.states[j.Room] = clientvectors.RoomState{JoinError: err.Error()}
	default:
		a.rooms[j.Room] = r
	}
}

func outcome(ack client.Ack, err error) string {
	var refusal *client.Error
	switch {
	case errors.As(err, &refusal):
		return "error " + refusal.Code
	case err != nil:
		return "error " + err.Error()
	case ack.Duplicate:
		return "duplicate " + ack.ID
	}
	return "ack " + ack.ID
}

// waitPlayed waits for the player to reach the end of the vector's script, and then a little
// longer, so that a connection the client should not open is seen.
func waitPlayed(t *testing.T, player *clientvectors.Player, name string) {
	t.Helper()
	deadline := time.Now().Add(clientvectors.StepTimeout + 5*time.Second)
	for res := player.Result(name); !res.Done || res.Error != ""; res = player.Result(name) {
		if res.Error != "" || time.Now().After(deadline) {
			t.Fatalf("the script did not play through: %+v", res)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if res := player.Result(name); res.Error != "" {
		t.Fatalf("after the script: %s", res.Error)
	}
}

// waitDelivered waits a little for the events the script sent to reach the application.
func (a *appView) waitDelivered(want map[string][]string) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		a.mu.Lock()
		done := true
		for room, ids := range want {
			done = done && len(a.delivered[room]) >= len(ids)
		}
		a.mu.Unlock()
		if done {
			return
		}
	}
}

func (a *appView) check(t *testing.T, v *clientvectors.Vector) {
	t.Helper()
	want := v.Expect
	if a.refused != want.Refused || a.stopped != want.Stopped {
		t.Errorf("refused %q and stopped %q, want %q and %q", a.refused, a.stopped, want.Refused, want.Stopped)
	}
	a.mu.Lock()
	for room, ids := range want.Delivered {
		if got := a.delivered[room]; !slices.Equal(got, ids) {
			t.Errorf("delivered in %s: %v, want %v", room, got, ids)
		}
	}
	a.mu.Unlock()
	if !slices.Equal(a.published, want.Published) {
		t.Errorf("publishes settled as %q, want %q", a.published, want.Published)
	}
	for room, members := range want.Members {
		var got []string
		for _, m := range a.rooms[room].Members() {
			got = append(got, m.User+"/"+m.Session)
		}
		slices.Sort(got)
		if !slices.Equal(got, members) {
			t.Errorf("members of %s: %v, want %v", room, got, members)
		}
	}
	for room, state := range want.Rooms {
		if got := a.state(room); got != state {
			t.Errorf("room %s: %+v, want %+v", room, got, state)
		}
	}
}

// state is what the application can tell of room, with only the fields a vector may check.
func (a *appView) state(room string) clientvectors.RoomState {
	r := a.rooms[room]
	if r == nil {
		return a.states[room]
	}
	s := clientvectors.RoomState{UnknownCursor: r.UnknownCursor(), CursorTooOld: r.CursorTooOld(), Snapshot: r.Snapshot(), Cursor: r.Cursor(), Removed: r.Removed()}
	return s
}
