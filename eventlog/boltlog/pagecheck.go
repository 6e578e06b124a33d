package boltlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// checkFile reads the bbolt file at path page by page, with pread and never through a memory map,
// and returns an error wrapping ErrCorrupt or ErrNotLog for anything that would make bbolt crash
// or read past the end of the file: a file shorter than its meta page says, a page reached from
// the tree that is out of bounds, referenced twice, of the wrong type or whose elements point
// outside it.
//
// Why it exists: bbolt trusts the file. It reads its memory map past the end of a truncated file
// (SIGBUS, which no recover catches), and with NoFreelistSync a writable open walks every page on
// a goroutine of its own, where an assertion on a damaged page panics out of reach of any recover.
// Open runs this walk first, so a damaged file is refused with an error naming the damage. It
// mirrors what that walk of bbolt's (tx.recursivelyCheckBucket) asserts, and adds the size check.
//
// It reads the file as the newest valid meta page describes it, so it must not race a writer: it
// holds a shared lock on the file (the lock bbolt's readers take) while it reads, and fails with
// ErrLocked when a writer holds the file for longer than lockTimeout.
func checkFile(path string, lockTimeout time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockShared(f, lockTimeout); err != nil {
		if errors.Is(err, ErrLocked) {
			return fmt.Errorf("%w (waited %s)", ErrLocked, lockTimeout)
		}
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return fmt.Errorf("%w: the file is empty (0 bytes)", ErrNotLog)
	}
	m, err := readMeta(f, st.Size())
	if err != nil {
		return err
	}
	if want := int64(m.highWater) * int64(m.pageSize); st.Size() < want {
		return fmt.Errorf("%w: truncated: expected at least %d bytes (%d pages of %d), has %d",
			eventlog.ErrCorrupt, want, m.highWater, m.pageSize, st.Size())
	}
	w := &pageWalker{f: f, meta: m, seen: make([]uint64, m.highWater/64+1)}
	w.mark(0)
	w.mark(1)
	if m.freelist != noFreelist {
		if err := w.checkFreelist(); err != nil {
			return err
		}
	}
	_, err = w.walk(m.root, 0, nil, nil)
	return err
}

// bbolt's on-disk constants (go.etcd.io/bbolt/internal/common).
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id uint64 | flags uint16 | count uint16 | overflow uint32
	pageElementSize  = 16 // branch: pos, ksize uint32, pgid uint64; leaf: flags, pos, ksize, vsize uint32
	bucketHeaderSize = 16 // root pgid uint64 | sequence uint64
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	metaPageFlag     = 0x04
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01
	noFreelist       = ^uint64(0)
	maxTreeDepth     = 64 // far deeper than any real B+tree of a file this size
)

// boltMeta is the part of a bbolt meta page the walk needs.
type boltMeta struct {
	pageSize  int
	root      uint64 // the root bucket's page
	freelist  uint64
	highWater uint64 // pages in use: every page id is below it
	txid      uint64
}

// readMeta returns the newest valid meta page, as bbolt chooses it.
func readMeta(f *os.File, size int64) (boltMeta, error) {
	m0, err0 := readMetaAt(f, 0)
	pageSize := m0.pageSize
	if err0 != nil {
		// As bbolt does, look for the second meta page at the usual page sizes.
		for ps := 1024; ps <= 64<<10; ps *= 2 {
			if m1, err := readMetaAt(f, int64(ps)); err == nil && m1.pageSize == ps {
				pageSize = ps
				break
			}
		}
	}
	if pageSize == 0 {
		if size < 2*pageHeaderSize+64 {
			return boltMeta{}, fmt.Errorf("%w: %d bytes, too small for a bbolt file", ErrNotLog, size)
		}
		return boltMeta{}, fmt.Errorf("%w: neither meta page is valid (%v)", ErrNotLog, err0)
	}
	m1, err1 := readMetaAt(f, int64(pageSize))
	switch {
	case err0 == nil && err1 == nil && m1.txid > m0.txid, err0 != nil && err1 == nil:
		return m1, checkMetaBounds(m1, 1)
	case err0 == nil:
		return m0, checkMetaBounds(m0, 0)
	default:
		return boltMeta{}, fmt.Errorf("%w: neither meta page is valid (%v; %v)", ErrNotLog, err0, err1)
	}
}

