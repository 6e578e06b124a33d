package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/roomlog/roomlog/actions"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/defaults"
	"github.com/roomlog/roomlog/internal/wsio"
	"github.com/roomlog/roomlog/revocation"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/webhooks"
	"github.com/roomlog/roomlog/wire"
)

// Defaults for Config, and the value that turns the publish rate limit off.
const (
	DefaultMaxFrame         = 64 << 10
	DefaultHeartbeat        = 25 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultPublishRate      = 10000
	DefaultSignalRate       = 50
	DefaultSendQueue        = 1024
	DefaultStallTimeout     = 30 * time.Second
	DefaultWriteInterval    = 10 * time.Millisecond
	DefaultReconnect        = time.Second
	DefaultMaxRoomsPerConn  = 100
	DefaultMaxConnsPerUser  = 100
	DefaultMaxMembersListed = 1000
	NoRateLimit             = -1.0
	NoLimit                 = -1
)

// Config configures a Server. Hub and Auth are required. For every other field the zero value
// means its default (the constants above); only PublishRate can be turned off, with NoRateLimit.
type Config struct {
	Hub  *rooms.Hub
	Auth *auth.Verifier
	// Cursors records the clients' receipt cursors (resume points). Default: the hub's log.
	Cursors eventlog.Cursors
	// Revocations, when set, are the token revocations the HTTP API adds to and lists
	// (/v1/tokens/revoke, /v1/tokens/revoked); Auth should refuse what they revoke
	// (auth.Verifier.SetRevocations), and RecheckTokens closes the live connections they cover.
	Revocations *revocation.List
	// Actions, when set, carries the removals and disconnections taken here to the other nodes
	// sharing the log; they apply them with ApplyAction.
	Actions *actions.Log
	// Webhooks are the webhooks the server delivers, for GET /v1/webhooks.
	Webhooks []*webhooks.Webhook

	// AllowedOrigins lists the browser origins (scheme://host[:port]) that may connect; "*"
	// allows any. A request from the server's own host is always allowed, and so is one without
	// an Origin header (not a browser). Empty: only those.
	AllowedOrigins []string
	// MaxFrame is the largest client frame, in bytes, and the bound of a history page; also the
	// largest event body the server takes. 0 or negative: DefaultMaxFrame (64 KiB).
	MaxFrame int
	// Heartbeat is the interval of WebSocket pings; a connection from which nothing was heard for
	// two is closed. 0 or negative: DefaultHeartbeat (25 s).
	Heartbeat time.Duration
	// HandshakeTimeout bounds the wait for hello after the upgrade. 0 or negative: 10 s.
	HandshakeTimeout time.Duration
	// PublishRate limits what a connection appends to the log, per second, with an equal burst:
	// publishes, and the join, leave and presence events a reader writes too; HTTP publishes
	// count against a rate per token. 0: DefaultPublishRate (10,000); NoRateLimit (any negative
	// value): no limit.
	PublishRate float64
	// SignalRate limits signals (ephemeral, not logged) per second per connection, with an equal
	// burst; signals do not count against PublishRate. 0: DefaultSignalRate (50, above the ~30/s
	// of a user moving a cursor); NoRateLimit (any negative value): no limit.
	SignalRate float64
	// SendQueue bounds the reply frames (acks, errors, joined...) waiting to be written to one
	// connection; a client that does not read them stops being read from. 0 or negative: 1024.
	SendQueue int
	// StallTimeout is how long a write may make no progress before the client is disconnected
	// as a slow consumer. 0 or negative: DefaultStallTimeout (30 s).
	StallTimeout time.Duration
	// WriteInterval is the least time between two writes of room events to one connection:
	// events committed meanwhile wait and go out together, in one system call. A write costs the
	// server about what 15 deliveries in it cost, so this trades at most WriteInterval of
	// delivery latency for server CPU when rooms are busy; a connection whose rooms are quiet
	// gets each event at once. Replies (acks, errors, joined) and a room's backlog after a join
	// never wait. 0: DefaultWriteInterval; NoLimit (any negative value): none.
	WriteInterval time.Duration
	// MaxRoomsPerConn bounds the rooms one connection is joined to at once; the next join gets
	// limit_exceeded. 0: DefaultMaxRoomsPerConn (100); NoLimit (any negative value): no bound.
	MaxRoomsPerConn int
	// MaxConnsPerUser bounds the connections one user (a token's sub) holds at once on this
	// server; the next hello gets bye too_many_connections. 0: DefaultMaxConnsPerUser (100);
	// NoLimit (any negative value): no bound.
	MaxConnsPerUser int
	// MaxMembersListed bounds the members a joined frame lists (members_truncated past it; the
	// list is bounded in bytes too). 0 or negative: DefaultMaxMembersListed (1,000).
	MaxMembersListed int
	// ReconnectAfter is the reconnect_ms sent with bye on shutdown. 0 or negative: 1 s.
	ReconnectAfter time.Duration
	// KeyRetention is how long the log remembers idempotency keys, told to clients in welcome
	// (key_retention_ms) so that they do not resend a publish older than that and append it
	// twice. It must match the log's. 0 or negative: eventlog.DefaultKeyRetention (24 h).
	KeyRetention time.Duration
	// Metrics receives the server's metrics. nil: a registry of its own (served on /metrics).
	Metrics *Metrics
	// Logger gets the server's log lines. nil: slog.Default().
	Logger *slog.Logger
	// NoPoller reads every connection on a goroutine of its own, parked in a read while the
	// connection is idle, instead of waiting for all of them with one epoll poller (Linux; other
	// platforms always read this way). It costs a goroutine stack per idle connection.
	NoPoller bool
}

