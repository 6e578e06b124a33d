package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/roomlog/roomlog/bench"
)

const benchUsage = `Usage: roomlog bench fanout|soak|publish|resume|connections [flags]

Drives a server through the Go client and prints what it measured, checking that nothing was
lost or duplicated (exit 1 if something was). Without --server it starts a server in this
process on a temporary data file. Run 'roomlog bench SCENARIO --help' for the flags.

soak is fanout for a long time (--duration 1h at half the maximum --rate), sampling each
server's resident memory, Go heap in use, goroutines and open files (its /metrics) and the
delivery p99 every --every, and comparing the first samples after --warmup with the last.

connections opens --conns connections to one node (joined --rooms rooms, the first --big-room of
them one big room too) from the --sources addresses, reads the node's resident memory, then
publishes to the big room while closing and resuming --churn others. For more connections than
one address has ports (about 28,000), give several: --sources 127.0.0.1-127.0.0.8. The node needs
--max-conns above --conns (default 50,000) and a file limit above it (ulimit -n), as this process
does.
`

func benchCmd(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(os.Stderr, benchUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	scenario := args[0]
	c := newCommand("bench "+scenario, "Runs the "+scenario+" scenario.")
	server := c.String("server", "ROOMLOG_BENCH_SERVER", "", "server URL (ws:// or http://), or several comma-separated nodes sharing one log (--nats): publishers use the first, readers the others; empty starts one in this process")
	secret := c.String("secret", "ROOMLOG_JWT_SECRET", "", "the server's HS256 secret, to sign the load generator's tokens (with --server)")
	duration := c.Duration("duration", "ROOMLOG_BENCH_DURATION", 10*time.Second, "how long to publish")
	asJSON := c.Bool("json", "ROOMLOG_BENCH_JSON", false, "print the result as JSON")
	var run func(ctx context.Context, t *bench.Target) (*bench.Result, error)
	budget := 5 * time.Minute // beyond --duration: every run is bounded
	switch scenario {
	case "fanout":
		fanout := addFanoutFlags(c, duration, 4000)
		run = func(ctx context.Context, t *bench.Target) (*bench.Result, error) {
			cfg, err := fanout()
			if err != nil {
				return nil, err
			}
			return bench.Fanout(ctx, t, cfg)
		}
	case "soak":
		fanout := addFanoutFlags(c, duration, 2000)
		every := c.Duration("every", "ROOMLOG_BENCH_EVERY", 10*time.Second, "how often to sample the servers' /metrics and the delivery p99")
		warmup := c.Duration("warmup", "ROOMLOG_BENCH_WARMUP", 0, "left out of the comparison (default: a fifth of --duration)")
		run = func(ctx context.Context, t *bench.Target) (*bench.Result, error) {
			cfg, err := fanout()
			if err != nil {
				return nil, err
			}
			if *every <= 0 || *warmup < 0 {
				return nil, fmt.Errorf("--every must be positive and --warmup not negative")
			}
			cfg.Every = *every
			return bench.Soak(ctx, t, bench.SoakConfig{Fanout: cfg, Warmup: *warmup, Log: os.Stderr})
		}
	case "publish":
		inFlight := c.Int("in-flight", "ROOMLOG_BENCH_IN_FLIGHT", 64, "publishes kept in flight")
		run = func(ctx context.Context, t *bench.Target) (*bench.Result, error) {
			if *inFlight <= 0 {
				return nil, fmt.Errorf("--in-flight must be positive")
			}
			return bench.Publish(ctx, t, bench.PublishConfig{InFlight: *inFlight, Duration: *duration})
		}
	case "resume":
		clients := c.Int("clients", "ROOMLOG_BENCH_CLIENTS", 100, "clients resuming at once")
		missed := c.Int("missed", "ROOMLOG_BENCH_MISSED", 10000, "events each client missed")
		run = func(ctx context.Context, t *bench.Target) (*bench.Result, error) {
			if *clients <= 0 || *missed <= 0 {
				return nil, fmt.Errorf("--clients and --missed must be positive")
			}
			return bench.Resume(ctx, t, bench.ResumeConfig{Clients: *clients, Missed: *missed})
		}
	case "connections":
		run = addConnectionsFlags(c)
		budget = 40 * time.Minute // opening is bounded by 10 minutes, settling by --settle, each publish's delivery by 10
	default:
		fmt.Fprintf(os.Stderr, "roomlog bench: unknown scenario %q (fanout, soak, publish, resume or connections)\n", scenario)
		return 2
	}
	if code, ok := c.parse(args[1:]); !ok {
		return code
	}
	if *duration <= 0 {
		return usageError("bench "+scenario, fmt.Errorf("--duration must be positive"))
	}
	var target *bench.Target
	var err error
	if *server != "" {
		target, err = bench.Remote(splitList(*server), *secret)
	} else {
		target, err = bench.InProcess()
	}
	if err != nil {
		return fail("bench", err)
	}
	defer target.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration+budget)
	defer cancel()
	// The machine's raw limits, in the same run, to read the figures against.
	limits, err := bench.MeasureLimits(2 * time.Second)
	if err != nil {
		return fail("bench", fmt.Errorf("measuring the disk: %v", err))
	}
	res, err := run(ctx, target)
	if err != nil {
		return fail("bench", err)
	}
	limits.Add(res)
	if *asJSON {
		fmt.Println(string(res.JSON()))
	} else {
		fmt.Print(res.Text())
	}
	if !res.OK() {
		return 1
	}
	return 0
}

