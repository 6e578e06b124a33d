//go:build !linux

package wsio

import (
	"errors"
	"syscall"
)

// Poller is Linux-only (epoll); elsewhere each connection reads on its own goroutine.
type Poller struct{}

var errNoPoller = errors.New("wsio: no poller on this platform")

func NewPoller() (*Poller, error)                                  { return nil, errNoPoller }
func (p *Poller) Register(syscall.RawConn, Readable, *Token) error { return errNoPoller }
func (p *Poller) Arm(syscall.RawConn, Token) error                 { return errNoPoller }
func (p *Poller) Deregister(syscall.RawConn, Token)                {}
func (p *Poller) Close()                                           {}

// ReadNonblocking needs the poller.
func ReadNonblocking(syscall.RawConn, []byte) (int, error) { return 0, errNoPoller }

// ReadableNow needs the poller.
func ReadableNow(syscall.RawConn) bool { return false }
