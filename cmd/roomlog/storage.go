package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/roomlog/roomlog/actions"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/revocation"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/rooms/natsrelay"
	"github.com/roomlog/roomlog/transport"
)

// storage is the log a server runs on, with its hub.
type storage struct {
	log   eventlog.Log
	hub   *rooms.Hub
	where string // for the log line: the data file, or the stream and its servers
	once  sync.Once
	err   error
	stop  func() error // releases what the log ran on

	revocations *revocation.List // set by runServe, closed before the log
	actions     *actions.Log     // set by runServe, closed before the log
	// The webhooks' goroutines, stopped and waited for before the log closes.
	webhooks     sync.WaitGroup
	stopWebhooks context.CancelFunc
}

// close closes the log and what it ran on, once.
func (s *storage) close() error {
	s.once.Do(func() {
		if s.stopWebhooks != nil {
			s.stopWebhooks()
		}
		s.webhooks.Wait()
		if s.revocations != nil {
			s.revocations.Close() // before the log it reads
		}
		if s.actions != nil {
			s.actions.Close()
		}
		s.err = s.log.Close()
		if s.stop != nil {
			s.err = errors.Join(s.err, s.stop())
		}
	})
	return s.err
}

// openStorage opens the log (the data file, or JetStream with --nats) and the hub on it.
func openStorage(ctx context.Context, cfg serveConfig, metrics *transport.Metrics, logger *slog.Logger) (*storage, error) {
	if len(cfg.NATS) > 0 {
		return openJetStream(ctx, cfg, metrics, logger)
	}
	return openFile(ctx, cfg, metrics, logger)
}

// openFile opens the data file and the hub on it, and closes the sessions an unclean stop left
// joined.
func openFile(ctx context.Context, cfg serveConfig, metrics *transport.Metrics, logger *slog.Logger) (*storage, error) {
	log, err := boltlog.Open(cfg.Data, boltlog.Options{MaxBody: cfg.MaxFrame, KeyRetention: cfg.KeyRetention, OnCommit: metrics.ObserveCommit, Logger: logger})
	if errors.Is(err, boltlog.ErrLocked) {
		return nil, fmt.Errorf("%v (is another roomlog serving it? use another --data)", err)
	} else if err != nil {
		return nil, err
	}
	hub, err := newHub(log, cfg, metrics, logger, nil, 0)
	if err != nil {
		log.Close()
		return nil, err
	}
	if n, err := hub.CloseOrphans(ctx); err != nil {
		log.Close()
		return nil, fmt.Errorf("closing sessions left by the last run: %v", err)
	} else if n > 0 {
		logger.Info("closed sessions left by an unclean stop", "sessions", n)
	}
	return &storage{log: log, hub: hub, where: cfg.Data}, nil
}

// newHub makes the hub on log, with the application's hook deciding joins when cfg has one.
func newHub(log eventlog.Store, cfg serveConfig, metrics *transport.Metrics, logger *slog.Logger, relay rooms.Relay, ringSize int) (*rooms.Hub, error) {
	opts := rooms.Options{Grace: orOff(cfg.Grace, rooms.NoGrace), Logger: logger, Relay: relay, RingSize: ringSize}
	a, err := hookAuthorizer(cfg, metrics)
	if err != nil {
		return nil, err
	}
	if a != nil {
		opts.Authorizer = a
	}
	return rooms.NewHub(log, opts), nil
}

// jetStreamRingSize is how many recent events each active room keeps in memory on JetStream.
const jetStreamRingSize = 4096

// openJetStream connects to NATS and opens the log on its JetStream. Sessions the log records
// as joined may be served by other nodes now, so none is closed at start-up: the log writes the
// leaves of the sessions of nodes that died, after the grace period (jetstream.Options).
func openJetStream(ctx context.Context, cfg serveConfig, metrics *transport.Metrics, logger *slog.Logger) (*storage, error) {
	opts := []nats.Option{
		nats.Name("roomlog " + version), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { logger.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	urls := strings.Join(cfg.NATS, ",")
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("--nats %s: %v", urls, err)
	}
	log, err := jetstream.Open(ctx, nc, jetstream.Options{
		Stream: cfg.NATSStream, Replicas: cfg.NATSReplicas, MaxBody: cfg.MaxFrame, KeyRetention: cfg.KeyRetention,
		Node: cfg.NATSNode, LeaseTTL: cfg.NATSLease, OrphanGrace: orOff(cfg.Grace, -1), Logger: logger, OnRequest: metrics.ObserveJetStream,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("--nats %s: %v", urls, err)
	}
	// Signals reach the members on other nodes through the relay; it delivers to the hub, made
	// after it.
	var hubOf atomic.Pointer[rooms.Hub]
	relay, err := natsrelay.New(nc, jetstream.DefaultPrefix, func(s *rooms.Signal) int {
		if h := hubOf.Load(); h != nil {
			return h.Relayed(s)
		}
		return 0
	}, logger)
	if err != nil {
		log.Close()
		nc.Close()
		return nil, fmt.Errorf("--nats %s: signals: %v", urls, err)
	}
	// A member that falls behind the room's memory reads the log, which on JetStream is a round
	// trip to the servers: keep more of each busy room in memory than on one node.
	hub, err := newHub(log, cfg, metrics, logger, relay, jetStreamRingSize)
	if err != nil {
		relay.Close()
		log.Close()
		nc.Close()
		return nil, err
	}
	hubOf.Store(hub)
	stop := func() error { relay.Close(); nc.Close(); return nil }
	return &storage{log: log, hub: hub, where: "jetstream " + cfg.NATSStream + " on " + nc.ConnectedUrlRedacted(), stop: stop}, nil
}
