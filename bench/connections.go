package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/wire"
)

// ConnectionsConfig holds many connections open on one node: each authenticated and joined to
// one of Rooms rooms, the first BigRoom of them also to one big room. It then publishes into the
// big room and, meanwhile, closes and resumes some of the others.
type ConnectionsConfig struct {
	// Conns is how many connections to open. Default 10,000.
	Conns int
	// Rooms is how many rooms they are spread over, round robin. Default Conns/100 (at least 1).
	Rooms int
	// BigRoom is how many of the connections (the first ones) also join the big room. Default
	// min(10,000, Conns).
	BigRoom int
	// Sources are the local addresses connections are made from, in turn (127.0.0.x): one
	// address has about 28,000 ports to connect from. Default 127.0.0.1.
	Sources []net.IP
	// Publishes is how many events are published to the big room, Interval apart. Default 20,
	// 500 ms.
	Publishes int
	Interval  time.Duration
	// Churn is how many connections outside the big room are closed and resumed (by cursor)
	// while the big room is published to, one after the other. Default 100.
	Churn int
	// Dialers is how many connections are being opened at once. Default 64.
	Dialers int
	// Settle, when positive, is how long the node is left idle once every connection is open
	// before its memory is read again (rss_settled_mib): its garbage collected and returned to
	// the system, which an idle Go process does within about two and a half minutes.
	Settle time.Duration
	// Timeout bounds each step: opening the connections, each publish's delivery, each resume.
	// Default 10 minutes. (Filling the big room is quadratic: each join event goes to every
	// member already in it, 50 million deliveries for 10,000 members.)
	Timeout time.Duration
}

