package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/defaults"
)

// Defaults of Options.
const (
	DefaultStream      = "ROOMLOG"
	DefaultPrefix      = "roomlog"
	DefaultTimeout     = 10 * time.Second
	DefaultMaxBatch    = 64
	DefaultBackstop    = time.Second
	DefaultHeartbeat   = 2 * time.Second
	DefaultOrphanGrace = 30 * time.Second
	maxRetries         = 50 // conditional appends refused before an append gives up
)

// Options configure Open. The zero value of each field is its default.
type Options struct {
	// Stream is the JetStream stream of the log, created when missing. Default DefaultStream.
	// Nodes of one deployment name the same stream.
	Stream string
	// Prefix begins every subject of the stream. Default DefaultPrefix.
	Prefix string
	// Replicas is the stream's and bucket's replica count when Open creates them: 0 takes 3 when
	// the JetStream cluster can place three, else 1 (at once on a single server; on a cluster,
	// after asking for three for 15 s, since a forming cluster knows its servers one by one).
	// A count the cluster cannot place yet is asked for until Open's minute is up. An existing
	// stream keeps its own.
	Replicas int
	// MaxBody limits an event body's compact JSON size. Default eventlog.DefaultMaxBody.
	MaxBody int
	// KeyRetention is how long idempotency keys are remembered. Default
	// eventlog.DefaultKeyRetention (24 h).
	KeyRetention time.Duration
	// Timeout bounds each request to JetStream that has no deadline of its own. Default 10 s.
	Timeout time.Duration
	// MaxBatch bounds the events of one room appended in one atomic batch. Default 64. On a
	// stream of one replica, where nats-server stages every atomic batch on disk, a room's
	// queued events go one by one until minDiskBatch of them wait.
	MaxBatch int
	// Backstop is how often the node checks that no stored event went unannounced to its
	// watchers (a republished notice can be lost like any core NATS message). Default 1 s.
	Backstop time.Duration
	// Node names this node in the membership markers of the sessions it serves and in its
	// heartbeats. Default: a new random name at every Open.
	Node string
	// Heartbeat is how often the node tells the others it is alive (bucket <Stream>_NODES); a
	// node silent for three heartbeats is dead. Default 2 s.
	Heartbeat time.Duration
	// OrphanGrace is how long after a node is found dead the sessions it served stay members
	// (they may reconnect to another node meanwhile) before a surviving node writes their leave
	// events: the server's grace period. Default 30 s; a negative value means none.
	OrphanGrace time.Duration
	// LeaseTTL is how long a node holding a lease (Acquire) may stay silent before another
	// takes it over; it renews every LeaseTTL/3. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ReadOnly opens an existing stream for reading only, as auditors do: Open creates and
	// changes nothing, the node sends no heartbeat and sweeps nothing, and appends, acks and
	// compactions fail with ErrReadOnly.
	ReadOnly bool
	// Now is the clock of ids and key retention; tests set it. Default time.Now.
	Now func() time.Time
	// Logger gets what an operator should know. Default slog.Default().
	Logger *slog.Logger
	// OnRequest, when set, is called after every append round trip with its duration and
	// whether JetStream refused it because another append came first (a retry follows). It
	// must not block.
	OnRequest func(took time.Duration, conflict bool)
}

func (o Options) withDefaults() Options {
	defaults.Zero(&o.Stream, DefaultStream)
	defaults.Zero(&o.Prefix, DefaultPrefix)
	defaults.Positive(&o.MaxBody, eventlog.DefaultMaxBody)
	defaults.Positive(&o.KeyRetention, eventlog.DefaultKeyRetention)
	defaults.Positive(&o.Timeout, DefaultTimeout)
	defaults.Positive(&o.MaxBatch, DefaultMaxBatch)
	defaults.Positive(&o.Backstop, DefaultBackstop)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Node == "" {
		o.Node = nuid.Next()
	}
	defaults.Positive(&o.Heartbeat, DefaultHeartbeat)
	defaults.Positive(&o.LeaseTTL, DefaultLeaseTTL)
	if o.OrphanGrace == 0 {
		o.OrphanGrace = DefaultOrphanGrace
	} else if o.OrphanGrace < 0 {
		o.OrphanGrace = 0
	}
	defaults.Zero(&o.Logger, slog.Default())
	return o
}

// ErrReadOnly is returned for writes to a log opened with Options.ReadOnly.
var ErrReadOnly = errors.New("eventlog/jetstream: the log is open read-only")

// recordOverhead bounds what an event message carries besides its body: the record's hash and
// fields (user, session, key, kind) and the headers.
const recordOverhead = 2048

