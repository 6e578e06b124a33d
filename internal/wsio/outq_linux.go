package wsio

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// unackedBytes is the bytes of the socket's send queue that its peer has not acknowledged
// (SIOCOUTQ, tcp(7)).
func unackedBytes(raw syscall.RawConn) (n int, ok bool) {
	var ioErr error
	err := raw.Control(func(fd uintptr) {
		n, ioErr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	return n, err == nil && ioErr == nil
}