func (c *ConnectionsConfig) withDefaults() {
	if c.Conns <= 0 {
		c.Conns = 10000
	}
	if c.Rooms <= 0 {
		c.Rooms = max(1, c.Conns/100)
	}
	if c.BigRoom <= 0 {
		c.BigRoom = min(10000, c.Conns)
	}
	c.BigRoom = min(c.BigRoom, c.Conns)
	if len(c.Sources) == 0 {
		c.Sources = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if c.Publishes <= 0 {
		c.Publishes = 20
	}
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.Churn < 0 {
		c.Churn = 0
	} else if c.Churn == 0 {
		c.Churn = 100
	}
	c.Churn = min(c.Churn, c.Conns-c.BigRoom)
	if c.Dialers <= 0 {
		c.Dialers = 64
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
}

// filesBesides is what the load generator keeps open besides the scenario's connections: the
// publisher, the probes, the disk measurement, standard streams.
const filesBesides = 32

// bigRoomName is the connections scenario's big room; each run has its own.
func bigRoomName(run int64) string { return fmt.Sprintf("bench-big-%d", run) }

// Connections runs the connections scenario against t's first node. Its figures: how long
// opening took, the node's resident memory before, at every fifth of the connections and at the
// end (and per connection), the big room's delivery latency, and the resumes' time to synced.
func Connections(ctx context.Context, t *Target, cfg ConnectionsConfig) (*Result, error) {
	cfg.withDefaults()
	if lim := openFileLimit(); lim > 0 && cfg.Conns+filesBesides > lim {
		return nil, fmt.Errorf("%d connections need %d open files; this process may open %d (ulimit -n)", cfg.Conns, cfg.Conns+filesBesides, lim)
	}
	res := &Result{Scenario: "connections", Figures: map[string]float64{}, Params: map[string]any{
		"conns": cfg.Conns, "rooms": cfg.Rooms, "big_room": cfg.BigRoom, "sources": len(cfg.Sources),
		"publishes": cfg.Publishes, "interval": cfg.Interval.String(), "churn": cfg.Churn, "settle": cfg.Settle.String(),
	}}
	run := time.Now().UnixNano()
	cs := &connSet{t: t, cfg: cfg, run: run, conns: make([]*leanConn, cfg.Conns)}
	defer cs.closeAll()

	before, err := probe(ctx, t.URL)
	if err != nil {
		return nil, err
	}
	res.Figures["rss_before_mib"] = before.RSS / (1 << 20)
	start := time.Now()
	if err := cs.openAll(ctx, res); err != nil {
		return res, err
	}
	res.Figures["open_s"] = time.Since(start).Seconds()
	res.Figures["opened_per_s"] = float64(cfg.Conns) / time.Since(start).Seconds()
	opened, err := probe(ctx, t.URL)
	if err != nil {
		return nil, err
	}
	res.Figures["rss_mib"] = opened.RSS / (1 << 20)
	res.Figures["heap_mib"] = opened.Heap / (1 << 20)
	res.Figures["goroutines"] = opened.Goroutines
	res.Figures["kib_per_conn"] = (opened.RSS - before.RSS) / 1024 / float64(cfg.Conns)
	if cfg.Settle > 0 {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
			return res, ctx.Err()
		}
		settled, err := probe(ctx, t.URL)
		if err != nil {
			return nil, err
		}
		res.Figures["rss_settled_mib"] = settled.RSS / (1 << 20)
		res.Figures["heap_settled_mib"] = settled.Heap / (1 << 20)
		res.Figures["kib_per_conn_settled"] = (settled.RSS - before.RSS) / 1024 / float64(cfg.Conns)
	}

	churn := make(chan latencies, 1)
	go func() { churn <- cs.churn(ctx, res) }()
	lat, err := cs.publishBig(ctx, res)
	resumes := <-churn
	if err != nil {
		return res, err
	}
	lat.report(res.Figures, "big_room_")
	resumes.report(res.Figures, "resume_")
	res.Figures["resumed"] = float64(len(resumes))
	end, err := probe(ctx, t.URL)
	if err != nil {
		return nil, err
	}
	res.Figures["rss_end_mib"] = end.RSS / (1 << 20)
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// connSet is the scenario's connections.
type connSet struct {
	t     *Target
	cfg   ConnectionsConfig
	run   int64
	conns []*leanConn
}

func (cs *connSet) room(i int) string { return fmt.Sprintf("bench-c%d-%d", cs.run, i%cs.cfg.Rooms) }

// openAll opens every connection, Dialers at a time, and records the node's resident memory at
// every fifth of them.
func (cs *connSet) openAll(ctx context.Context, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, cs.cfg.Timeout)
	defer cancel()
	next := make(chan int)
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range cs.cfg.Dialers {
		wg.Go(func() {
			for i := range next {
				c, err := cs.open(ctx, i, "")
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err); cancel() })
					continue
				}
				cs.conns[i] = c
			}
		})
	}
	fifth := max(1, cs.cfg.Conns/5)
feed:
	for i := range cs.cfg.Conns {
		if i > 0 && i%fifth == 0 {
			if s, err := probe(ctx, cs.t.URL); err == nil {
				res.Figures[fmt.Sprintf("rss_mib_at_%d", i)] = s.RSS / (1 << 20)
			}
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("opening %d connections took longer than %s", cs.cfg.Conns, cs.cfg.Timeout)
	}
	return firstErr
}

// open makes connection i: hello, join its room (after cursor, when resuming) and, for the first
// BigRoom, the big room, each until synced.
func (cs *connSet) open(ctx context.Context, i int, after string) (*leanConn, error) {
	d := websocket.Dialer{
		ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: cs.cfg.Timeout,
		NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: cs.cfg.Sources[i%len(cs.cfg.Sources)]}}).DialContext,
	}
	ws, resp, err := d.DialContext(ctx, cs.t.URL, nil)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (%s)", err, resp.Status)
		}
		return nil, err
	}
	c := &leanConn{ws: ws, cursors: map[string]string{}}
	if err := c.handshake(ctx, cs.t, i); err != nil {
		ws.Close()
		return nil, err
	}
	rooms := []string{cs.room(i)}
	if i < cs.cfg.BigRoom {
		rooms = append(rooms, bigRoomName(cs.run))
	}
	for _, room := range rooms {
		if err := c.join(room, after); err != nil {
			ws.Close()
			return nil, err
		}
	}
	go c.readLoop()
	return c, nil
}

