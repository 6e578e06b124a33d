package bench

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomlog/roomlog/client"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func event(p, seq int) client.Event {
	b, _ := json.Marshal(newPayload(p, seq))
	return client.Event{Kind: "message", Body: b}
}

// The checker behind every scenario: gaps, repeats and shortfalls are counted, not hidden.
func TestSubscriberCountsLossAndDuplicates(t *testing.T) {
	s := &subscriber{last: []int{-1, -1}}
	for _, e := range []client.Event{event(0, 0), event(0, 1), event(0, 1), event(1, 0), event(0, 3)} {
		s.handle(e)
	}
	if s.dup != 1 || s.gaps != 1 || s.received != 5 || s.last[0] != 3 {
		t.Fatalf("checker state %+v", s)
	}
	if p, ok := readPayload(event(7, 42).Body); !ok || p.P != 7 || p.Seq != 42 || p.T == 0 {
		t.Fatalf("readPayload = %+v %v", p, ok)
	}
	r := &Result{Lost: 2}
	if r.OK() || !strings.Contains(r.Text(), "LOST 2") {
		t.Fatalf("a lossy result reads OK: %s", r.Text())
	}
}

func TestMeasureLimits(t *testing.T) {
	lim, err := MeasureLimits(200 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if lim.FsyncsPerSec <= 0 || lim.CommitsPerSec <= 0 {
		t.Fatalf("limits %+v", lim)
	}
	t.Logf("this disk: %.0f fsyncs/s, %.0f single-event commits/s", lim.FsyncsPerSec, lim.CommitsPerSec)
}

// Each scenario, small, against a server in this process: it runs, measures and finds nothing
// lost.
func TestScenarios(t *testing.T) {
	target, err := InProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runs := []func() (*Result, error){
		func() (*Result, error) {
			return Fanout(ctx, target, FanoutConfig{Rooms: 2, Subscribers: 3, Publishers: 2, Rate: 400, Duration: time.Second})
		},
		func() (*Result, error) {
			return Publish(ctx, target, PublishConfig{InFlight: 16, Duration: time.Second})
		},
		func() (*Result, error) { return Resume(ctx, target, ResumeConfig{Clients: 5, Missed: 500}) },
		func() (*Result, error) {
			res, err := Connections(ctx, target, ConnectionsConfig{
				Conns: 60, Rooms: 3, BigRoom: 20, Sources: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)},
				Publishes: 3, Interval: 50 * time.Millisecond, Churn: 5, Dialers: 8, Settle: 100 * time.Millisecond,
			})
			if err == nil {
				for _, figure := range []string{"big_room_p99_ms", "resume_p99_ms", "kib_per_conn", "rss_mib_at_12", "rss_settled_mib"} {
					if _, ok := res.Figures[figure]; !ok {
						t.Errorf("connections: no %s in %v", figure, res.Figures)
					}
				}
				if res.Figures["resumed"] != 5 {
					t.Errorf("connections: %v of 5 resumed", res.Figures["resumed"])
				}
			}
			return res, err
		},
	}
	for _, run := range runs {
		res, err := run()
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Fatalf("%s", res.Text())
		}
		var back map[string]any
		if err := json.Unmarshal(res.JSON(), &back); err != nil || back["scenario"] != res.Scenario {
			t.Fatalf("JSON result %s: %v", res.JSON(), err)
		}
		t.Logf("%s", res.Text())
	}
}

// TestFanoutStopsWhenInterrupted: a fan-out interrupted (SIGTERM: its context ends) stops
// publishing at once and says so, instead of publishing on to the end of its duration.
func TestFanoutStopsWhenInterrupted(t *testing.T) {
	target, err := InProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	start := time.Now()
	_, err = Fanout(ctx, target, FanoutConfig{Rooms: 1, Subscribers: 2, Publishers: 1, Rate: 100, Duration: 10 * time.Minute})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Minute {
		t.Fatalf("interrupted after a second: %v after %v", err, time.Since(start))
	}
}

func TestParseSources(t *testing.T) {
	ips, err := ParseSources("127.0.0.1-127.0.0.3, 127.0.1.9")
	if err != nil || len(ips) != 4 || !ips[2].Equal(net.IPv4(127, 0, 0, 3)) || !ips[3].Equal(net.IPv4(127, 0, 1, 9)) {
		t.Fatalf("ParseSources: %v %v", ips, err)
	}
	for _, bad := range []string{"", "10.0.0.1", "127.0.0.1-10.0.0.2", "127.0.0.5-127.0.0.2", "127.0.0.1-127.0.1.2", "::1", "localhost", "127.0.0.0-127.0.0.255,127.0.1.1"} {
		if ips, err := ParseSources(bad); err == nil {
			t.Errorf("ParseSources(%q) = %v, want an error", bad, ips)
		}
	}
}

// A short soak samples the node and compares the samples after the warmup with the last.
func TestSoakSamples(t *testing.T) {
	target, err := InProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log strings.Builder
	res, err := Soak(ctx, target, SoakConfig{
		Fanout: FanoutConfig{Rooms: 2, Subscribers: 3, Publishers: 2, Rate: 200, Duration: 3 * time.Second, Every: 500 * time.Millisecond},
		Warmup: time.Second, Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("%s", res.Text())
	}
	for _, f := range []string{"node0_heap_mib_start", "node0_heap_mib_end", "node0_goroutines_end", "node0_open_files_end", "node0_rss_mib_end"} {
		if res.Figures[f] <= 0 {
			t.Errorf("%s = %v", f, res.Figures[f])
		}
	}
	if runtime.GOOS == "linux" && res.Figures["node0_anon_rss_mib_end"] <= 0 {
		t.Errorf("no anonymous resident memory read on Linux: %v", res.Figures)
	}
	if strings.Count(log.String(), "\n") < 4 {
		t.Errorf("a sample every 500ms for 3s logged %q", log.String())
	}
}

// More connections than this process may open files is refused at once, saying why.
func TestConnectionsWithinTheFileLimit(t *testing.T) {
	lim := openFileLimit()
	if lim == 0 {
		t.Skip("no open-file limit here")
	}
	target, err := InProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	_, err = Connections(context.Background(), target, ConnectionsConfig{Conns: lim})
	if err == nil || !strings.Contains(err.Error(), "open files") {
		t.Fatalf("%d connections with a limit of %d files: %v", lim, lim, err)
	}
}
