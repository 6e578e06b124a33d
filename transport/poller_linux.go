//go:build linux

package transport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller waits, with one goroutine and epoll, for any of many connections to have bytes to read,
// so that a connection with nothing to read holds no goroutine (the usual Go server parks one per
// connection in a read).
//
// Each connection is registered one-shot: after an event the poller ignores it until the
// connection's reader has read all there was and re-arms it, so at most one reader runs per
// connection. The connection's fd is only touched through its syscall.RawConn, which keeps the fd
// from being closed (and its number reused) meanwhile; once it is closed the kernel drops the
// registration itself.
type poller struct {
	epfd int
	file *os.File // epfd, so that the runtime's netpoller tells run when it has events
	wake int      // an eventfd, written to stop run

	mu    sync.Mutex
	conns map[uint32]*conn // by token; token 0 is the eventfd
	next  uint32
	done  chan struct{}
}

const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("transport: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("transport: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("transport: epoll_ctl: %w", err)
	}
	// run must not block in epoll_wait: a goroutine in a blocking system call holds its P until
	// sysmon notices, which on one core stalled everything else for milliseconds. Instead the
	// epoll fd is itself watched by the runtime's netpoller (an epoll fd is readable while it
	// has events), and run parks like any goroutine waiting on a socket.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("transport: epoll fd: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		unix.Close(wake)
		return nil, fmt.Errorf("transport: epoll fd: %w", err)
	}
	p := &poller{epfd: epfd, file: file, wake: wake, conns: map[uint32]*conn{}, done: make(chan struct{})}
	go p.run(raw)
	return p, nil
}

// register adds the connection, armed.
func (p *poller) register(c *conn) error {
	p.mu.Lock()
	for {
		p.next++
		if _, used := p.conns[p.next]; !used && p.next != 0 {
			break
		}
	}
	c.token = p.next
	p.conns[c.token] = c
	p.mu.Unlock()
	if err := p.ctl(c, unix.EPOLL_CTL_ADD); err != nil {
		p.mu.Lock()
		delete(p.conns, c.token)
		p.mu.Unlock()
		return err
	}
	return nil
}

// arm asks for the next event of a registered connection; it fails once the connection is closed.
func (p *poller) arm(c *conn) error { return p.ctl(c, unix.EPOLL_CTL_MOD) }

// deregister forgets the connection; events already taken for it are ignored.
func (p *poller) deregister(c *conn) {
	p.mu.Lock()
	delete(p.conns, c.token)
	p.mu.Unlock()
	p.ctl(c, unix.EPOLL_CTL_DEL) // fails harmlessly when closed: the kernel dropped it already
}

func (p *poller) ctl(c *conn, op int) error {
	var opErr error
	err := c.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: pollEvents, Fd: int32(c.token)}
		opErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return opErr
}

// pollerTick bounds how long run parks without looking at the epoll fd itself. The runtime wakes
// it when the fd becomes readable, yet a wakeup was once lost (a shutdown then waited for the
// poller for minutes). The likely case, arming a socket that is readable already, which epoll may
// not pass on to an epoll watching it, readers check for themselves (readableNow); the tick makes
// any other lost wakeup cost a connection at most this delay, never a hang.
const pollerTick = 10 * time.Millisecond

func (p *poller) run(raw syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		var waitErr error
		p.file.SetReadDeadline(time.Now().Add(pollerTick))
		err := raw.Read(func(fd uintptr) bool {
			n, waitErr = epollWaitNow(int(fd), events)
			return waitErr != nil || n > 0 // nothing ready: park until the fd is readable
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			n, waitErr = epollWaitNow(p.epfd, events) // the tick: look whatever the runtime said
		} else if err != nil {
			return // the epoll fd is gone: nothing more will come
		}
		if waitErr != nil {
			return
		}
		for _, ev := range events[:n] {
			token := uint32(ev.Fd)
			if token == 0 {
				return // stop
			}
			p.mu.Lock()
			c := p.conns[token]
			p.mu.Unlock()
			if c != nil {
				c.readable()
			}
		}
	}
}

// close stops the poller; the connections must be gone.
func (p *poller) close() {
	unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	p.file.SetReadDeadline(time.Now()) // look now, whatever the runtime says
	<-p.done
	p.file.Close()
	unix.Close(p.wake)
}

// readNonblocking reads what the socket has without waiting: errWouldBlock when it has nothing,
// io.EOF when the client closed it.
func readNonblocking(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var readErr error
	err := raw.Read(func(fd uintptr) bool {
		n, readErr = unix.Read(int(fd), b)
		return true // never wait here: the poller does
	})
	switch {
	case err != nil:
		return 0, err
	case readErr == unix.EAGAIN:
		return 0, errWouldBlock
	case readErr != nil:
		return 0, readErr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// epollWaitNow takes the events ready now, without waiting.
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		n, err := unix.EpollWait(epfd, events, 0)
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// readableNow reports whether the socket has bytes, or an end, to read now. The connection's
// reader asks after arming it: epoll queues an event for a socket that is ready when it is armed,
// but may not wake the runtime's netpoller, which watches the epoll fd, for it (see pollerTick).
func readableNow(raw syscall.RawConn) bool {
	ready := false
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ready = n > 0 || err == nil || !errors.Is(err, unix.EAGAIN) // data, an end, or an error
		return true
	})
	return ready
}
