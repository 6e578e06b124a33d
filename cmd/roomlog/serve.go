package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // the profiles, on the default mux
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/transport"
	"github.com/roomlog/roomlog/webhooks"
)

// serveFlags are the settings of roomlog serve.
type serveFlags struct {
	cmd *command // for which flags were given

	addr, data, secret, publicKeys, jwks, issuer, audience, origins, logLevel, debugAddr *string
	natsURLs, natsStream, natsCreds, natsNode                                            *string
	tlsCert, tlsKey                                                                      *string
	maxFrame, sendQueue, natsReplicas                                                    *int
	maxRoomsPerConn, maxConnsPerUser, maxMembersListed, maxConns, maxConnsPerIP          *int
	httpRead, httpWrite, httpIdle                                                        *time.Duration
	jwksRefresh, grace, heartbeat, stall, keyRetention, natsLease, writeInterval         *time.Duration
	publishRate, signalRate                                                              *float64
	noPoller, dev, anyAudience                                                           *bool
	maxTokenTTL                                                                          *time.Duration
	hook                                                                                 *hookFlags
	webhooks                                                                             *webhookFlags
}

func newServeCommand() (*command, *serveFlags) {
	c := newCommand("serve", "Runs the roomlog server: WebSocket API on /v1/ws, HTTP API, /healthz, /readyz and /metrics.")
	return c, &serveFlags{
		cmd:              c,
		dev:              c.Bool("dev", "ROOMLOG_DEV", false, "allow development mode (no key configured) on an --addr that is not a loopback address; it still answers loopback Host names only"),
		maxTokenTTL:      c.Duration("max-token-ttl", "ROOMLOG_MAX_TOKEN_TTL", auth.DefaultMaxTTL, "refuse tokens valid for longer than this (exp - iat, or exp - now without iat)"),
		anyAudience:      c.Bool("jwt-any-audience", "ROOMLOG_JWT_ANY_AUDIENCE", false, "with --jwks and no --jwt-audience: accept tokens whatever their aud (every service of the identity provider)"),
		maxRoomsPerConn:  c.Int("max-rooms-per-conn", "ROOMLOG_MAX_ROOMS_PER_CONN", transport.DefaultMaxRoomsPerConn, "rooms one connection may be joined to at once (0: no bound)"),
		maxConnsPerUser:  c.Int("max-conns-per-user", "ROOMLOG_MAX_CONNS_PER_USER", transport.DefaultMaxConnsPerUser, "WebSocket connections one user may hold at once on this node (0: no bound)"),
		maxMembersListed: c.Int("max-members-listed", "ROOMLOG_MAX_MEMBERS_LISTED", transport.DefaultMaxMembersListed, "members a joined frame lists at most (members_truncated past it)"),
		maxConns:         c.Int("max-conns", "ROOMLOG_MAX_CONNS", transport.DefaultMaxConns, "sockets the listener holds at most; new ones past it are closed at once (0: bounded by the open-file limit only)"),
		maxConnsPerIP:    c.Int("max-conns-per-ip", "ROOMLOG_MAX_CONNS_PER_IP", transport.DefaultMaxConnsPerIP, "sockets from one address at most; loopback is exempt (0: no bound)"),
		httpRead:         c.Duration("http-read-timeout", "ROOMLOG_HTTP_READ_TIMEOUT", transport.DefaultHTTPReadTimeout, "time to read an HTTP request, headers and body (WebSocket connections are free of it once upgraded)"),
		httpWrite:        c.Duration("http-write-timeout", "ROOMLOG_HTTP_WRITE_TIMEOUT", transport.DefaultHTTPWriteTimeout, "time to write an HTTP answer (streams: each write within --stall-timeout instead)"),
		httpIdle:         c.Duration("http-idle-timeout", "ROOMLOG_HTTP_IDLE_TIMEOUT", transport.DefaultHTTPIdleTimeout, "how long an idle keep-alive HTTP connection is kept"),
		tlsCert:          c.String("tls-cert", "ROOMLOG_TLS_CERT", "", "PEM certificate (chain) file: serve HTTPS and WSS; reloaded when it changes"),
		tlsKey:           c.String("tls-key", "ROOMLOG_TLS_KEY", "", "PEM private key file of --tls-cert; reloaded when it changes"),
		addr:             c.String("addr", "ROOMLOG_ADDR", "127.0.0.1:7070", "listen address"),
		data:             c.String("data", "ROOMLOG_DATA", "roomlog.db", "data file (created if missing); with --nats, only the development secret is kept beside it"),
		natsURLs:         c.String("nats", "ROOMLOG_NATS", "", "comma-separated NATS server URLs: store the log on their JetStream instead of --data, shared by every node"),
		natsStream:       c.String("nats-stream", "ROOMLOG_NATS_STREAM", jetstream.DefaultStream, "with --nats: the JetStream stream of the log (created if missing)"),
		natsReplicas:     c.Int("nats-replicas", "ROOMLOG_NATS_REPLICAS", 0, "with --nats: replicas of a stream roomlog creates (0: 3 where JetStream has 3 or more servers, else 1)"),
		natsCreds:        c.String("nats-creds", "ROOMLOG_NATS_CREDS", "", "with --nats: a NATS credentials file"),
		natsNode:         c.String("nats-node", "ROOMLOG_NATS_NODE", "", "with --nats: this node's name in heartbeats and logs (1-64 of A-Z a-z 0-9 _ -; default: random at each start)"),
		natsLease:        c.Duration("nats-lease", "ROOMLOG_NATS_LEASE", jetstream.DefaultLeaseTTL, "with --nats: how long the node delivering a webhook may be silent before another takes it over"),
		secret:           c.String("jwt-secret", "ROOMLOG_JWT_SECRET", "", "HS256 secret for tokens"),
		publicKeys:       c.String("jwt-public-key", "ROOMLOG_JWT_PUBLIC_KEY", "", "comma-separated PEM public key files (RS256, ES256, EdDSA)"),
		jwks:             c.String("jwks", "ROOMLOG_JWKS", "", "JWKS file, or https URL (http on loopback only) fetched at start-up and then every --jwks-refresh; needs --jwt-audience"),
		jwksRefresh:      c.Duration("jwks-refresh", "ROOMLOG_JWKS_REFRESH", 10*time.Minute, "how often a --jwks URL is fetched again (key rotation)"),
		issuer:           c.String("jwt-issuer", "ROOMLOG_JWT_ISSUER", "", "required iss claim"),
		audience:         c.String("jwt-audience", "ROOMLOG_JWT_AUDIENCE", "", "required aud claim"),
		origins:          c.String("allowed-origins", "ROOMLOG_ALLOWED_ORIGINS", "", "comma-separated browser origins allowed to connect ('*' for any); the server's own host always is"),
		maxFrame:         c.Int("max-frame", "ROOMLOG_MAX_FRAME", transport.DefaultMaxFrame, "largest client frame in bytes"),
		grace:            c.Duration("grace", "ROOMLOG_GRACE", rooms.DefaultGrace, "how long a dropped session stays a member before its leave event"),
		publishRate:      c.Float("publish-rate", "ROOMLOG_PUBLISH_RATE", transport.DefaultPublishRate, "what one connection appends per second: publishes, joins, leaves and presence updates; HTTP publishes at the same rate per token (0 turns the limit off)"),
		signalRate:       c.Float("signal-rate", "ROOMLOG_SIGNAL_RATE", transport.DefaultSignalRate, "signals (ephemeral awareness messages) per second per connection (0 turns the limit off)"),
		sendQueue:        c.Int("send-queue", "ROOMLOG_SEND_QUEUE", transport.DefaultSendQueue, "reply frames queued per connection before its reads pause"),
		heartbeat:        c.Duration("heartbeat", "ROOMLOG_HEARTBEAT", transport.DefaultHeartbeat, "interval of server pings"),
		stall:            c.Duration("stall-timeout", "ROOMLOG_STALL_TIMEOUT", transport.DefaultStallTimeout, "how long a client may read nothing before it is disconnected"),
		writeInterval:    c.Duration("write-interval", "ROOMLOG_WRITE_INTERVAL", transport.DefaultWriteInterval, "least time between two writes of room events to a connection: events meanwhile go out together, saving server CPU for at most this much latency (0: none)"),
		keyRetention:     c.Duration("key-retention", "ROOMLOG_KEY_RETENTION", eventlog.DefaultKeyRetention, "how long idempotency keys are remembered"),
		logLevel:         c.String("log-level", "ROOMLOG_LOG_LEVEL", "info", "debug, info, warn or error"),
		noPoller:         c.Bool("no-poller", "ROOMLOG_NO_POLLER", false, "read each connection on a goroutine of its own instead of one epoll poller (Linux): more memory per idle connection"),
		debugAddr:        c.String("debug-addr", "ROOMLOG_DEBUG_ADDR", "", "address for Go's pprof profiles (/debug/pprof/); empty: off. Keep it private"),
		hook:             addHookFlags(c),
		webhooks:         addWebhookFlags(c),
	}
}

