//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// fdReserve is what socketBound keeps of the open-file limit for everything but client sockets:
// the data file, the listener, the poller, NATS connections, logs.
const fdReserve = 64

// socketBound is the number of sockets the listener may hold: max (0: no bound of its own), and
// never so many that the process runs out of file descriptors, which would fail every accept
// (health checks and admins included) and the data file's own operations.
func socketBound(max int, logger *slog.Logger) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= 1<<31 { // no limit to speak of
		return max
	}
	fit := int(lim.Cur) - fdReserve
	if fit < 1 {
		fit = 1
	}
	if max == 0 || max > fit {
		logger.Info("--max-conns lowered to fit the open-file limit (raise it with ulimit -n)", "max_conns", fit, "nofile", lim.Cur)
		return fit
	}
	return max
}
