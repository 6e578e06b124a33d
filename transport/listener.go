package transport

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/roomlog/roomlog/internal/defaults"
)

// Bounds on sockets, for a server whose listener anyone may reach.
const (
	DefaultMaxConns      = 50000
	DefaultMaxConnsPerIP = 1000
)

// HTTP timeouts for requests that are not WebSocket upgrades (see NewHTTPServer).
const (
	// DefaultHTTPReadTimeout bounds reading a request, headers and body: a request whose body
	// does not arrive is cut within it.
	DefaultHTTPReadTimeout = 10 * time.Second
	// DefaultHTTPWriteTimeout bounds writing an answer (streams of the audit API and backups
	// move it on as they make progress).
	DefaultHTTPWriteTimeout = 30 * time.Second
	// DefaultHTTPIdleTimeout is how long a keep-alive connection may wait for its next request.
	DefaultHTTPIdleTimeout = 60 * time.Second
)

// HTTPTimeouts are the timeouts NewHTTPServer sets; a zero field takes its default.
type HTTPTimeouts struct {
	Read, Write, Idle time.Duration
}

// NewHTTPServer returns an http.Server for handler (a Server, possibly wrapped) with read,
// write and idle timeouts, so that no socket is held by a client that sends or reads nothing.
// A WebSocket connection is free of them once upgraded: its liveness is the heartbeat, and its
// writes are bounded by Config.StallTimeout.
func NewHTTPServer(handler http.Handler, t HTTPTimeouts) *http.Server {
	defaults.Positive(&t.Read, DefaultHTTPReadTimeout)
	defaults.Positive(&t.Write, DefaultHTTPWriteTimeout)
	defaults.Positive(&t.Idle, DefaultHTTPIdleTimeout)
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(t.Read, 10*time.Second),
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// LimitListener bounds the sockets a listener holds: at most max in all and maxPerIP from one
// address (loopback addresses are exempt from the latter: a reverse proxy on this machine
// brings every client from there). A connection past a bound is accepted and closed at once, so
// that the kernel's queue does not fill and clients already served are never held up. A bound
// of 0 or less is no bound. refused, when set, is told of each refusal ("max_conns" or
// "max_conns_per_ip").
//
// The connections it returns implement syscall.Conn and CloseWrite as *net.TCPConn does, so
// that the epoll poller and the closing handshake work through them.
func LimitListener(ln net.Listener, max, maxPerIP int, refused func(reason string, remote net.Addr)) net.Listener {
	return &limitListener{Listener: ln, max: max, maxPerIP: maxPerIP, refused: refused, perIP: map[string]int{}, exempt: isLoopback}
}

type limitListener struct {
	net.Listener
	max, maxPerIP int
	refused       func(string, net.Addr)

	mu     sync.Mutex
	exempt func(ip string) bool // from the per-address bound; under mu, a test hook
	total  int
	perIP  map[string]int
}

func isLoopback(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && p.IsLoopback()
}

// Accept returns the next connection within the bounds; those past them are closed here.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		reason := l.claim(ip)
		if reason == "" {
			return &limitedConn{Conn: c, l: l, ip: ip}, nil
		}
		if l.refused != nil {
			l.refused(reason, c.RemoteAddr())
		}
		c.Close()
	}
}

// claim counts a connection from ip, or says which bound refuses it.
func (l *limitListener) claim(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return "max_conns"
	case l.maxPerIP > 0 && !l.exempt(ip) && l.perIP[ip] >= l.maxPerIP:
		return "max_conns_per_ip"
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// limitedConn is a connection counted by its limitListener until its first Close.
type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// SyscallConn exposes the socket to the epoll poller.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("transport: the connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// CloseWrite half-closes the connection (the WebSocket closing handshake).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