// check says what is wrong with the flags, if anything.
func (f *serveFlags) check() error {
	switch {
	case *f.maxFrame < 1024:
		return errors.New("--max-frame must be at least 1024 bytes")
	case *f.grace < 0, *f.heartbeat <= 0, *f.stall <= 0, *f.keyRetention <= 0, *f.jwksRefresh <= 0, *f.writeInterval < 0:
		return errors.New("durations must be positive (--grace and --write-interval may be 0)")
	case *f.writeInterval > time.Second:
		return errors.New("--write-interval must be at most 1s: it delays deliveries by up to that much")
	case *f.publishRate < 0:
		return errors.New("--publish-rate must be 0 (off) or positive")
	case *f.signalRate < 0:
		return errors.New("--signal-rate must be 0 (off) or positive")
	case *f.sendQueue <= 0:
		return errors.New("--send-queue must be positive")
	case *f.natsReplicas < 0 || *f.natsReplicas > 5:
		return errors.New("--nats-replicas must be 0 (automatic) or 1-5")
	case *f.maxTokenTTL <= 0:
		return errors.New("--max-token-ttl must be positive")
	case *f.maxRoomsPerConn < 0, *f.maxConnsPerUser < 0, *f.maxConns < 0, *f.maxConnsPerIP < 0:
		return errors.New("--max-rooms-per-conn, --max-conns-per-user, --max-conns and --max-conns-per-ip must be 0 (no bound) or positive")
	case *f.maxMembersListed <= 0:
		return errors.New("--max-members-listed must be positive")
	case *f.httpRead <= 0, *f.httpWrite <= 0, *f.httpIdle <= 0:
		return errors.New("--http-read-timeout, --http-write-timeout and --http-idle-timeout must be positive")
	case (*f.tlsCert == "") != (*f.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	}
	if _, _, err := net.SplitHostPort(*f.addr); err != nil {
		return fmt.Errorf("--addr: %v", err)
	}
	if err := f.checkKeys(); err != nil {
		return err
	}
	for _, u := range splitList(*f.natsURLs) {
		if !strings.Contains(u, "://") {
			return fmt.Errorf("--nats: %q is not a URL (nats://host:4222)", u)
		}
	}
	return transport.CheckOrigins(splitList(*f.origins))
}

// checkKeys refuses key settings that would open the server by accident: a key flag given but
// empty (an unset shell variable) would otherwise start development mode; a short secret can be
// guessed offline from one token; a JWKS trusts every service of its identity provider unless an
// audience is required; a JWKS fetched over plain http can be swapped on the way.
func (f *serveFlags) checkKeys() error {
	for _, k := range []struct{ name, env, value string }{
		{"jwt-secret", "ROOMLOG_JWT_SECRET", *f.secret}, {"jwt-public-key", "ROOMLOG_JWT_PUBLIC_KEY", *f.publicKeys}, {"jwks", "ROOMLOG_JWKS", *f.jwks},
	} {
		if f.cmd.given(k.name) && strings.TrimSpace(k.value) == "" {
			return fmt.Errorf("--%s (or %s) is given but empty: give a key, or leave both out for development mode on this machine", k.name, k.env)
		}
	}
	if n := len(*f.secret); n > 0 && n < auth.MinSecretLength {
		return fmt.Errorf("--jwt-secret is %d bytes; at least %d are needed (openssl rand -hex 32 makes one)", n, auth.MinSecretLength)
	}
	if *f.jwks != "" && *f.audience == "" && !*f.anyAudience {
		return errors.New("--jwks needs --jwt-audience (the aud your identity provider puts in tokens for roomlog), or --jwt-any-audience to take every service's tokens")
	}
	if isURL(*f.jwks) && !secureURL(*f.jwks) {
		return fmt.Errorf("--jwks %s: fetch keys over https (plain http is allowed on loopback only)", *f.jwks)
	}
	return nil
}

// secureURL reports whether u is https, or http to a loopback host.
func secureURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	return p.Scheme == "https" || p.Scheme == "http" && loopbackHost(p.Hostname())
}

