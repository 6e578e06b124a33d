package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomlog/roomlog/client"
)

// FanoutConfig: Rooms x Subscribers (per room), Publishers spread over the rooms, publishing at
// Rate events per second in total for Duration.
type FanoutConfig struct {
	Rooms, Subscribers, Publishers int
	Rate                           int
	Duration                       time.Duration
	// Every and OnWindow, when both are set, report the deliveries of each window of Every
	// while the scenario runs (the soak scenario); delivery latencies are then kept for one
	// window at a time, so a long run's memory stays flat.
	Every    time.Duration
	OnWindow func(Window)
}

// Window is what the subscribers received in one window of FanoutConfig.Every.
type Window struct {
	End       time.Duration // since publishing began
	Delivered int           // in the window
	P50, P99  time.Duration // from publish to delivery, in the window (sampled)
}

// subscriber checks what one member receives: per publisher, sequence numbers in order, each once.
type subscriber struct {
	mu       sync.Mutex
	last     []int // last sequence seen per publisher, -1 before any
	received int
	dup      int
	gaps     int
	lat      latencies
}

func (s *subscriber) handle(e client.Event) {
	if e.Kind != "message" {
		return
	}
	p, ok := readPayload(e.Body)
	if !ok {
		var slow payload // not in the order newPayload writes: decode it the general way
		if json.Unmarshal(e.Body, &slow) != nil {
			return
		}
		p = slow
	}
	if p.P < 0 || p.P >= len(s.last) {
		return
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case p.Seq <= s.last[p.P]:
		s.dup++
	case p.Seq != s.last[p.P]+1:
		s.gaps++
		s.last[p.P] = p.Seq
	default:
		s.last[p.P] = p.Seq
	}
	s.received++
	if s.received%8 == 0 { // a sample keeps memory bounded
		s.lat = append(s.lat, time.Duration(now-p.T))
	}
}

// Fanout runs the fan-out scenario.
func Fanout(ctx context.Context, t *Target, cfg FanoutConfig) (*Result, error) {
	res := &Result{Scenario: "fanout", Figures: map[string]float64{}, Params: map[string]any{
		"rooms": cfg.Rooms, "subscribers_per_room": cfg.Subscribers, "publishers": cfg.Publishers,
		"rate": cfg.Rate, "duration": cfg.Duration.String(),
	}}
	var clients []*client.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	subsOf, err := subscribeAll(ctx, t, cfg, &clients)
	if err != nil {
		return nil, err
	}
	pubs := &fanoutPublishers{cfg: cfg, acked: make([]atomic.Int64, cfg.Publishers)}
	start := time.Now()
	stopWindows := reportWindows(cfg, subsOf, start)
	err = pubs.run(ctx, t, start.Add(cfg.Duration), &clients)
	stopWindows()
	if err != nil {
		return nil, err
	}
	publishedAt := time.Since(start)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted after %v: %w", publishedAt.Round(time.Second), ctx.Err())
	}
	waitDelivered(subsOf, pubs.wantIn, time.Now().Add(30*time.Second))
	elapsed := time.Since(start)
	delivered, lat := tallyDeliveries(res, subsOf, pubs.wantIn)
	res.Errors = int(pubs.errors.Load())
	res.Seconds = elapsed.Seconds()
	var published int64
	for p := range pubs.acked {
		published += pubs.acked[p].Load()
	}
	res.Figures["published"] = float64(published)
	res.Figures["publishes_per_s"] = float64(published) / publishedAt.Seconds()
	res.Figures["delivered"] = float64(delivered)
	res.Figures["deliveries_per_s"] = float64(delivered) / elapsed.Seconds()
	lat.report(res.Figures, "delivery_")
	pubs.lat.report(res.Figures, "ack_")
	return res, nil
}

