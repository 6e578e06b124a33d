package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/transport"
)

func serve(args []string) int {
	c := newCommand("serve", "Runs the roomlog server: WebSocket API on /v1/ws, HTTP API, /healthz, /readyz and /metrics.")
	addr := c.String("addr", "ROOMLOG_ADDR", "127.0.0.1:7070", "listen address")
	data := c.String("data", "ROOMLOG_DATA", "roomlog.db", "data file (created if missing)")
	secret := c.String("jwt-secret", "ROOMLOG_JWT_SECRET", "", "HS256 secret for tokens")
	publicKeys := c.String("jwt-public-key", "ROOMLOG_JWT_PUBLIC_KEY", "", "comma-separated PEM public key files (RS256, ES256, EdDSA)")
	jwks := c.String("jwks", "ROOMLOG_JWKS", "", "JWKS file, or http(s) URL fetched at start-up and then every --jwks-refresh")
	jwksRefresh := c.Duration("jwks-refresh", "ROOMLOG_JWKS_REFRESH", 10*time.Minute, "how often a --jwks URL is fetched again (key rotation)")
	issuer := c.String("jwt-issuer", "ROOMLOG_JWT_ISSUER", "", "required iss claim")
	audience := c.String("jwt-audience", "ROOMLOG_JWT_AUDIENCE", "", "required aud claim")
	origins := c.String("allowed-origins", "ROOMLOG_ALLOWED_ORIGINS", "", "comma-separated browser origins allowed to connect ('*' for any); the server's own host always is")
	maxFrame := c.Int("max-frame", "ROOMLOG_MAX_FRAME", transport.DefaultMaxFrame, "largest client frame in bytes")
	grace := c.Duration("grace", "ROOMLOG_GRACE", rooms.DefaultGrace, "how long a dropped session stays a member before its leave event")
	publishRate := c.Float("publish-rate", "ROOMLOG_PUBLISH_RATE", transport.DefaultPublishRate, "publishes per second per connection (0 turns the limit off)")
	sendQueue := c.Int("send-queue", "ROOMLOG_SEND_QUEUE", transport.DefaultSendQueue, "reply frames queued per connection before its reads pause")
	heartbeat := c.Duration("heartbeat", "ROOMLOG_HEARTBEAT", transport.DefaultHeartbeat, "interval of server pings")
	stall := c.Duration("stall-timeout", "ROOMLOG_STALL_TIMEOUT", transport.DefaultStallTimeout, "how long a client may read nothing before it is disconnected")
	keyRetention := c.Duration("key-retention", "ROOMLOG_KEY_RETENTION", eventlog.DefaultKeyRetention, "how long idempotency keys are remembered")
	logLevel := c.String("log-level", "ROOMLOG_LOG_LEVEL", "info", "debug, info, warn or error")
	noPoller := c.Bool("no-poller", "ROOMLOG_NO_POLLER", false, "read each connection on a goroutine of its own instead of one epoll poller (Linux): more memory per idle connection")
	debugAddr := c.String("debug-addr", "ROOMLOG_DEBUG_ADDR", "", "address for Go's pprof profiles (/debug/pprof/); empty: off. Keep it private")
	if code, ok := c.parse(args); !ok {
		return code
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "roomlog serve: "+format+"\n", args...)
		return 1
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fail("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	switch {
	case *maxFrame < 1024:
		return fail("--max-frame must be at least 1024 bytes")
	case *grace < 0, *heartbeat <= 0, *stall <= 0, *keyRetention <= 0, *jwksRefresh <= 0:
		return fail("durations must be positive (--grace may be 0)")
	case *publishRate < 0:
		return fail("--publish-rate must be 0 (off) or positive")
	case *sendQueue <= 0:
		return fail("--send-queue must be positive")
	}

	auth := transport.AuthConfig{Secret: []byte(*secret), Issuer: *issuer, Audience: *audience}
	for _, path := range splitList(*publicKeys) {
		b, err := os.ReadFile(path)
		if err != nil {
			return fail("--jwt-public-key: %v", err)
		}
		auth.PublicKeys = append(auth.PublicKeys, b)
	}
	if *jwks != "" {
		b, err := readJWKS(*jwks)
		if err != nil {
			return fail("--jwks: %v", err)
		}
		auth.JWKS = b
	}
	devMode := len(auth.Secret) == 0 && len(auth.PublicKeys) == 0 && len(auth.JWKS) == 0
	if devMode {
		raw := make([]byte, 32)
		rand.Read(raw)
		auth.Secret = []byte(hex.EncodeToString(raw))
	}
	verifier, err := transport.NewVerifier(auth)
	if err != nil {
		return fail("%v", err)
	}

	metrics := transport.NewMetrics()
	log, err := eventlog.Open(*data, eventlog.Options{MaxBody: *maxFrame, KeyRetention: *keyRetention, OnCommit: metrics.ObserveCommit})
	if err != nil {
		if errors.Is(err, eventlog.ErrLocked) {
			return fail("%v (is another roomlog serving it? use another --data)", err)
		}
		return fail("%v", err)
	}
	defer log.Close()
	hubGrace := *grace
	if hubGrace == 0 {
		hubGrace = -1 // no grace
	}
	hub := rooms.NewHub(log, rooms.Options{Grace: hubGrace, Logger: logger})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if n, err := hub.CloseOrphans(ctx); err != nil {
		return fail("closing sessions left by the last run: %v", err)
	} else if n > 0 {
		logger.Info("closed sessions left by an unclean stop", "sessions", n)
	}
	srv, err := transport.New(transport.Config{
		Hub: hub, Auth: verifier, AllowedOrigins: splitList(*origins), MaxFrame: *maxFrame, Heartbeat: *heartbeat,
		PublishRate: publishRateOrOff(*publishRate), SendQueue: *sendQueue, StallTimeout: *stall, Metrics: metrics, Logger: logger,
		NoPoller: *noPoller, KeyRetention: *keyRetention,
	})
	if err != nil {
		return fail("%v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fail("%v", err)
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("roomlog serving", "addr", "http://"+ln.Addr().String(), "ws", "ws://"+ln.Addr().String()+"/v1/ws", "data", *data, "version", version)
	if devMode {
		demo, _ := transport.NewToken(auth.Secret, transport.TokenSpec{Subject: "demo", Rooms: []string{"*"}, Admin: true, TTL: 24 * time.Hour})
		logger.Warn("DEVELOPMENT MODE: no --jwt-secret, --jwt-public-key or --jwks given; tokens are signed with a secret made up for this run only",
			"jwt_secret", string(auth.Secret))
		fmt.Fprintf(os.Stderr, "\nA token for user \"demo\" (all rooms, admin, 24h):\n\n  %s\n\nMake more with: roomlog token --secret %s --sub alice --rooms 'doc:*'\n\n", demo, auth.Secret)
	}

	if *debugAddr != "" {
		dln, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			return fail("--debug-addr: %v", err)
		}
		dmux := http.NewServeMux()
		dmux.HandleFunc("/debug/pprof/", pprof.Index)
		dmux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		dmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		dmux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		dmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		dsrv := &http.Server{Handler: dmux, ReadHeaderTimeout: 10 * time.Second}
		go dsrv.Serve(dln)
		defer dsrv.Close()
		logger.Info("profiling listener", "debug", "http://"+dln.Addr().String()+"/debug/pprof/")
	}
	if isURL(*jwks) {
		go refreshJWKS(ctx, *jwks, *jwksRefresh, verifier, logger)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fail("%v", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: telling clients to reconnect, acking in-flight publishes")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	httpSrv.Shutdown(shutdownCtx)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Error("shutdown", "err", err)
	}
	if err := log.Close(); err != nil {
		return fail("closing the log: %v", err)
	}
	logger.Info("stopped cleanly")
	return 0
}

func publishRateOrOff(r float64) float64 {
	if r == 0 {
		return -1
	}
	return r
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// refreshJWKS fetches a JWKS URL every interval until ctx ends, so rotated keys are picked up; a
// failed fetch keeps the keys in use.
func refreshJWKS(ctx context.Context, url string, every time.Duration, v *transport.Verifier, logger *slog.Logger) {
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