// loopbackHost reports whether host (a name or an address, without port) is this machine only.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// loopbackAddr reports whether a listen address (host:port) listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

// authConfig reads the token settings. Without any key it is development mode: the caller then loads
// the development secret (devSecretPath).
func (f *serveFlags) authConfig() (ac auth.Config, devMode bool, err error) {
	ac = auth.Config{Secret: []byte(*f.secret), Issuer: *f.issuer, Audience: *f.audience, AnyAudience: *f.anyAudience, MaxTTL: *f.maxTokenTTL}
	for _, path := range splitList(*f.publicKeys) {
		b, err := os.ReadFile(path)
		if err != nil {
			return ac, false, fmt.Errorf("--jwt-public-key: %v", err)
		}
		ac.PublicKeys = append(ac.PublicKeys, b)
	}
	if *f.jwks != "" {
		b, err := readJWKS(*f.jwks)
		if err != nil {
			return ac, false, fmt.Errorf("--jwks: %v", err)
		}
		ac.JWKS = b
	}
	return ac, len(ac.Secret) == 0 && len(ac.PublicKeys) == 0 && len(ac.JWKS) == 0, nil
}

// devSecretPath is where development mode keeps its secret: beside the data file.
func devSecretPath(data string) string { return data + ".dev-secret" }

