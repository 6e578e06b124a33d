//go:build !unix

package boltlog

import (
	"os"
	"time"
)

// lockShared does nothing where flock is missing; bbolt's own lock still guards the file.
func lockShared(*os.File, time.Duration) error { return nil }
