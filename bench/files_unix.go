//go:build unix

package bench

import "syscall"

// openFileLimit is how many files this process may open (0: unknown or unbounded).
func openFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= 1<<31 {
		return 0
	}
	return int(lim.Cur)
}
