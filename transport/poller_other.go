//go:build !linux

package transport

import (
	"errors"
	"syscall"
)

// poller is Linux-only (epoll); elsewhere each connection reads on its own goroutine.
type poller struct{}

func newPoller() (*poller, error)        { return nil, errors.New("transport: no poller on this platform") }
func (p *poller) register(c *conn) error { return errors.New("transport: no poller") }
func (p *poller) arm(c *conn) error      { return errors.New("transport: no poller") }
func (p *poller) deregister(c *conn)     {}
func (p *poller) close()                 {}
func readNonblocking(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("transport: no poller")
}
func readableNow(syscall.RawConn) bool { return false }
