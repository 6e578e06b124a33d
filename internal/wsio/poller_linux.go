//go:build linux

package wsio

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

// Poller waits, with one goroutine and epoll, for any of many connections to have bytes to read,
// so that a connection with nothing to read holds no goroutine (the usual Go server parks one per
// connection in a read).
//
// Each connection is registered one-shot: after an event the Poller ignores it until the
// connection's reader has read all there was and re-arms it, so at most one reader runs per
// connection. The connection's fd is only touched through its syscall.RawConn, which keeps the fd
// from being closed (and its number reused) meanwhile; once it is closed the kernel drops the
// registration itself.
//
// The Poller's own fds (the epoll instance and the eventfd that stops it) are held as os.Files
// and only used through them: a raw fd number used after its close may name another file of the
// process by then (a listener, a client's socket), and closing or writing to it breaks that one.
// Close is safe to call more than once.
type Poller struct {
	file  *os.File        // the epoll fd; the runtime's netpoller tells run when it has events
	raw   syscall.RawConn // file's, for epoll_ctl and epoll_wait
	wakeF *os.File        // an eventfd, written to stop run

	tick time.Duration // see pollerTick

	mu      sync.Mutex
	readers map[Token]Readable // token 0 is the eventfd
	next    Token
	done    chan struct{}
	closed  sync.Once
}

const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func NewPoller() (*Poller, error) { return newPoller(pollerTick) }

// newPoller is NewPoller with another tick (the benchmark of wake-ups under load compares them).
func newPoller(tick time.Duration) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("transport: epoll_create1: %w", err)
	}
	// run must not block in epoll_wait: a goroutine in a blocking system call holds its P until
	// sysmon notices, which on one core stalled everything else for milliseconds. Instead the
	// epoll fd is itself watched by the runtime's netpoller (an epoll fd is readable while it
	// has events), and run parks like any goroutine waiting on a socket.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("transport: epoll fd: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll") // from here on, file owns epfd
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("transport: epoll fd: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("transport: eventfd: %w", err)
	}
	wakeF := os.NewFile(uintptr(wake), "eventfd")
	var ctlErr error
	raw.Control(func(epfd uintptr) {
		ctlErr = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN})
	})
	if ctlErr != nil {
		file.Close()
		wakeF.Close()
		return nil, fmt.Errorf("transport: epoll_ctl: %w", ctlErr)
	}
	p := &Poller{file: file, raw: raw, wakeF: wakeF, readers: map[Token]Readable{}, done: make(chan struct{}), tick: tick}
	go p.run()
	return p, nil
}

// Register adds a connection, armed: r.Readable is called (on the poller's goroutine; it must
// not block) once raw has bytes or an end to read, and then not again until Arm. The
// connection's token is stored in *token before it is armed (under the poller's lock, which the
// poller holds when it looks r up), so Readable and what it starts may read it.
func (p *Poller) Register(raw syscall.RawConn, r Readable, token *Token) error {
	p.mu.Lock()
	for {
		p.next++
		if _, used := p.readers[p.next]; !used && p.next != 0 {
			break
		}
	}
	t := p.next
	*token = t
	p.readers[t] = r
	p.mu.Unlock()
	if err := p.ctl(raw, t, unix.EPOLL_CTL_ADD); err != nil {
		p.mu.Lock()
		delete(p.readers, t)
		p.mu.Unlock()
		return err
	}
	return nil
}

// Arm asks for the next event of a registered connection; it fails once the connection is
// closed.
func (p *Poller) Arm(raw syscall.RawConn, t Token) error { return p.ctl(raw, t, unix.EPOLL_CTL_MOD) }

// Deregister forgets the connection; events already taken for it are ignored.
func (p *Poller) Deregister(raw syscall.RawConn, t Token) {
	p.mu.Lock()
	delete(p.readers, t)
	p.mu.Unlock()
	p.ctl(raw, t, unix.EPOLL_CTL_DEL) // fails harmlessly when closed: the kernel dropped it already
}

func (p *Poller) ctl(raw syscall.RawConn, t Token, op int) error {
	var opErr error
	err := raw.Control(func(fd uintptr) {
		ctlErr := p.raw.Control(func(epfd uintptr) {
			ev := unix.EpollEvent{Events: pollEvents, Fd: int32(t)}
			opErr = unix.EpollCtl(int(epfd), op, int(fd), &ev)
		})
		if ctlErr != nil {
			opErr = ctlErr // the Poller is closed
		}
	})
	if err != nil {
		return err
	}
	return opErr
}

