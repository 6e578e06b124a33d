package transport

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/roomlog/roomlog/wire"
)

// What the server refuses (connections it will not take, frames it answers with an error) is
// counted in the metrics and logged at debug level, so an operator can see why clients fail. The
// log lines are rate-limited: a misbehaving client sending a flood of bad frames must not turn
// into a flood of log lines. The lines a limit drops are counted in the next one written.

// Rate of refusal log lines: refusalLogRate a second on average, refusalLogBurst at once.
const (
	refusalLogRate  = 10
	refusalLogBurst = 50
)

type refusalLog struct {
	logger     *slog.Logger
	limiter    *rate.Limiter
	suppressed atomic.Int64
}

func newRefusalLog(logger *slog.Logger) *refusalLog {
	return &refusalLog{logger: logger, limiter: rate.NewLimiter(refusalLogRate, refusalLogBurst)}
}

// log writes msg at debug level, unless the rate limit drops it.
func (l *refusalLog) log(msg string, attrs ...any) {
	if !l.logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if !l.limiter.Allow() {
		l.suppressed.Add(1)
		return
	}
	if n := l.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "suppressed_before", n)
	}
	l.logger.Debug(msg, attrs...)
}

// refusedConnection counts and logs a connection refused before or at its hello, by reason: a
// bye code (unauthenticated, token_expired), origin, upgrade or shutting_down.
func (s *Server) refusedConnection(reason string, attrs ...any) {
	s.metrics.refusedConns.WithLabelValues(reason).Inc()
	s.refusals.log("connection refused", append([]any{"why", reason}, attrs...)...)
}

// RefusedSocket counts and logs a socket a LimitListener closed at accept (reason max_conns or
// max_conns_per_ip): pass it as LimitListener's refused.
func (s *Server) RefusedSocket(reason string, remote net.Addr) {
	s.refusedConnection(reason, "remote", remote.String())
}

// refusedFrame counts and logs a client frame answered with an error of code. internal is
// counted but not logged here: the failure behind it is logged where it happened.
func (c *conn) refusedFrame(code, message string) {
	c.s.metrics.errorReplies.WithLabelValues(code).Inc()
	if code != wire.CodeInternal {
		c.s.refusals.log("frame refused", "code", code, "message", message, "conn", c.id, "user", c.user)
	}
}