// loadDevSecret reads the development secret kept beside the data file, or makes one and keeps
// it there (mode 0600), so tokens minted in development survive a restart.
func loadDevSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); len(s) >= 32 {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("%s holds no secret of 32 or more characters; remove it to make a new one", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	return []byte(secret), f.Close()
}

// serveConfig is the configuration of roomlog serve, read from its flags and environment. Its
// zero values mean what the flags' zero values mean: Grace 0 is no grace period, PublishRate 0 no
// limit (the library's options use named constants for those: rooms.NoGrace,
// transport.NoRateLimit).
type serveConfig struct {
	Addr, Data   string
	NATS         []string // --nats: the log on JetStream
	NATSStream   string
	NATSReplicas int
	NATSCreds    string
	NATSNode     string
	NATSLease    time.Duration
	Auth         auth.Config
	DevMode      bool   // no key given: Auth.Secret is the development secret, read once listening
	JWKSURL      string // a --jwks URL, fetched again every JWKSRefresh
	JWKSRefresh  time.Duration
	Origins      []string
	TLSCert      string // with TLSKey: serve HTTPS
	TLSKey       string
	MaxFrame     int
	// Bounds on what clients hold (0: no bound, except MaxMembersListed).
	MaxRoomsPerConn, MaxConnsPerUser, MaxMembersListed, MaxConns, MaxConnsPerIP int
	HTTP                                                                        transport.HTTPTimeouts
	Grace                                                                       time.Duration
	PublishRate                                                                 float64
	SignalRate                                                                  float64
	SendQueue                                                                   int
	Heartbeat                                                                   time.Duration
	Stall                                                                       time.Duration
	WriteInterval                                                               time.Duration
	KeyRetention                                                                time.Duration
	LogLevel                                                                    slog.Level
	NoPoller                                                                    bool
	DebugAddr                                                                   string
	Hook                                                                        *hooks.Config // --hook-url: joins decided by the application
	Webhooks                                                                    []webhooks.Config
}

// config checks the flags and reads them, with the key files they name, into a serveConfig.
func (f *serveFlags) config() (serveConfig, error) {
	cfg := serveConfig{
		Addr: *f.addr, Data: *f.data, NATS: splitList(*f.natsURLs), NATSStream: *f.natsStream, NATSReplicas: *f.natsReplicas, NATSCreds: *f.natsCreds, NATSNode: *f.natsNode, NATSLease: *f.natsLease,
		JWKSRefresh: *f.jwksRefresh, Origins: splitList(*f.origins),
		MaxFrame: *f.maxFrame, Grace: *f.grace, PublishRate: *f.publishRate, SignalRate: *f.signalRate, SendQueue: *f.sendQueue,
		Heartbeat: *f.heartbeat, Stall: *f.stall, WriteInterval: *f.writeInterval, KeyRetention: *f.keyRetention, NoPoller: *f.noPoller,
		DebugAddr: *f.debugAddr, TLSCert: *f.tlsCert, TLSKey: *f.tlsKey,
		MaxRoomsPerConn: *f.maxRoomsPerConn, MaxConnsPerUser: *f.maxConnsPerUser, MaxMembersListed: *f.maxMembersListed,
		MaxConns: *f.maxConns, MaxConnsPerIP: *f.maxConnsPerIP,
		HTTP: transport.HTTPTimeouts{Read: *f.httpRead, Write: *f.httpWrite, Idle: *f.httpIdle},
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*f.logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level: %v", err)
	}
	if err := f.check(); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Auth, cfg.DevMode, err = f.authConfig(); err != nil {
		return cfg, err
	}
	if isURL(*f.jwks) {
		cfg.JWKSURL = *f.jwks
	}
	if cfg.Webhooks, err = f.webhooks.configs(*f.hook.secret); err != nil {
		return cfg, err
	}
	if cfg.Hook, err = f.hook.config(len(cfg.Webhooks) > 0); err != nil {
		return cfg, err
	}
	if cfg.NATSLease < 100*time.Millisecond {
		return cfg, fmt.Errorf("--nats-lease %v: want at least 100ms", cfg.NATSLease)
	}
	if cfg.DevMode && !loopbackAddr(cfg.Addr) && !*f.dev {
		return cfg, fmt.Errorf("no key is configured and --addr %s is not a loopback address: development mode serves this machine only. Give --jwt-secret, --jwt-public-key or --jwks (or --dev to run development mode there anyway)", cfg.Addr)
	}
	return cfg, nil
}

func serve(args []string) int {
	c, f := newServeCommand()
	if code, ok := c.parse(args); !ok {
		return code
	}
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "roomlog serve: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runServe(ctx, cfg, logger); err != nil {
		fmt.Fprintf(os.Stderr, "roomlog serve: %v\n", err)
		return 1
	}
	return 0
}