// reportWindows calls cfg.OnWindow every cfg.Every until the returned stop is called.
func reportWindows(cfg FanoutConfig, subsOf [][]*subscriber, start time.Time) (stop func()) {
	if cfg.Every <= 0 || cfg.OnWindow == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(cfg.Every)
		defer tick.Stop()
		before := 0
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var window latencies
			received := 0
			for _, subs := range subsOf {
				for _, s := range subs {
					s.mu.Lock()
					window = append(window, s.lat...)
					s.lat = s.lat[:0]
					received += s.received
					s.mu.Unlock()
				}
			}
			w := Window{End: time.Since(start), Delivered: received - before}
			before = received
			if len(window) > 0 {
				slices.Sort(window)
				w.P50, w.P99 = window[len(window)/2], window[min(len(window)-1, len(window)*99/100)]
			}
			cfg.OnWindow(w)
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// subscribeAll connects cfg.Subscribers readers to each room and returns once each has synced;
// their clients are added to clients, for the caller to close.
func subscribeAll(ctx context.Context, t *Target, cfg FanoutConfig, clients *[]*client.Client) ([][]*subscriber, error) {
	subsOf := make([][]*subscriber, cfg.Rooms)
	for r := range cfg.Rooms {
		for s := range cfg.Subscribers {
			c, err := dial(ctx, t.reader(r*cfg.Subscribers+s), t, fmt.Sprintf("sub-%d-%d", r, s), "")
			if err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
			*clients = append(*clients, c)
			sub := &subscriber{last: make([]int, cfg.Publishers)}
			for i := range sub.last {
				sub.last[i] = -1
			}
			room, err := c.Join(ctx, roomName(r), client.JoinOptions{Handler: sub.handle})
			if err != nil {
				return nil, fmt.Errorf("join: %w", err)
			}
			select {
			case <-room.Synced():
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			subsOf[r] = append(subsOf[r], sub)
		}
	}
	return subsOf, nil
}

// fanoutPublishers are the fan-out's publishers: publisher p sends to room p%Rooms, paced so that
// together they send cfg.Rate events a second.
type fanoutPublishers struct {
	cfg    FanoutConfig
	acked  []atomic.Int64 // per publisher
	errors atomic.Int64
	latMu  sync.Mutex
	lat    latencies // every 8th ack's latency
}

// run publishes until deadline and returns once every publish is answered.
func (f *fanoutPublishers) run(ctx context.Context, t *Target, deadline time.Time, clients *[]*client.Client) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for p := range f.cfg.Publishers {
		c, err := dial(ctx, t.URL, t, fmt.Sprintf("pub-%d", p), "")
		if err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		*clients = append(*clients, c)
		inflight := make(chan sending, 1024)
		wg.Go(func() { f.send(ctx, c, p, deadline, inflight) })
		wg.Go(func() { f.awaitAcks(ctx, p, inflight) })
	}
	return nil
}

type sending struct {
	s  *client.Sending
	at time.Time
}

// send is publisher p's paced sends, each handed to inflight.
func (f *fanoutPublishers) send(ctx context.Context, c *client.Client, p int, deadline time.Time, inflight chan<- sending) {
	defer close(inflight)
	interval := time.Duration(float64(time.Second) * float64(f.cfg.Publishers) / float64(f.cfg.Rate))
	next := time.Now()
	for seq := 0; time.Now().Before(deadline); seq++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done(): // interrupted: stop publishing at once
				return
			}
		}
		next = next.Add(interval)
		s, err := c.Send(roomName(p%f.cfg.Rooms), "", newPayload(p, seq))
		if err != nil {
			f.errors.Add(1)
			return
		}
		inflight <- sending{s, time.Now()}
	}
}

// awaitAcks waits for publisher p's acks, in order.
func (f *fanoutPublishers) awaitAcks(ctx context.Context, p int, inflight <-chan sending) {
	var mine latencies
	for s := range inflight {
		if _, err := s.s.Wait(ctx); err != nil {
			f.errors.Add(1)
			continue
		}
		if f.acked[p].Add(1)%8 == 0 {
			mine = append(mine, time.Since(s.at))
		}
	}
	f.latMu.Lock()
	f.lat = append(f.lat, mine...)
	f.latMu.Unlock()
}

// wantIn is how many acked events room r holds.
func (f *fanoutPublishers) wantIn(r int) int {
	n := 0
	for p := range f.cfg.Publishers {
		if p%f.cfg.Rooms == r {
			n += int(f.acked[p].Load())
		}
	}
	return n
}