// Log is the event log on a JetStream stream. It is safe for concurrent use; many Logs, in many
// processes, may share one stream.
type Log struct {
	opts     Options
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	acks     jetstream.KeyValue
	subj     subjects
	ids      ids
	node     string
	replicas int // the stream's

	mu      sync.Mutex
	closed  bool
	writers map[string]*roomWriter // rooms with appends queued or in flight
	wg      sync.WaitGroup         // the room writers

	watch   *watchers
	nodes   *nodes
	forgets *forgetter // nil on a read-only log
	marks   *marker    // nil on a read-only log
	answers *responses

	// stopping ends the appends still queued when Close has waited Options.Timeout for them
	// (JetStream out of reach: there is nothing to wait for).
	stopping context.Context
	stopNow  context.CancelFunc

	cache *readCache // catch-up reads (cache.go)

	cursorsMu sync.Mutex
	cursors   map[string]cursor // the cursors this node wrote last (cursors.go)

	leasesMu sync.Mutex
	leases   jetstream.KeyValue // the bucket of leases, once opened (lease.go)
}

// The roles of eventlog the JetStream backend has: all of them, and Membership.
var (
	_ eventlog.Store         = (*Log)(nil)
	_ eventlog.HealthChecker = (*Log)(nil)
	_ eventlog.Membership    = (*Log)(nil)
)

// Open opens the log on nc's JetStream, creating its stream and bucket if they are missing. The
// caller keeps nc and closes it after Close.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Log, error) {
	opts = opts.withDefaults()
	if limit := nc.MaxPayload(); limit > 0 && int64(opts.MaxBody)+recordOverhead > limit {
		return nil, fmt.Errorf("eventlog/jetstream: bodies of up to %d bytes do not fit the NATS server's max_payload of %d bytes (raise max_payload, or lower the body limit)", opts.MaxBody, limit)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	l := &Log{opts: opts, nc: nc, js: js, subj: subjects{opts.Prefix}, node: opts.Node, writers: map[string]*roomWriter{}, cursors: map[string]cursor{}, cache: newReadCache()}
	l.ids.now = opts.Now
	l.stopping, l.stopNow = context.WithCancel(context.Background())
	if l.answers, err = startResponses(nc); err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	if err := l.start(ctx); err != nil {
		l.answers.stop()
		if l.watch != nil {
			l.watch.stop()
		}
		return nil, err
	}
	return l, nil
}

// start sets the stream up and starts the watchers, the heartbeats and the removal of the
// markers of sessions that left.
func (l *Log) start(ctx context.Context) error {
	if err := l.setup(ctx); err != nil {
		return err
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: stream %s: %w", l.opts.Stream, err)
	}
	l.ids.seen(info.State.LastSeq)
	l.replicas = info.Config.Replicas
	if l.watch, err = startWatchers(l, info.State.LastSeq); err != nil {
		return err
	}
	if l.opts.ReadOnly {
		return nil // not a node: no heartbeat, no sweep
	}
	l.forgets = startForgetter(l)
	l.marks = startMarker(l)
	if l.nodes, err = startNodes(ctx, l, info.Config.Replicas); err != nil {
		l.forgets.close()
		l.marks.close()
	}
	return err
}

// setup creates or checks the stream and the cursor bucket.
func (l *Log) setup(ctx context.Context) error {
	cfg := jetstream.StreamConfig{
		Name:               l.opts.Stream,
		Description:        "roomlog event log",
		Subjects:           l.subj.stored(),
		Storage:            jetstream.FileStorage,
		Replicas:           l.opts.Replicas,
		AllowDirect:        true,
		AllowMsgTTL:        true,
		AllowAtomicPublish: true,
		AllowRollup:        true, // the key watermarks: one message per room
		DenyDelete:         true,
		Discard:            jetstream.DiscardNew,
		RePublish:          &jetstream.RePublish{Source: l.subj.allEvents(), Destination: l.subj.live(), HeadersOnly: true},
	}
	var stream jetstream.Stream
	since := time.Now()
	err := l.retry(ctx, func(ctx context.Context) (err error) {
		stream, err = l.js.Stream(ctx, l.opts.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) && !l.opts.ReadOnly {
			stream, err = l.createReplicated(ctx, cfg, since)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				stream, err = l.js.Stream(ctx, l.opts.Stream) // another node created it first
			}
		}
		return err
	})
	if notPlaced(err) {
		return fmt.Errorf("eventlog/jetstream: stream %s: JetStream has not the servers for %d replicas (fewer servers, or some down): %w", l.opts.Stream, max(l.opts.Replicas, 1), err)
	}
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: stream %s: %w", l.opts.Stream, err)
	}
	have := stream.CachedInfo().Config
	if !have.AllowDirect || !have.AllowAtomicPublish || !have.AllowMsgTTL || have.RePublish == nil {
		return fmt.Errorf("eventlog/jetstream: stream %s exists without direct gets, atomic batches, message TTLs or republishing: not a roomlog stream", l.opts.Stream)
	}
	if !have.AllowRollup && !l.opts.ReadOnly {
		// A stream made by an earlier roomlog, before the key watermarks.
		have.AllowRollup = true
		if stream, err = l.js.UpdateStream(ctx, have); err != nil {
			return fmt.Errorf("eventlog/jetstream: stream %s: allowing rollups: %w", l.opts.Stream, err)
		}
	}
	l.stream = stream
	if err := l.waitReady(ctx); err != nil {
		return fmt.Errorf("eventlog/jetstream: stream %s: %w", l.opts.Stream, err)
	}
	if l.opts.ReadOnly {
		l.acks, err = l.js.KeyValue(ctx, l.opts.Stream+"_ACKS")
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: bucket %s_ACKS: %w", l.opts.Stream, err)
		}
		return nil
	}
	err = l.retry(ctx, func(ctx context.Context) (err error) {
		l.acks, err = l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: l.opts.Stream + "_ACKS", Description: "roomlog client cursors", Replicas: have.Replicas, Storage: jetstream.FileStorage,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("eventlog/jetstream: bucket %s_ACKS: %w", l.opts.Stream, err)
	}
	return nil
}