// runServe serves until ctx ends, then shuts down gracefully: clients are told to reconnect,
// in-flight publishes are acked, every member's leave is written and the log is closed.
func runServe(ctx context.Context, cfg serveConfig, logger *slog.Logger) error {
	// Listen before creating anything: a bad or busy --addr leaves no file behind.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	var certs *certReloader
	if cfg.TLSCert != "" {
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, logger); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %v", err)
		}
	}
	if cfg.DevMode {
		if cfg.Auth.Secret, err = loadDevSecret(devSecretPath(cfg.Data)); err != nil {
			return fmt.Errorf("development secret: %v", err)
		}
	}
	verifier, err := auth.NewVerifier(cfg.Auth)
	if err != nil {
		return err
	}
	metrics := transport.NewMetrics()
	store, err := openStorage(ctx, cfg, metrics, logger)
	if err != nil {
		return err
	}
	defer store.close()
	srv, err := newServer(ctx, cfg, store, verifier, metrics, logger)
	if err != nil {
		return err
	}
	served := cfg.boundListener(ln, srv, certs, logger)
	if cfg.DevMode {
		if err := announceDevMode(logger, cfg.Auth.Secret, cfg.Data, ln.Addr().String()); err != nil {
			return fmt.Errorf("development token: %v", err)
		}
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	logger.Info("roomlog serving", "addr", scheme+"://"+ln.Addr().String(), "ws", strings.Replace(scheme, "http", "ws", 1)+"://"+ln.Addr().String()+"/v1/ws", "log", store.where, "version", version)
	if cfg.DebugAddr != "" {
		closeDebug, err := startDebugListener(cfg.DebugAddr, logger)
		if err != nil {
			return fmt.Errorf("--debug-addr: %v", err)
		}
		defer closeDebug()
	}
	if cfg.JWKSURL != "" {
		go refreshJWKS(ctx, cfg.JWKSURL, cfg.JWKSRefresh, verifier, logger)
	}
	var devSecret []byte
	if cfg.DevMode {
		devSecret = cfg.Auth.Secret
	}
	httpSrv := transport.NewHTTPServer(withEditor(srv, devSecret), cfg.HTTP)
	httpSrv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug) // a refused TLS handshake is no server error
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(served) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: telling clients to reconnect, acking in-flight publishes")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	httpSrv.Shutdown(shutdownCtx)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Error("shutdown", "err", err)
	}
	if err := store.close(); err != nil {
		return fmt.Errorf("closing the log: %v", err)
	}
	logger.Info("stopped cleanly")
	return nil
}