// addFanoutFlags adds the fan-out scenario's flags (rate defaulting to rate); the returned
// function reads them into a configuration.
func addFanoutFlags(c *command, duration *time.Duration, rate int) func() (bench.FanoutConfig, error) {
	rooms := c.Int("rooms", "ROOMLOG_BENCH_ROOMS", 10, "rooms")
	subs := c.Int("subscribers", "ROOMLOG_BENCH_SUBSCRIBERS", 100, "subscribers per room")
	pubs := c.Int("publishers", "ROOMLOG_BENCH_PUBLISHERS", 10, "publishers, spread over the rooms")
	perSecond := c.Int("rate", "ROOMLOG_BENCH_RATE", rate, "publishes per second, in total")
	return func() (bench.FanoutConfig, error) {
		if *rooms <= 0 || *subs <= 0 || *pubs <= 0 || *perSecond <= 0 {
			return bench.FanoutConfig{}, fmt.Errorf("--rooms, --subscribers, --publishers and --rate must be positive")
		}
		return bench.FanoutConfig{Rooms: *rooms, Subscribers: *subs, Publishers: *pubs, Rate: *perSecond, Duration: *duration}, nil
	}
}

// addConnectionsFlags adds the connections scenario's flags; the returned function runs it.
func addConnectionsFlags(c *command) func(ctx context.Context, t *bench.Target) (*bench.Result, error) {
	conns := c.Int("conns", "ROOMLOG_BENCH_CONNS", 10000, "connections to open, each authenticated and joined")
	rooms := c.Int("rooms", "ROOMLOG_BENCH_ROOMS", 0, "rooms they are spread over (default: --conns/100)")
	big := c.Int("big-room", "ROOMLOG_BENCH_BIG_ROOM", 10000, "connections that also join the big room")
	sources := c.String("sources", "ROOMLOG_BENCH_SOURCES", "127.0.0.1", "loopback addresses to connect from, in turn: a list (127.0.0.1,127.0.0.2) or a range (127.0.0.1-127.0.0.8)")
	publishes := c.Int("publishes", "ROOMLOG_BENCH_PUBLISHES", 20, "events published to the big room")
	interval := c.Duration("interval", "ROOMLOG_BENCH_INTERVAL", 500*time.Millisecond, "time between them")
	churn := c.Int("churn", "ROOMLOG_BENCH_CHURN", 100, "connections closed and resumed meanwhile (-1: none)")
	dialers := c.Int("dialers", "ROOMLOG_BENCH_DIALERS", 64, "connections being opened at once")
	settle := c.Duration("settle", "ROOMLOG_BENCH_SETTLE", 0, "how long the node is left idle once all are open before its memory is read again (an idle Go process returns its garbage within about 150s)")
	return func(ctx context.Context, t *bench.Target) (*bench.Result, error) {
		if *conns <= 0 || *rooms < 0 || *big <= 0 || *publishes <= 0 || *interval <= 0 || *dialers <= 0 || *settle < 0 {
			return nil, fmt.Errorf("--conns, --big-room, --publishes, --interval and --dialers must be positive, --rooms and --settle not negative")
		}
		if *settle > 10*time.Minute {
			return nil, fmt.Errorf("--settle must be at most 10m")
		}
		ips, err := bench.ParseSources(*sources)
		if err != nil {
			return nil, fmt.Errorf("--sources: %v", err)
		}
		return bench.Connections(ctx, t, bench.ConnectionsConfig{
			Conns: *conns, Rooms: *rooms, BigRoom: *big, Sources: ips,
			Publishes: *publishes, Interval: *interval, Churn: *churn, Dialers: *dialers, Settle: *settle,
		})
	}
}
