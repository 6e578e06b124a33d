package wsio

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// CorkConn lets the connection's writer put many WebSocket frames into one write system call:
// between cork and uncork, writes collect in a buffer; outside, they go straight through (so
// control frames gorilla writes on its own, such as a close in reply to a protocol error, are
// never held back).
type CorkConn struct {
	net.Conn
	// stall, when positive, is how long a write may wait without the client taking minProgress
	// bytes (see writeAllLocked): a client that reads slowly but steadily is never cut off, and
	// one that stops reading is, within stall of its socket's buffers filling up.
	stall   time.Duration
	mu      sync.Mutex
	corked  bool
	buf     []byte
	written int64           // bytes the kernel took, in all
	raw     syscall.RawConn // the socket, once looked up (see ackedLocked)
}

const corkLimit = 64 << 10 // flush early past this many buffered bytes

// corkBuffers are write buffers lent to connections while they write: an idle connection holds
// none, and a busy one does not grow a fresh buffer at every wake-up.
var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, corkLimit+16<<10); return &b }}

func (c *CorkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		if len(c.buf) > 0 {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		if err := c.writeAllLocked(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// writeFrame writes one whole WebSocket data frame (server frames are unmasked), so frames
// written here and control frames written by gorilla can only interleave at frame boundaries.
func (c *CorkConn) WriteFrame(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, frame...)
	if !c.corked || len(c.buf) >= corkLimit {
		return c.flushLocked()
	}
	return nil
}

// writeControl writes a control frame the connection's writer did not make (a ping, a pong, a
// close): into the buffer while the writer has it corked (it flushes it), else at once, within
// timeout.
func (c *CorkConn) WriteControl(frame []byte, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, frame...)
	if c.corked {
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	err := c.flushLocked()
	if c.buf != nil && len(c.buf) == 0 && cap(c.buf) < corkLimit {
		c.buf = nil // a small buffer made here: an idle connection keeps none
	}
	return err
}

// AppendFrame appends a final, unmasked data frame with the payload to dst (RFC 6455, 5.2).
func AppendFrame(dst []byte, messageType int, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, 0x80|byte(messageType))
	switch {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, payload...)
}

func (c *CorkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	if c.buf == nil {
		c.buf = (*corkBuffers.Get().(*[]byte))[:0]
	}
	c.mu.Unlock()
}

// uncork writes out what collected.
func (c *CorkConn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

func (c *CorkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.writeAllLocked(c.buf)
	if cap(c.buf) > 4*corkLimit {
		c.buf = nil // do not keep a burst's buffer for an idle connection
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// writeAllLocked writes p whole. A write waits while the client's socket buffers are full; it
// fails as stalled once the client has taken less than minProgress bytes in a stall time.
//
// Progress is what the client's TCP acknowledged (bytes written less those still unacknowledged
// in the send queue, SIOCOUTQ), not what the kernel took into the send buffer: of a full socket,
// the kernel still takes a trickle from a client that reads nothing (zero-window probes, the
// client's kernel compacting its receive queue), and counting that kept a stalled reader
// connected for three stall times; while a client that reads steadily but slower than the
// kernel's wake-ups (it wakes a blocked writer only once half the send queue has drained) shows
// its progress in acknowledgments alone. Where the queue cannot be read (no socket, TLS, another
// platform), what the kernel took counts.
//
// The queue is read only while a write waits (every quarter of the stall time), never on the
// way of a write that goes straight through.
func (c *CorkConn) writeAllLocked(p []byte) error {
	if c.stall <= 0 {
		_, err := c.Conn.Write(p)
		return err
	}
	probe := c.stall / 4
	var windowStart time.Time // when the client was last seen taking minProgress, while waiting
	var windowAcked int64     // what it had acknowledged then
	for {
		c.Conn.SetWriteDeadline(time.Now().Add(probe))
		n, err := c.Conn.Write(p)
		c.written += int64(n)
		p = p[n:]
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
		now, acked := time.Now(), c.ackedLocked()
		switch {
		case windowStart.IsZero(): // the write has waited a quarter of the stall time
			windowStart, windowAcked = now.Add(-probe), acked
		case acked-windowAcked >= minProgress:
			windowStart, windowAcked = now, acked
		case now.Sub(windowStart) >= c.stall:
			return err // stalled: the client took (almost) nothing in a stall time
		}
	}
}

// minProgress is what a client must take in a stall time to count as reading: 64 KiB, about
// 2 KB/s at the default stall time of 30 s.
const minProgress = 64 << 10

// ackedLocked is how many bytes written to the connection the client's TCP has acknowledged, or,
// where that cannot be known, how many the kernel took.
func (c *CorkConn) ackedLocked() int64 {
	if c.raw == nil {
		sc, isSocket := c.Conn.(syscall.Conn)
		if !isSocket {
			return c.written
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return c.written
		}
		c.raw = raw
	}
	unacked, ok := unackedBytes(c.raw)
	if !ok {
		return c.written
	}
	return c.written - int64(unacked)
}

// Release returns the buffer of an idle connection to the pool.
func (c *CorkConn) Release() {
	c.mu.Lock()
	if !c.corked && len(c.buf) == 0 && c.buf != nil {
		if cap(c.buf) <= 4*corkLimit {
			b := c.buf[:0]
			corkBuffers.Put(&b)
		}
		c.buf = nil
	}
	c.mu.Unlock()
}

// HijackWriter hands gorilla's Upgrade a CorkConn instead of the raw connection: after the
// upgrade, Conn is the connection.
type HijackWriter struct {
	http.ResponseWriter
	Stall time.Duration // the CorkConn's stall time
	Conn  *CorkConn
}

// Hijack implements http.Hijacker.
func (w *HijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.Conn = &CorkConn{Conn: nc, stall: w.Stall}
	return w.Conn, brw, nil
}