var errMetaChecksum = errors.New("checksum mismatch")

func readMetaAt(f *os.File, off int64) (boltMeta, error) {
	var b [pageHeaderSize + 64]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return boltMeta{}, fmt.Errorf("no meta page at byte %d", off)
		}
		return boltMeta{}, err
	}
	le := binary.LittleEndian
	m := b[pageHeaderSize:]
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, fmt.Errorf("meta page at byte %d: no bbolt magic number", off)
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("meta page at byte %d: bbolt version %d, want %d", off, v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, fmt.Errorf("meta page at byte %d: %w", off, errMetaChecksum)
	}
	ps := int(le.Uint32(m[8:]))
	if ps < 512 || ps > 64<<10 || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page at byte %d: page size %d", off, ps)
	}
	return boltMeta{
		pageSize: ps, root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		highWater: le.Uint64(m[40:]), txid: le.Uint64(m[48:]),
	}, nil
}

func checkMetaBounds(m boltMeta, which int) error {
	switch {
	case m.highWater < 3 || m.highWater > 1<<40:
		return fmt.Errorf("%w: meta page %d: high-water mark of %d pages", eventlog.ErrCorrupt, which, m.highWater)
	case m.root < 2 || m.root >= m.highWater:
		return fmt.Errorf("%w: meta page %d: root page %d outside [2, %d)", eventlog.ErrCorrupt, which, m.root, m.highWater)
	}
	return nil
}

// pageWalker walks the B+tree of buckets from the root, page by page.
type pageWalker struct {
	f    *os.File
	meta boltMeta
	seen []uint64 // a bit per page id already reached
}

func (w *pageWalker) mark(id uint64) bool {
	word, bit := id/64, uint64(1)<<(id%64)
	was := w.seen[word]&bit != 0
	w.seen[word] |= bit
	return was
}

func badPage(id uint64, format string, args ...any) error {
	return fmt.Errorf("%w: bad page %d: %s", eventlog.ErrCorrupt, id, fmt.Sprintf(format, args...))
}

// read returns page id with its overflow pages, after checking that they are in bounds, of one of
// the flags given and reached for the first time.
func (w *pageWalker) read(id uint64, flags ...uint16) ([]byte, error) {
	ps := uint64(w.meta.pageSize)
	if id < 2 || id >= w.meta.highWater {
		return nil, badPage(id, "out of bounds: the file has %d pages", w.meta.highWater)
	}
	head := make([]byte, ps)
	if _, err := w.f.ReadAt(head, int64(id*ps)); err != nil {
		return nil, badPage(id, "read: %v", err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(head); got != id {
		return nil, badPage(id, "its header says page %d", got)
	}
	flag, overflow := le.Uint16(head[8:]), uint64(le.Uint32(head[12:]))
	if !containsFlag(flags, flag) {
		return nil, badPage(id, "unexpected page type (flags %#x)", flag)
	}
	if id+overflow >= w.meta.highWater {
		return nil, badPage(id, "%d overflow pages run past the last page %d", overflow, w.meta.highWater-1)
	}
	for p := id; p <= id+overflow; p++ {
		if w.mark(p) {
			return nil, badPage(p, "referenced twice")
		}
	}
	if overflow == 0 {
		return head, nil
	}
	buf := make([]byte, (overflow+1)*ps)
	if _, err := w.f.ReadAt(buf, int64(id*ps)); err != nil {
		return nil, badPage(id, "read: %v", err)
	}
	return buf, nil
}

func containsFlag(flags []uint16, f uint16) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

func (w *pageWalker) checkFreelist() error {
	_, err := w.read(w.meta.freelist, freelistPageFlag)
	return err
}

// walk checks the tree whose root is page id, and every bucket below it. Keys of the tree must
// lie in [minKey, maxKey) (nil: unbounded) and increase strictly; it returns the largest key of
// the tree.
func (w *pageWalker) walk(id uint64, depth int, minKey, maxKey []byte) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, badPage(id, "the tree is more than %d levels deep", maxTreeDepth)
	}
	p, err := w.read(id, branchPageFlag, leafPageFlag)
	if err != nil {
		return nil, err
	}
	return w.walkPage(id, p, depth, minKey, maxKey)
}