// CheckOrigins checks Config.AllowedOrigins ahead of New: each is "*" or scheme://host[:port].
func CheckOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			return fmt.Errorf("transport: allowed origin %q is not scheme://host[:port]", o)
		}
	}
	return nil
}

// Server speaks roomlog's protocol (docs/protocol.md) over WebSocket and serves the HTTP API.
type Server struct {
	cfg      Config
	hub      *rooms.Hub
	log      eventlog.Store
	auth     *auth.Verifier
	metrics  *Metrics
	logger   *slog.Logger
	refusals *refusalLog
	// httpRates limits HTTP publishes per token.
	httpRates *tokenRates
	upgrader  websocket.Upgrader
	mux       *http.ServeMux

	mu        sync.Mutex
	conns     map[*conn]struct{}
	userConns map[string]int // authenticated connections by user (see claimUserSlot)
	closing   bool
	wg        sync.WaitGroup // every goroutine a connection started
	ready     atomic.Bool

	pollOnce sync.Once
	poll     *wsio.Poller // nil without one
}

// poller returns the shared poller, started at the first connection; nil when the connections
// read on goroutines of their own.
func (s *Server) poller() *wsio.Poller {
	s.pollOnce.Do(func() {
		if s.cfg.NoPoller {
			return
		}
		p, err := wsio.NewPoller()
		if err != nil {
			s.logger.Info("connections read on goroutines of their own", "why", err)
			return
		}
		s.poll = p
	})
	return s.poll
}

