package faultfs

import (
	"os"
	"path/filepath"
	"testing"
)

// RequireEnv names the environment variable that turns MountT's skip into a failure: CI sets it
// (it runs as root with /dev/fuse), so the fault tests never pass there by not running.
const RequireEnv = "ROOMLOG_REQUIRE_FUSE"

// MountT starts a new FS for t over a fresh backing directory and unmounts it when t ends. Where
// FUSE is unavailable (no root, no /dev/fuse, not Linux) it skips t, or fails it when RequireEnv
// is set. The package's TestMain must call ServeIfDaemon.
func MountT(t testing.TB) *FS {
	t.Helper()
	dir, backing := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "disk")
	for _, d := range []string{dir, backing} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Start(dir, backing)
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("the fault-injecting file system is required (%s is set): %v", RequireEnv, err)
		}
		t.Skipf("the fault-injecting file system cannot be mounted here (needs Linux, root and /dev/fuse): %v", err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f
}