// startTimeout bounds how long Open waits for JetStream to take its requests: a cluster that is
// forming, or electing a leader, answers none for a while.
const startTimeout = time.Minute

// retry calls fn, each time with a deadline of Options.Timeout, until it succeeds, fails for a
// reason other than JetStream not answering yet, or startTimeout has passed.
func (l *Log) retry(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		attempt, done := context.WithTimeout(ctx, l.opts.Timeout)
		err := fn(attempt)
		done()
		if err == nil || !notAnswering(err) || ctx.Err() != nil {
			return err
		}
		l.opts.Logger.Info("waiting for JetStream", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notAnswering reports whether err means JetStream cannot answer now (no leader yet, no
// responders, a timeout, no servers yet for the replicas asked for) rather than refusing the
// request.
func notAnswering(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || notPlaced(err) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == 10008 || apiErr.Code == 503) // JetStream temporarily unavailable
}

// notPlaced reports whether JetStream refused to create a stream or bucket because it has not
// the servers for its replicas: too few in the cluster, or some not (yet) online. A cluster that
// is forming answers so for its first seconds.
func notPlaced(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == 10005 || apiErr.ErrorCode == 10023)
}

// waitReady waits until the stream answers direct gets: a stream just created has no leader
// for a moment, and its replicas take their part one by one.
func (l *Log) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := l.direct(ctx, getRequest{LastFor: l.subj.prefix + ".ready"})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer to direct gets: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// placementSettle is how long Open, given no replica count, keeps asking for three replicas
// on a cluster that cannot place them yet, before it settles for one: a cluster that is forming
// knows its servers only one by one, and a stream made with one replica on a cluster of three
// would stay so.
var placementSettle = 15 * time.Second // a variable for tests

// createReplicated creates the stream with cfg.Replicas (a cluster that cannot place them yet
// is retried by the caller), or, when that is 0, with three replicas where JetStream has the
// servers for them and one where it has not: at once on a single server, after placementSettle
// on a cluster of fewer than three.
func (l *Log) createReplicated(ctx context.Context, cfg jetstream.StreamConfig, since time.Time) (jetstream.Stream, error) {
	if cfg.Replicas > 0 {
		return l.js.CreateStream(ctx, cfg)
	}
	cfg.Replicas = 3
	stream, err := l.js.CreateStream(ctx, cfg)
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == 10074: // a single server: no replicas
	case notPlaced(err) && time.Since(since) >= placementSettle:
		l.opts.Logger.Warn("JetStream cannot place three replicas: the stream gets one, and a server lost loses its events (--nats-replicas sets the count)", "err", err)
	default:
		return stream, err
	}
	cfg.Replicas = 1
	return l.js.CreateStream(ctx, cfg)
}

// Close stops taking appends, waits for those queued (for Options.Timeout at most: the rest
// then fail), stops the watchers, and takes this node out of the heartbeats. The connection
// stays open.
func (l *Log) Close() error {
	l.shutdown(true)
	return nil
}

// shutdown closes the log; gone says whether the node signs off its heartbeat (a clean stop)
// or leaves it to expire (as a node that died does).
func (l *Log) shutdown(gone bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	if l.nodes != nil {
		l.nodes.stop(gone) // before the writers end: a sweep may be appending
	}
	written := make(chan struct{})
	go func() { l.wg.Wait(); close(written) }()
	select {
	case <-written:
	case <-time.After(l.opts.Timeout):
		l.opts.Logger.Warn("closing the log: appends still queued fail (JetStream does not answer)")
		l.stopNow()
		<-written
	}
	l.stopNow()
	l.marks.close()
	l.forgets.close()
	l.watch.stop()
	l.answers.stop()
}

// ctx bounds a request whose caller gave no deadline.
func (l *Log) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if _, ok := parent.Deadline(); ok {
		return parent, func() {}
	}
	return context.WithTimeout(parent, l.opts.Timeout)
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Health implements eventlog.HealthChecker: appends need the NATS connection up (a node whose
// connection is down or reconnecting is not ready for clients).
func (l *Log) Health() error {
	if st := l.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection %s", strings.ToLower(st.String()))
	}
	return nil
}