// pollerTick bounds how long run parks without looking at the epoll fd itself.
//
// run parks in the runtime's netpoller, which watches the epoll fd and makes run runnable when it
// has events. But the runtime only polls the network when a P runs out of other work, or from
// sysmon every 10 ms or more (whose finds go to the global run queue); a P with runnable
// goroutines in its queue never polls. Timers, on the other hand, are checked by every P at every
// scheduling. So on a busy server, readiness of the epoll fd (and of any socket: the usual
// goroutine blocked in Read is no better off) waits long after the kernel reported it, while a
// deadline wakes run on time and run then takes the events from epoll itself, past the netpoller.
// Nothing is lost in the kernel or here; the timer is what bounds the delay.
//
// BenchmarkWakeUnderLoad measures it: 100 connections, a byte written to one of them a thousand
// times a second, while 20 pairs of goroutines pass a value back and forth with a little work
// each time (a scheduler that is never idle, as when a server fans events out); the wait is from
// the write to the reader running. On this 2-core machine with GOMAXPROCS=1, a goroutine per
// connection blocked in Read, the usual Go server, was not woken at all while the load ran (a
// median of 1.9 s: the bytes were read when it stopped); this poller had a p99 of 50-60 ms with a
// 10 ms tick and 52-104 ms with a 1 s tick. With GOMAXPROCS=2: 236-238 ms for Read, 122-181 ms
// and 191-262 ms for the two ticks. In the two-process server benchmark (10 rooms x 100 members,
// 1,000 publishes/s) a 100 ms tick put the fan-out p50 at 58-74 ms against 14-20 ms with 10 ms.
// So a short tick is not a patch over a bug of this poller: it is how this poller gets around the
// runtime's late network polling, which every goroutine parked on a socket suffers from.
//
// What else was once suspected is covered without the timer:
//   - arming a socket that is already readable: the reader checks the socket itself after arming
//     (ReadableNow), which saves a trip through the poller and the netpoller;
//   - shutdown: Close writes the eventfd and sets a deadline of now, so it looks at once;
//   - more events than one epoll_wait takes: run calls epoll_wait again before it parks.
//
// The price: on an idle server with one connection the tick costs about 1.6% of a core (33 CPU
// ticks in 20 s on this machine, against 6 with a 100 ms tick). Blocking in epoll_wait on a
// thread of its own would need no timer, but a goroutine in a blocking system call holds its P
// until sysmon notices, which on one core stalled everything else for milliseconds.
const pollerTick = 10 * time.Millisecond

func (p *Poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		var waitErr error
		p.file.SetReadDeadline(time.Now().Add(p.tick))
		err := p.raw.Read(func(fd uintptr) bool {
			n, waitErr = epollWaitNow(int(fd), events)
			return waitErr != nil || n > 0 // nothing ready: park until the fd is readable
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The tick: look whatever the runtime said.
			err = p.raw.Control(func(fd uintptr) { n, waitErr = epollWaitNow(int(fd), events) })
		}
		if err != nil || waitErr != nil {
			return // the epoll fd is gone: nothing more will come
		}
		for _, ev := range events[:n] {
			token := Token(ev.Fd)
			if token == 0 {
				return // stop
			}
			p.mu.Lock()
			r := p.readers[token]
			p.mu.Unlock()
			if r != nil {
				r.Readable()
			}
		}
	}
}

// Close stops the Poller; the connections must be gone. Calls after the first do nothing.
func (p *Poller) Close() {
	p.closed.Do(func() {
		p.wakeF.Write([]byte{1, 0, 0, 0, 0, 0, 0, 0})
		p.file.SetReadDeadline(time.Now()) // look now, whatever the runtime says
		<-p.done
		p.file.Close()
		p.wakeF.Close()
	})
}

// ReadNonblocking reads what the socket has without waiting: ErrWouldBlock when it has nothing,
// io.EOF when the client closed it.
func ReadNonblocking(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var readErr error
	err := raw.Read(func(fd uintptr) bool {
		n, readErr = unix.Read(int(fd), b)
		return true // never wait here: the Poller does
	})
	switch {
	case err != nil:
		return 0, err
	case readErr == unix.EAGAIN:
		return 0, ErrWouldBlock
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

// ReadableNow reports whether the socket has bytes, or an end, to read now. The connection's
// reader asks after arming it: when bytes came while it read, it reads on at once rather than
// through the poller, whose wake-up waits for the runtime's netpoller (see pollerTick).
func ReadableNow(raw syscall.RawConn) bool {
	ready := false
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ready = n > 0 || err == nil || !errors.Is(err, unix.EAGAIN) // data, an end, or an error
		return true
	})
	return ready
}
