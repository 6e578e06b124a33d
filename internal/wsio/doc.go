// Package wsio owns the server's WebSocket byte handling below the protocol: the read half of RFC
// 6455 (Reader: client frames as they come, reassembled, with no goroutine or buffer held by an
// idle connection), whole-frame writes corked into few system calls (CorkConn, AppendFrame), and on
// Linux one epoll Poller that wakes a connection when it has bytes to read. It knows nothing of
// roomlog's frames; package transport runs the protocol on top.
package wsio

import "errors"

// Readable is what a Poller wakes: the connection has bytes, or an end, to read.
type Readable interface{ Readable() }

// Token names a connection registered with a Poller.
type Token uint32

// ErrWouldBlock is ReadNonblocking's answer when the socket has nothing to read now.
var ErrWouldBlock = errors.New("would block")