// element is one element of a page, located and bounds-checked.
type element struct {
	key, value []byte // value is nil on branch pages
	child      uint64 // a branch element's page
	bucket     bool   // a leaf element holding a bucket
}

// elements returns the elements of page p (id is for messages; an inline page has its bucket's
// page id), checking that each lies inside the page.
func elements(id uint64, p []byte) ([]element, error) {
	le := binary.LittleEndian
	flag, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if flag != branchPageFlag && flag != leafPageFlag {
		return nil, badPage(id, "unexpected page type (flags %#x)", flag)
	}
	if pageHeaderSize+count*pageElementSize > len(p) {
		return nil, badPage(id, "%d elements do not fit in %d bytes", count, len(p))
	}
	out := make([]element, count)
	for i := range out {
		at := uint64(pageHeaderSize + i*pageElementSize)
		e := p[at : at+pageElementSize]
		if flag == branchPageFlag {
			pos, ksize := uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:]))
			if at+pos+ksize > uint64(len(p)) {
				return nil, badPage(id, "element %d's key runs past the page", i)
			}
			out[i] = element{key: p[at+pos : at+pos+ksize], child: le.Uint64(e[8:])}
			continue
		}
		eflags, pos := le.Uint32(e[0:]), uint64(le.Uint32(e[4:]))
		ksize, vsize := uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		end := at + pos + ksize + vsize
		if end > uint64(len(p)) {
			return nil, badPage(id, "element %d's key and value run past the page", i)
		}
		out[i] = element{key: p[at+pos : at+pos+ksize], value: p[at+pos+ksize : end], bucket: eflags&bucketLeafFlag != 0}
	}
	return out, nil
}

// walkPage checks page p's elements, their key order, and descends into children and buckets.
func (w *pageWalker) walkPage(id uint64, p []byte, depth int, minKey, maxKey []byte) ([]byte, error) {
	elems, err := elements(id, p)
	if err != nil {
		return nil, err
	}
	branch := binary.LittleEndian.Uint16(p[8:]) == branchPageFlag
	var last []byte
	prev := minKey
	for i, e := range elems {
		switch {
		case i == 0 && prev != nil && bytes.Compare(prev, e.key) > 0,
			i > 0 && bytes.Compare(prev, e.key) >= 0,
			maxKey != nil && bytes.Compare(e.key, maxKey) >= 0:
			return nil, badPage(id, "key %d is out of order", i)
		}
		if branch {
			next := maxKey
			if i+1 < len(elems) {
				next = elems[i+1].key
			}
			if last, err = w.walk(e.child, depth+1, e.key, next); err != nil {
				return nil, err
			}
			prev = last
			continue
		}
		last, prev = e.key, e.key
		if e.bucket {
			if err := w.walkBucket(id, i, e.value, depth); err != nil {
				return nil, err
			}
		}
	}
	return last, nil
}

// walkBucket checks a bucket whose value v is element i of page id: its own tree, or its inline
// page.
func (w *pageWalker) walkBucket(id uint64, i int, v []byte, depth int) error {
	if len(v) < bucketHeaderSize {
		return badPage(id, "element %d is a bucket of %d bytes", i, len(v))
	}
	if root := binary.LittleEndian.Uint64(v); root != 0 {
		_, err := w.walk(root, depth+1, nil, nil)
		return err
	}
	inline := v[bucketHeaderSize:]
	if len(inline) < pageHeaderSize {
		return badPage(id, "element %d is an inline bucket of %d bytes", i, len(inline))
	}
	if f := binary.LittleEndian.Uint16(inline[8:]); f != leafPageFlag {
		return badPage(id, "element %d is an inline bucket with page type %#x", i, f)
	}
	if depth > maxTreeDepth {
		return badPage(id, "the tree is more than %d levels deep", maxTreeDepth)
	}
	_, err := w.walkPage(id, inline, depth+1, nil, nil)
	return err
}