// setDefaults gives each field left at its zero value its default (see Config).
func (cfg *Config) setDefaults() {
	defaults.Positive(&cfg.MaxFrame, DefaultMaxFrame)
	defaults.Positive(&cfg.Heartbeat, DefaultHeartbeat)
	defaults.Positive(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	defaults.Positive(&cfg.KeyRetention, eventlog.DefaultKeyRetention)
	defaults.Zero(&cfg.PublishRate, DefaultPublishRate)
	defaults.Zero(&cfg.SignalRate, DefaultSignalRate)
	defaults.Positive(&cfg.SendQueue, DefaultSendQueue)
	defaults.Positive(&cfg.StallTimeout, DefaultStallTimeout)
	defaults.Zero(&cfg.WriteInterval, DefaultWriteInterval)
	defaults.Positive(&cfg.ReconnectAfter, DefaultReconnect)
	defaults.Zero(&cfg.MaxRoomsPerConn, DefaultMaxRoomsPerConn)
	defaults.Zero(&cfg.MaxConnsPerUser, DefaultMaxConnsPerUser)
	defaults.Positive(&cfg.MaxMembersListed, DefaultMaxMembersListed)
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	defaults.Zero(&cfg.Logger, slog.Default())
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Hub == nil || cfg.Auth == nil {
		return nil, errors.New("transport: Config needs a Hub and an Auth verifier")
	}
	cfg.setDefaults()
	if err := CheckOrigins(cfg.AllowedOrigins); err != nil {
		return nil, err
	}
	if cfg.Cursors == nil {
		cfg.Cursors = cfg.Hub.Log()
	}
	s := &Server{
		cfg: cfg, hub: cfg.Hub, log: cfg.Hub.Log(), auth: cfg.Auth, metrics: cfg.Metrics, logger: cfg.Logger,
		refusals:  newRefusalLog(cfg.Logger),
		httpRates: newTokenRates(cfg.PublishRate),
		conns:     map[*conn]struct{}{},
		userConns: map[string]int{},
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		Subprotocols:     []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack},
		CheckOrigin:      s.checkOrigin,
		// gorilla's Conn lives only through the handshake (frames are read and written here):
		// the smallest read buffer it takes, and write buffers from a pool.
		ReadBufferSize:  wsio.MaxControlPayload,
		WriteBufferPool: &sync.Pool{},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /v1/ws", s.serveWS)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.serveReady)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	s.routeAPI()
	s.ready.Store(true)
	return s, nil
}

// ServeHTTP serves the WebSocket endpoint, the health checks, the metrics and the HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		s.serveUnrouted(w, r, h)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// serveUnrouted answers a request no route takes in the API's JSON error shape. h is the mux's
// own answer (404, 405 with Allow, or a redirect), run against a recorder to learn which.
func (s *Server) serveUnrouted(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		writeAPIError(w, http.StatusNotFound, wire.CodeNotFound, "no endpoint %s; see docs/protocol.md", r.URL.Path)
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeAPIError(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "%s does not take %s; it takes %s", r.URL.Path, r.Method, rec.header.Get("Allow"))
	default:
		s.mux.ServeHTTP(w, r)
	}
}

// statusRecorder keeps the status and headers a handler writes, and drops its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *statusRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if hc, ok := s.log.(eventlog.HealthChecker); ok {
		if err := hc.Health(); err != nil {
			http.Error(w, "event log not accepting appends: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	if _, err := s.log.Head(r.Context(), "readyz"); err != nil {
		http.Error(w, "event log unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if slices.Contains(s.cfg.AllowedOrigins, "*") || slices.Contains(s.cfg.AllowedOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		s.refusedConnection("shutting_down", "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	hw := &wsio.HijackWriter{ResponseWriter: w, Stall: s.cfg.StallTimeout}
	ws, err := s.upgrader.Upgrade(hw, r, nil)
	if err != nil { // the upgrader has answered (403 for a refused origin)
		reason := "upgrade"
		if !s.checkOrigin(r) {
			reason = "origin"
		}
		s.refusedConnection(reason, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	// gorilla did the opening handshake; frames are read (wsio.Reader.go) and written (wsio.CorkConn)
	// here, so its Conn and the buffers it holds are dropped now.
	c := newConn(s, ws.Subprotocol(), hw.Conn)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1) // the read side; done when its cleanup has run
	s.mu.Unlock()
	s.metrics.connections.Inc()
	// The handler returns now: the connection runs goroutines only while it has work.
	c.startReading()
}

// claimUserSlot counts one more connection of user, unless the user holds MaxConnsPerUser
// already. A connection that claimed a slot releases it when it goes (releaseUserSlot).
func (s *Server) claimUserSlot(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConnsPerUser > 0 && s.userConns[user] >= s.cfg.MaxConnsPerUser {
		return false
	}
	s.userConns[user]++
	return true
}

func (s *Server) releaseUserSlot(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userConns[user]--; s.userConns[user] <= 0 {
		delete(s.userConns, user)
	}
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Dec()
}

// Shutdown refuses new connections, sends every client bye shutdown once its in-flight publishes
// are acked, waits for the connections to close (or ctx to end, when it closes the rest), and
// closes the rooms (leave events for every member).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.ready.Store(false)
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(&wire.Bye{Type: "bye", Code: wire.CodeShutdown, Reason: "server shutting down", ReconnectMS: s.cfg.ReconnectAfter.Milliseconds()}, websocket.CloseGoingAway)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			c.closeSocket()
		}
		<-done
	}
	s.pollOnce.Do(func() {}) // no poller starts after this; one started before is seen here
	if s.poll != nil {
		s.poll.Close()
	}
	return s.hub.Close(ctx)
}
