package boltlog

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropPageCache asks the kernel to forget the cached pages of the file at path, so that the next
// reads come from the disk. After a failed fsync, Linux may keep the pages it could not write
// and mark them clean: read back, they look written. Best effort: pages still mapped stay.
func dropPageCache(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