// publishBig publishes into the big room and waits, after each, until every member has it.
func (cs *connSet) publishBig(ctx context.Context, res *Result) (latencies, error) {
	pub, err := dial(ctx, cs.t.URL, cs.t, "bench-big-publisher", "")
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	big := bigRoomName(cs.run)
	var lat latencies
	for seq := range cs.cfg.Publishes {
		if seq > 0 {
			time.Sleep(cs.cfg.Interval)
		}
		p := newPayload(0, seq)
		s, err := pub.Send(big, "", p)
		if err != nil {
			return nil, err
		}
		if _, err := s.Wait(ctx); err != nil {
			return nil, fmt.Errorf("publish %d to the big room: %w", seq, err)
		}
		deadline := time.Now().Add(cs.cfg.Timeout)
		for _, c := range cs.conns[:cs.cfg.BigRoom] {
			at, ok := c.await(seq, deadline)
			if !ok {
				res.Lost++
				continue
			}
			lat = append(lat, at.Sub(time.Unix(0, p.T)))
		}
	}
	for _, c := range cs.conns[:cs.cfg.BigRoom] {
		res.Duplicate += int(c.dupes.Load())
	}
	return lat, nil
}

// churn closes and resumes Churn connections outside the big room, one after the other, from
// the cursor each had reached: a resume's time is from the dial to synced in its room.
func (cs *connSet) churn(ctx context.Context, res *Result) latencies {
	var lat latencies
	end := time.Now().Add(time.Duration(cs.cfg.Publishes) * cs.cfg.Interval)
	for n := 0; n < cs.cfg.Churn && ctx.Err() == nil; n++ {
		i := cs.cfg.BigRoom + rand.IntN(cs.cfg.Conns-cs.cfg.BigRoom)
		old := cs.conns[i]
		cursor := old.cursor(cs.room(i))
		old.ws.Close()
		<-old.done
		start := time.Now()
		c, err := cs.open(ctx, i, cursor)
		if err != nil {
			res.Errors++
			res.problem("resume of connection %d: %v", i, err)
			continue
		}
		lat = append(lat, time.Since(start))
		cs.conns[i] = c
		// Spread the resumes over the publishing.
		if left := cs.cfg.Churn - n - 1; left > 0 {
			time.Sleep(max(0, time.Until(end)/time.Duration(left+1)))
		}
	}
	return lat
}

func (cs *connSet) closeAll() {
	for _, c := range cs.conns {
		if c != nil {
			c.ws.Close()
		}
	}
	for _, c := range cs.conns {
		if c != nil {
			<-c.done
		}
	}
}

// leanConn is one of the scenario's connections: raw frames, a goroutine reading them once it is
// joined, what it needs and nothing more (100,000 of them share this process).
type leanConn struct {
	ws   *websocket.Conn
	done chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	cursors map[string]string // room: id of the last event read
	got     []time.Time       // the big room's messages, by sequence number: when read
	dupes   atomic.Int64
}

// frame is what the scenario reads of a server frame.
type frame struct {
	Type string          `json:"type"`
	Room string          `json:"room"`
	ID   string          `json:"id"`
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
	Code string          `json:"code"`
}

// read returns the next frame, waiting at most idle for it (0: no bound). Event frames are read
// in place (wire.ParseEventFrame): joining a room of 10,000 sends each member up to 10,000 join
// events, and this process reads them all.
func (c *leanConn) read(idle time.Duration) (frame, error) {
	var deadline time.Time
	if idle > 0 {
		deadline = time.Now().Add(idle)
	}
	c.ws.SetReadDeadline(deadline)
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return frame{}, err
	}
	if e, ok := wire.ParseEventFrame(b); ok {
		return frame{Type: "event", Room: e.Room, ID: e.ID, Kind: e.Kind, Body: e.Body}, nil
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, fmt.Errorf("undecodable frame %q: %v", b, err)
	}
	if f.Type == "error" || f.Type == "bye" {
		return f, fmt.Errorf("server said %s", b)
	}
	return f, nil
}

