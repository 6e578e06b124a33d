package boltlog

import (
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Headroom sizes: when less than headroomLow bytes of zero-filled space are left past bbolt's
// high-water mark, the writer fills the next headroomChunk bytes.
const (
	headroomChunk = 4 << 20
	headroomLow   = 1 << 20
)

// zeros is the source of the fill: read-only, so it costs no memory until it is read, and then
// only the shared zero page.
var zeros [256 << 10]byte

// headroom keeps zero-filled, already allocated space past the end of bbolt's data.
//
// Why: bbolt takes the pages a commit needs beyond its high-water mark from a file it grew with
// truncate, so they are holes. Writing into a hole allocates blocks, and then the commit's
// fdatasync must also commit the file system's metadata: on ext4 that doubles its cost (0.34 ms
// against 0.18 ms for an overwrite on the disk this was measured on). With blocks already written
// ahead of need, a commit's syncs flush data only. bbolt checks the file's real size before it
// grows it, so it uses the space as it is and never truncates over it.
//
// Invariant: only the writer goroutine calls ensure, and only between transactions, so bbolt
// never writes a page in the range being filled; the range is past the committed high-water mark,
// which no page of the file refers to, so filling it changes nothing bbolt can read.
type headroom struct {
	f   *os.File // the data file, opened a second time for writing
	end int64    // zero-filled up to here
}

// openHeadroom opens the data file for the filler. The fill is an optimisation: where it cannot be
// opened, bbolt grows the file as it always does.
func openHeadroom(path string) *headroom {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	return &headroom{f: f}
}

// ensure fills the file with zeros up to headroomChunk past the high-water mark when less than
// headroomLow is left. The caller holds no write transaction.
func (h *headroom) ensure(db *bolt.DB) error {
	if h == nil {
		return nil
	}
	tx, err := db.Begin(false)
	if err != nil {
		return err
	}
	mark := tx.Size()
	if err := tx.Rollback(); err != nil {
		return err
	}
	if h.end-mark >= headroomLow {
		return nil
	}
	// Space past the mark may be a hole bbolt left, growing the file with truncate (16 MiB at a
	// time once it is large, or past the headroom for one large commit): fill from the mark, not
	// from the file's size. Only the next chunk is filled; the rest of such a hole costs nothing
	// until the data comes near it.
	start, end := max(h.end, mark), mark+headroomChunk
	for off := start; off < end; {
		n, err := h.f.WriteAt(zeros[:min(int64(len(zeros)), end-off)], off)
		if err != nil {
			return fmt.Errorf("eventlog: fill headroom of %s: %w", h.f.Name(), err)
		}
		off += int64(n)
		h.end = off
	}
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("eventlog: fill headroom of %s: %w", h.f.Name(), err)
	}
	return nil
}

// fillHeadroom keeps the headroom; the writer calls it between transactions. A failure (a full
// disk, say) ends the filling and nothing else: bbolt then grows the file as it always does, and
// reports its own errors on commit.
func (l *Log) fillHeadroom() {
	if err := l.headroom.ensure(l.db); err != nil {
		l.headroom.close()
		l.headroom = nil
	}
}

func (h *headroom) close() error {
	if h == nil {
		return nil
	}
	return h.f.Close()
}
