package clientvectors

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/wire"
)

// StepTimeout bounds the wait for a frame a step expects.
const StepTimeout = 10 * time.Second

// Player plays the server's side of vectors. A client connects to /v/<vector name> (any path
// ending in the name); GET /result/<name> answers the vector's Result as JSON.
type Player struct {
	mu    sync.Mutex
	plays map[string]*play // guarded by mu
}

// play is one vector's progress across the client's connections.
type play struct {
	v *Vector

	mu    sync.Mutex
	next  int                       // the next step
	named map[string]map[string]any // frames named by As
	err   string                    // the first failure; the play stops there
	busy  bool                      // a connection is playing
}

// Result is where a vector's play stands.
type Result struct {
	Done  bool   `json:"done"`  // every step was played
	Error string `json:"error"` // the first failure, if any
}

// NewPlayer returns a Player of vectors.
func NewPlayer(vectors []*Vector) *Player {
	p := &Player{plays: map[string]*play{}}
	for _, v := range vectors {
		p.plays[v.Name] = &play{v: v, named: map[string]map[string]any{}}
	}
	return p
}

// Result returns where the named vector's play stands.
func (p *Player) Result(name string) Result {
	p.mu.Lock()
	pl := p.plays[name]
	p.mu.Unlock()
	if pl == nil {
		return Result{Error: fmt.Sprintf("no vector %q", name)}
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return Result{Done: pl.next == len(pl.v.Script), Error: pl.err}
}

// upgrader speaks the protocol's JSON subprotocol, which browsers' WebSockets insist on when
// they ask for it.
var upgrader = websocket.Upgrader{
	Subprotocols: []string{wire.SubprotocolJSON},
	CheckOrigin:  func(*http.Request) bool { return true },
}

// ServeHTTP implements http.Handler.
func (p *Player) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if strings.HasPrefix(r.URL.Path, "/result/") {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.Result(name))
		return
	}
	p.mu.Lock()
	pl := p.plays[name]
	p.mu.Unlock()
	if pl == nil {
		http.Error(w, "no such vector", http.StatusNotFound)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	frames := readFrames(ws)
	if pl.run(ws, frames) {
		// The script is over: the connection stays open, and what the client sends is ignored.
		for range frames {
		}
	}
}

// readFrames reads the client's frames into a channel, closed when the connection ends.
func readFrames(ws *websocket.Conn) <-chan map[string]any {
	ch := make(chan map[string]any, 64)
	go func() {
		defer close(ch)
		for {
			var f map[string]any
			if err := ws.ReadJSON(&f); err != nil {
				return
			}
			ch <- f
		}
	}()
	return ch
}

// run plays steps on one connection until the script ends (true), a Drop closes it, or a step
// fails.
func (pl *play) run(ws *websocket.Conn, frames <-chan map[string]any) bool {
	pl.mu.Lock()
	switch {
	case pl.busy:
		pl.fail("the client opened a second connection while the first was playing")
	case pl.next == len(pl.v.Script):
		pl.fail("the client connected again after the script ended")
	}
	pl.busy = true
	pl.mu.Unlock()
	defer func() {
		pl.mu.Lock()
		pl.busy = false
		pl.mu.Unlock()
	}()
	for {
		pl.mu.Lock()
		if pl.err != "" || pl.next == len(pl.v.Script) {
			over := pl.err == ""
			pl.mu.Unlock()
			return over
		}
		i, s := pl.next, pl.v.Script[pl.next]
		pl.mu.Unlock()
		err := pl.step(ws, frames, &s)
		pl.mu.Lock()
		if err != nil {
			pl.fail(fmt.Sprintf("step %d: %v", i, err))
		} else {
			pl.next++
		}
		pl.mu.Unlock()
		if err != nil || s.Drop {
			return false
		}
	}
}

// fail records the play's first failure; pl.mu is held.
func (pl *play) fail(msg string) {
	if pl.err == "" {
		pl.err = msg
	}
}

func (pl *play) step(ws *websocket.Conn, frames <-chan map[string]any, s *Step) error {
	switch {
	case s.Send != nil:
		pl.mu.Lock()
		f := substitute(s.Send, pl.named).(map[string]any)
		pl.mu.Unlock()
		return ws.WriteJSON(f)
	case s.Drop:
		return nil
	case s.QuietMS > 0:
		return quiet(frames, time.Duration(s.QuietMS)*time.Millisecond)
	}
	pl.mu.Lock()
	want := substitute(s.Expect, pl.named).(map[string]any)
	pl.mu.Unlock()
	f, err := expect(frames, want)
	if err == nil && s.As != "" {
		pl.mu.Lock()
		pl.named[s.As] = f
		pl.mu.Unlock()
	}
	return err
}

// ignorable reports whether the client may send f at any time without the script saying so: a
// ping, or a receipt (an ack of a room's cursor).
func ignorable(f map[string]any) bool { return f["type"] == "ping" || f["type"] == "ack" }

// expect waits for the client's frame matching want, skipping the ignorable ones that do not.
func expect(frames <-chan map[string]any, want map[string]any) (map[string]any, error) {
	timeout := time.After(StepTimeout)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return nil, fmt.Errorf("the connection closed while expecting %v", want)
			}
			mismatch := match(f, want)
			if mismatch == "" {
				return f, nil
			}
			if !ignorable(f) {
				return nil, fmt.Errorf("got %v, want %v: %s", f, want, mismatch)
			}
		case <-timeout:
			return nil, fmt.Errorf("nothing matching %v within %s", want, StepTimeout)
		}
	}
}

// quiet fails when the client sends anything but ignorable frames for d.
func quiet(frames <-chan map[string]any, d time.Duration) error {
	timeout := time.After(d)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return fmt.Errorf("the connection closed while quiet")
			}
			if !ignorable(f) {
				return fmt.Errorf("got %v while the client should have sent nothing", f)
			}
		case <-timeout:
			return nil
		}
	}
}

// match says how f differs from want ("" when it does not).
func match(f, want map[string]any) string {
	for k, w := range want {
		got, present := f[k]
		switch {
		case w == nil && present:
			return fmt.Sprintf("%s is %v, want it absent", k, got)
		case w == nil:
		case !present:
			return fmt.Sprintf("%s is missing", k)
		case w == "*":
		default:
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(w)
			if string(gb) != string(wb) {
				return fmt.Sprintf("%s is %s, want %s", k, gb, wb)
			}
		}
	}
	return ""
}

// substitute replaces the "$name.field" strings in v by that field of the named frame.
func substitute(v any, named map[string]map[string]any) any {
	switch v := v.(type) {
	case string:
		if ref, ok := strings.CutPrefix(v, "$"); ok {
			name, field, _ := strings.Cut(ref, ".")
			if f, ok := named[name]; ok {
				return f[field]
			}
		}
		return v
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = substitute(x, named)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = substitute(x, named)
		}
		return out
	}
	return v
}