// waitDelivered waits until every subscriber has every acked event of its room, or until.
func waitDelivered(subsOf [][]*subscriber, want func(room int) int, until time.Time) {
	for time.Now().Before(until) {
		done := true
		for r, ss := range subsOf {
			for _, s := range ss {
				s.mu.Lock()
				if s.received-s.dup < want(r) {
					done = false
				}
				s.mu.Unlock()
			}
		}
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tallyDeliveries adds what the subscribers lost, got twice or out of order to res, and returns
// how many events they were delivered and the delivery latencies.
func tallyDeliveries(res *Result, subsOf [][]*subscriber, want func(room int) int) (int, latencies) {
	var delivered int
	var lat latencies
	for r, ss := range subsOf {
		for _, s := range ss {
			s.mu.Lock()
			delivered += s.received
			lat = append(lat, s.lat...)
			if missing := want(r) - (s.received - s.dup); missing > 0 {
				res.Lost += missing
			}
			res.Duplicate += s.dup
			if s.gaps > 0 {
				res.problem("a subscriber of %s saw %d gaps in a publisher's sequence", roomName(r), s.gaps)
			}
			s.mu.Unlock()
		}
	}
	return delivered, lat
}

func roomName(r int) string { return fmt.Sprintf("bench-%d", r) }

// PublishConfig: one connection keeping InFlight publishes outstanding for Duration.
type PublishConfig struct {
	InFlight int
	Duration time.Duration
}

// Publish runs the acked-publish scenario.
func Publish(ctx context.Context, t *Target, cfg PublishConfig) (*Result, error) {
	res := &Result{Scenario: "publish", Figures: map[string]float64{}, Params: map[string]any{
		"in_flight": cfg.InFlight, "duration": cfg.Duration.String(),
	}}
	c, err := dial(ctx, t.URL, t, "publisher", "")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	type sent struct {
		s  *client.Sending
		at time.Time
	}
	window := make(chan sent, cfg.InFlight)
	var lat latencies
	ids := map[string]bool{}
	var acked, waitErrors int
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range window {
			a, err := s.s.Wait(ctx)
			if err != nil {
				waitErrors++
				continue
			}
			if ids[a.ID] {
				res.Duplicate++
			}
			ids[a.ID] = true
			acked++
			lat = append(lat, time.Since(s.at))
		}
	}()
	for seq := 0; time.Now().Before(deadline); seq++ {
		s, err := c.Send("bench-publish", "", newPayload(0, seq))
		if err != nil {
			res.Errors++
			break
		}
		window <- sent{s, time.Now()}
	}
	close(window)
	<-done
	res.Errors += waitErrors
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.Figures["acked"] = float64(acked)
	res.Figures["acks_per_s"] = float64(acked) / elapsed.Seconds()
	lat.report(res.Figures, "ack_")
	return res, nil
}

// ResumeConfig: Clients that each missed Missed events reconnect at once.
type ResumeConfig struct {
	Clients, Missed int
}

// Resume runs the resume scenario: it fills a room, then has every client join it from the start
// at the same moment, and measures until all have every event.
func Resume(ctx context.Context, t *Target, cfg ResumeConfig) (*Result, error) {
	res := &Result{Scenario: "resume", Figures: map[string]float64{}, Params: map[string]any{
		"clients": cfg.Clients, "missed": cfg.Missed,
	}}
	room := fmt.Sprintf("bench-resume-%d", time.Now().UnixNano())
	filler, err := dial(ctx, t.URL, t, "filler", "")
	if err != nil {
		return nil, err
	}
	window := make(chan *client.Sending, 256)
	go func() {
		defer close(window)
		for i := range cfg.Missed {
			s, err := filler.Send(room, "", newPayload(0, i))
			if err != nil {
				return
			}
			window <- s
		}
	}()
	for s := range window {
		if _, err := s.Wait(ctx); err != nil {
			filler.Close()
			return nil, fmt.Errorf("filling the room: %w", err)
		}
	}
	filler.Close()
	clients := make([]*client.Client, cfg.Clients)
	for i := range clients {
		if clients[i], err = dial(ctx, t.reader(i), t, fmt.Sprint("resumer-", i), ""); err != nil {
			return nil, err
		}
		defer clients[i].Close()
	}
	counts := make([]atomic.Int64, cfg.Clients)
	var slowest atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			all := make(chan struct{})
			var once sync.Once
			_, err := c.Join(ctx, room, client.JoinOptions{FromStart: true, Handler: func(e client.Event) {
				if e.Kind == "message" && counts[i].Add(1) == int64(cfg.Missed) {
					once.Do(func() { close(all) })
				}
			}})
			if err != nil {
				res.problem("join: %v", err)
				return
			}
			select {
			case <-all:
				d := time.Since(start)
				for {
					cur := slowest.Load()
					if int64(d) <= cur || slowest.CompareAndSwap(cur, int64(d)) {
						break
					}
				}
			case <-time.After(60 * time.Second):
				res.problem("a client had %d of %d events after 60s", counts[i].Load(), cfg.Missed)
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	for i := range counts {
		n := int(counts[i].Load())
		if n < cfg.Missed {
			res.Lost += cfg.Missed - n
		} else {
			res.Duplicate += n - cfg.Missed
		}
	}
	res.Figures["all_caught_up_ms"] = float64(time.Duration(slowest.Load()).Microseconds()) / 1000
	res.Figures["events_per_s"] = float64(cfg.Clients*cfg.Missed) / time.Duration(slowest.Load()).Seconds()
	return res, nil
}