func (c *leanConn) handshake(ctx context.Context, t *Target, i int) error {
	tok, err := t.Token(fmt.Sprint("bench-conn-", i))(ctx)
	if err != nil {
		return err
	}
	if err := c.ws.WriteJSON(map[string]string{"type": "hello", "token": tok, "session": fmt.Sprint("s", i)}); err != nil {
		return err
	}
	f, err := c.read(time.Minute)
	if err != nil {
		return err
	}
	if f.Type != "welcome" {
		return fmt.Errorf("hello answered with %q", f.Type)
	}
	c.cond = sync.NewCond(&c.mu)
	c.done = make(chan struct{})
	return nil
}

// join joins room (from after, when not empty) and reads until the room is synced.
func (c *leanConn) join(room, after string) error {
	req := map[string]string{"type": "join", "ref": "j", "room": room}
	if after != "" {
		req["after"] = after
	}
	if err := c.ws.WriteJSON(req); err != nil {
		return err
	}
	for {
		f, err := c.read(time.Minute) // while frames keep coming
		if err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
		c.note(f)
		if f.Type == "synced" && f.Room == room {
			return nil
		}
	}
}

func (c *leanConn) readLoop() {
	defer close(c.done)
	for {
		f, err := c.read(0)
		if err != nil {
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.note(f)
	}
}

// note records an event: its room's cursor and, for a big-room message, when it arrived.
func (c *leanConn) note(f frame) {
	if f.Type != "event" {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cursors[f.Room] = strings.Clone(f.ID) // f shares the frame's memory
	if f.Kind != "message" {
		return
	}
	p, ok := readPayload(f.Body)
	if !ok || p.Seq < 0 || p.Seq > 1<<20 {
		return
	}
	for len(c.got) <= p.Seq {
		c.got = append(c.got, time.Time{})
	}
	if !c.got[p.Seq].IsZero() {
		c.dupes.Add(1)
		return
	}
	c.got[p.Seq] = now
	c.cond.Broadcast()
}

func (c *leanConn) cursor(room string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursors[room]
}

// await waits until the big room's message seq arrived (ok) or deadline passed or the
// connection ended.
func (c *leanConn) await(seq int, deadline time.Time) (at time.Time, ok bool) {
	stop := time.AfterFunc(time.Until(deadline), func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if seq < len(c.got) && !c.got[seq].IsZero() {
			return c.got[seq], true
		}
		select {
		case <-c.done:
			return time.Time{}, false
		default:
		}
		if !time.Now().Before(deadline) {
			return time.Time{}, false
		}
		c.cond.Wait()
	}
}

// ParseSources reads a list of loopback addresses to connect from: comma-separated addresses
// or ranges of the last byte (127.0.0.1-127.0.0.8), at most 256 in all.
func ParseSources(s string) ([]net.IP, error) {
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, b := net.ParseIP(from).To4(), net.ParseIP(to).To4()
		if !isRange {
			b = a
		}
		if a == nil || b == nil {
			return nil, fmt.Errorf("%q is not an IPv4 address or a range of them", part)
		}
		if !a.IsLoopback() || !b.IsLoopback() {
			return nil, fmt.Errorf("%q is not on loopback (127.0.0.0/8)", part)
		}
		if a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] > b[3] {
			return nil, fmt.Errorf("%q: a range runs over the last byte only, upwards", part)
		}
		for x := int(a[3]); x <= int(b[3]); x++ {
			if len(out) == 256 {
				return nil, fmt.Errorf("more than 256 addresses")
			}
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)))
		}
	}
	return out, nil
}
