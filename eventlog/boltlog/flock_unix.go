//go:build unix

package boltlog

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockShared takes a shared flock on f (the lock bbolt's readers take; its writer takes it
// exclusively), waiting up to timeout.
func lockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return ErrLocked
			}
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
