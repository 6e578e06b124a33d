//go:build !linux

package boltlog

// dropPageCache is a no-op where the kernel offers no way to drop a file's cached pages.
func dropPageCache(string) {}