// transportConfig is the server's configuration for the transport.
func (cfg *serveConfig) transportConfig(hub *rooms.Hub, verifier *auth.Verifier, metrics *transport.Metrics, logger *slog.Logger) transport.Config {
	return transport.Config{
		Hub: hub, Auth: verifier, AllowedOrigins: cfg.Origins, MaxFrame: cfg.MaxFrame, Heartbeat: cfg.Heartbeat,
		PublishRate: orOff(cfg.PublishRate, transport.NoRateLimit), SignalRate: orOff(cfg.SignalRate, transport.NoRateLimit), SendQueue: cfg.SendQueue, StallTimeout: cfg.Stall,
		WriteInterval: orOff(cfg.WriteInterval, transport.NoLimit),
		Metrics:       metrics, Logger: logger, NoPoller: cfg.NoPoller, KeyRetention: cfg.KeyRetention,
		MaxRoomsPerConn: orNone(cfg.MaxRoomsPerConn), MaxConnsPerUser: orNone(cfg.MaxConnsPerUser), MaxMembersListed: cfg.MaxMembersListed,
	}
}

// boundListener is ln as the HTTP server takes it: sockets bounded in all (and never past the
// open-file limit) and per address, then TLS when configured (certs not nil).
func (cfg *serveConfig) boundListener(ln net.Listener, srv *transport.Server, certs *certReloader, logger *slog.Logger) net.Listener {
	bounded := transport.LimitListener(ln, socketBound(cfg.MaxConns, logger), cfg.MaxConnsPerIP, srv.RefusedSocket)
	if certs == nil {
		return bounded
	}
	return tls.NewListener(bounded, &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
}

// orNone turns a bound flag's 0 (no bound) into the library's transport.NoLimit.
func orNone(n int) int {
	if n == 0 {
		return transport.NoLimit
	}
	return n
}

// orOff turns a flag's 0 (off) into the library's constant for off; other values pass.
func orOff[T float64 | time.Duration](v, off T) T {
	if v == 0 {
		return off
	}
	return v
}

// devTokenPath is where development mode writes a ready-made admin token: beside the data file,
// never in the log (logs are shipped, kept and shared).
func devTokenPath(data string) string { return data + ".dev-token" }

// announceDevMode says loudly that tokens are signed with the development secret and where it is
// kept, and writes a token to start with into a file of its own (mode 0600).
func announceDevMode(logger *slog.Logger, secret []byte, data, addr string) error {
	demo, err := auth.NewToken(secret, auth.TokenSpec{Subject: "demo", Rooms: []string{"*"}, SnapshotRooms: []string{"*"}, Admin: true, TTL: auth.DefaultMaxTTL})
	if err != nil {
		return err
	}
	path := devTokenPath(data)
	if err := writePrivateFile(path, demo+"\n"); err != nil {
		return err
	}
	logger.Warn("DEVELOPMENT MODE: no --jwt-secret, --jwt-public-key or --jwks given; tokens are signed with a development secret kept beside the data file (tokens survive restarts; delete the file to revoke them all); only this machine is answered",
		"secret_file", devSecretPath(data), "token_file", path)
	fmt.Fprintf(os.Stderr, "\nA token for user \"demo\" (all rooms, admin, 24h) is in %s.\n\nMake more with: roomlog token --secret \"$(cat %s)\" --sub alice --rooms 'doc:*'\n\nThe collaborative editor: open http://%s/ in two windows (each window is a user of its own).\n\n", path, devSecretPath(data), addr)
	return nil
}

// writePrivateFile replaces path with a new file of mode 0600 holding text: a file left by an
// earlier run keeps no wider mode.
func writePrivateFile(path, text string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startDebugListener serves Go's pprof profiles on addr; the returned func stops it.
func startDebugListener(addr string, logger *slog.Logger) (func() error, error) {
	dln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// net/http/pprof registers its handlers on the default mux (nothing else in roomlog does);
	// it is served on this listener only, never on --addr.
	dsrv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	go dsrv.Serve(dln)
	logger.Info("profiling listener", "debug", "http://"+dln.Addr().String()+"/debug/pprof/")
	return dsrv.Close, nil
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// refreshJWKS fetches a JWKS URL every interval until ctx ends, so rotated keys are picked up; a
// failed fetch keeps the keys in use.
func refreshJWKS(ctx context.Context, url string, every time.Duration, v *auth.Verifier, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		doc, err := readJWKS(url)
		if err == nil {
			err = v.SetJWKS(doc)
		}
		if err != nil {
			logger.Warn("JWKS refresh failed; keeping the current keys", "url", url, "err", err)
		}
	}
}

func readJWKS(src string) ([]byte, error) {
	if !isURL(src) {
		return os.ReadFile(src)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(src)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", src, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}
