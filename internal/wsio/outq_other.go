//go:build !linux

package wsio

import "syscall"

// unackedBytes is not known on this platform.
func unackedBytes(syscall.RawConn) (int, bool) { return 0, false }
