//go:build linux

// Package faultfs is a fault-injecting FUSE file system for roomlog's tests: the storage faults
// real disks have, on demand, under the real bbolt file.
//
// It passes everything through to a backing directory (go-fuse's loopback node) and can be told,
// while mounted, to:
//
//   - fail fsync and fdatasync with EIO, the next n times or from now on (FailSyncs);
//   - hold every fsync until released, to show what readers see meanwhile (PauseSyncs);
//   - fail writes with ENOSPC once a byte budget is spent (SetSpace);
//   - lose unsynced writes at a power cut (PowerCut).
//
// The last is LazyFS's model, as Jepsen uses it to test databases: each file's writes since its
// last fsync wait in an overlay that reads (memory-mapped reads too, which the kernel fetches
// through READ) and the file's size all see; an fsync of any descriptor of the file applies the
// overlay to the backing file; a power cut discards every overlay. A failed fsync discards the
// file's overlay too, the worst a real disk may do: the writes are lost, while the pages the
// kernel cached from them may still read as written until the file is opened again (FUSE drops a
// file's cached pages at open) — the state PostgreSQL's "fsyncgate" was about.
//
// Metadata (creating, renaming, truncating files) is durable at once. The backing files are never
// fsynced themselves: the overlay is the volatile cache of this model, the backing directory its
// disk.
//
// The file system is served by a process of its own, never by the process using it: a process
// that memory-maps a file of a FUSE mount it serves itself deadlocks as soon as a page fault waits
// for the server while the Go runtime stops the world. Start runs the test binary again as that
// server (TestMain calls ServeIfDaemon first) and drives it over a pipe; mounting needs root and
// /dev/fuse, and the server does the mount(2) itself.
package faultfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// server is a mounted fault-injecting file system, in the daemon process.
type server struct {
	dir     string // the mount point
	backing string
	srv     *fuse.Server

	mu       sync.Mutex
	files    map[uint64]*overlay // by backing inode number
	failN    int                 // fsyncs still to fail; negative: all
	pause    *pause
	budget   int64 // bytes writes may still take; negative: no limit
	off      bool  // between PowerCut and PowerOn: writes and fsyncs fail with EIO
	syncs    int   // fsyncs that reached the file system
	failed   int   // fsyncs that failed
	powerCut int
}

// mount mounts a new file system at dir, passing through to the directory backing.
func mount(dir, backing string) (*server, error) {
	f := &server{dir: dir, backing: backing, files: make(map[uint64]*overlay), budget: -1}
	loopback, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("faultfs: %s: %w", backing, err)
	}
	rootNode := &node{LoopbackNode: loopback.(*fs.LoopbackNode), fsys: f}
	zero := time.Duration(0)
	srv, err := fs.Mount(dir, rootNode, &fs.Options{
		AttrTimeout:  &zero, // sizes come from the overlay: never let the kernel guess them
		EntryTimeout: &zero,
		MountOptions: fuse.MountOptions{
			DirectMount: true,
			FsName:      "faultfs",
			Name:        "faultfs",
			Debug:       os.Getenv("FAULTFS_DEBUG") != "",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount %s: %w", dir, err)
	}
	f.srv = srv
	return f, nil
}

// Dir is the mount point.
func (f *server) Dir() string { return f.dir }

// Unmount unmounts the file system. Unsynced writes are lost, as at a power cut.
func (f *server) Unmount() error {
	f.Release()
	var err error
	for range 50 { // a process that just died may still hold the mount busy for a moment
		if err = f.srv.Unmount(); err == nil {
			f.srv.Wait()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("faultfs: unmount %s: %w", f.dir, err)
}

// FailSyncs makes the next n fsyncs fail with EIO, and every one from now on when n is negative;
// 0 stops failing them.
func (f *server) FailSyncs(n int) {
	f.mu.Lock()
	f.failN = n
	f.mu.Unlock()
}

// SetSpace lets writes take n more bytes, then fails them with ENOSPC; negative n lifts the limit.
func (f *server) SetSpace(n int64) {
	f.mu.Lock()
	f.budget = n
	f.mu.Unlock()
}

// pause holds fsyncs until released.
type pause struct {
	skip    int  // fsyncs still to let through before holding them
	reached bool // an fsync is being held
	release chan struct{}
}

// PauseSyncs lets the next skip fsyncs through, then holds every fsync until Release is called.
// (A bbolt commit is two: its data pages, then its meta page; skip 1 holds the meta page's.)
func (f *server) PauseSyncs(skip int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pause = &pause{skip: skip, release: make(chan struct{})}
}

// Held reports whether an fsync is being held.
func (f *server) Held() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pause != nil && f.pause.reached
}

// Release lets held fsyncs go on, and later ones pass.
func (f *server) Release() {
	f.mu.Lock()
	p := f.pause
	f.pause = nil
	f.mu.Unlock()
	if p != nil {
		close(p.release)
	}
}

// PowerCut discards every write not yet fsynced, in every file, and drops what the kernel cached
// of them; until PowerOn, every write and fsync fails with EIO, as on a machine that is off, so
// nothing written after the cut survives it. Reads still pass, for the processes still running.
func (f *server) PowerCut() {
	f.mu.Lock()
	files := make([]*overlay, 0, len(f.files))
	for _, o := range f.files {
		files = append(files, o)
	}
	f.powerCut++
	f.off = true
	f.mu.Unlock()
	for _, o := range files {
		o.discard()
		o.invalidate()
	}
}

// PowerOn ends a power cut: writes and fsyncs pass again. Restart what used the files.
func (f *server) PowerOn() {
	f.mu.Lock()
	f.off = false
	f.mu.Unlock()
}

func (f *server) isOff() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.off
}

// Stats returns the counts so far.
func (f *server) stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Syncs: f.syncs, FailedSyncs: f.failed, PowerCuts: f.powerCut}
}

// Unsynced is how many bytes of writes wait for an fsync, in all files.
func (f *server) Unsynced() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, o := range f.files {
		n += o.pending()
	}
	return n
}

// overlayFor returns the overlay of the backing file with inode ino, making it if needed.
func (f *server) overlayFor(ino uint64, inode *fs.Inode, path string) *overlay {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.files[ino]
	if o == nil {
		o = &overlay{path: path, blocks: make(map[int64][]byte)}
		f.files[ino] = o
	}
	if inode != nil {
		o.inodeMu.Lock()
		o.inode = inode
		o.inodeMu.Unlock()
	}
	return o
}

func (f *server) lookupOverlay(ino uint64) *overlay {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[ino]
}

// spend takes n bytes of the write budget, or reports that the disk is full.
func (f *server) spend(n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget < 0 {
		return true
	}
	if int64(n) > f.budget {
		return false
	}
	f.budget -= int64(n)
	return true
}

// syncFault decides the fate of one fsync: held first while paused, then failed or passed.
func (f *server) syncFault(ctx context.Context) syscall.Errno {
	f.mu.Lock()
	p := f.pause
	f.syncs++
	if p != nil && p.skip > 0 {
		p.skip--
		p = nil
	}
	if p != nil {
		p.reached = true
	}
	f.mu.Unlock()
	if p != nil {
		select {
		case <-p.release:
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return syscall.EIO
	}
	if f.failN != 0 {
		if f.failN > 0 {
			f.failN--
		}
		f.failed++
		return syscall.EIO
	}
	return 0
}

// node is a loopback node whose files go through an overlay.
type node struct {
	*fs.LoopbackNode
	fsys *server
}

// WrapChild makes every node of the tree a node of this file system.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fsys: n.fsys}
}

var (
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeGetattrer = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
)

func (n *node) backingPath() string {
	return filepath.Join(n.fsys.backing, n.Path(n.Root()))
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return inode, wrap(n.fsys, fh, inode, filepath.Join(n.backingPath(), name)), fuseFlags, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return wrap(n.fsys, fh, n.EmbeddedInode(), n.backingPath()), fuseFlags, 0
}

// wrap puts a regular file's handle behind its overlay. The wrapper offers no passthrough, so
// every read and write comes to this file system.
func wrap(fsys *server, fh fs.FileHandle, inode *fs.Inode, path string) fs.FileHandle {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fh
	}
	return &file{FileHandle: fh, fsys: fsys, o: fsys.overlayFor(st.Ino, inode, path)}
}

// Getattr reports the size the overlay gives the file.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := n.LoopbackNode.Getattr(ctx, fh, out); errno != 0 {
		return errno
	}
	if o := n.fsys.lookupOverlay(out.Ino); o != nil {
		out.Size = uint64(o.size(int64(out.Size)))
	}
	return 0
}

// Setattr passes a truncation through at once (metadata is durable here) and trims the overlay.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if f, ok := fh.(*file); ok {
		fh = f.FileHandle
	}
	if errno := n.LoopbackNode.Setattr(ctx, fh, in, out); errno != 0 {
		return errno
	}
	if o := n.fsys.lookupOverlay(out.Ino); o != nil {
		if sz, ok := in.GetSize(); ok {
			o.truncate(int64(sz))
		}
		out.Size = uint64(o.size(int64(out.Size)))
	}
	return 0
}

// file is an open file whose writes wait in the overlay until an fsync.
type file struct {
	fs.FileHandle // the loopback file: reads and writes the backing file
	fsys          *server
	o             *overlay
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
)

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := f.o.read(dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if f.fsys.isOff() {
		return 0, syscall.EIO
	}
	if !f.fsys.spend(len(data)) {
		return 0, syscall.ENOSPC
	}
	if err := f.o.write(data, off); err != nil {
		return 0, fs.ToErrno(err)
	}
	return uint32(len(data)), 0
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := f.fsys.syncFault(ctx); errno != 0 {
		if errno == syscall.EIO {
			f.o.discard() // the writes are lost; what the kernel cached of them is not dropped
		}
		return errno
	}
	if err := f.o.apply(); err != nil {
		return fs.ToErrno(err)
	}
	return 0
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	g, ok := f.FileHandle.(fs.FileGetattrer)
	if !ok {
		return syscall.ENOTSUP
	}
	if errno := g.Getattr(ctx, out); errno != 0 {
		return errno
	}
	out.Size = uint64(f.o.size(int64(out.Size)))
	return 0
}

func (f *file) Flush(ctx context.Context) syscall.Errno {
	if fl, ok := f.FileHandle.(fs.FileFlusher); ok {
		return fl.Flush(ctx)
	}
	return 0
}

func (f *file) Release(ctx context.Context) syscall.Errno {
	if r, ok := f.FileHandle.(fs.FileReleaser); ok {
		return r.Release(ctx)
	}
	return 0
}

// Setlk, Getlk and friends are left to the kernel (no EnableLocks): flock works as on a local
// file system.

// blockSize is the overlay's unit: a write dirties whole blocks, read first from the backing file.
const blockSize = 4096

// overlay holds one file's writes since its last fsync.
type overlay struct {
	path string

	mu     sync.Mutex
	blocks map[int64][]byte // block number -> the block as written
	end    int64            // the size the writes give the file (0: none past the backing size)

	inodeMu sync.Mutex
	inode   *fs.Inode
}

// size is the file's size given the backing file's.
func (o *overlay) size(backing int64) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return max(backing, o.end)
}

func (o *overlay) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.blocks) * blockSize
}

// blockLocked returns block b as the file now holds it, from the overlay or the backing file.
func (o *overlay) blockLocked(bf *os.File, b int64) ([]byte, error) {
	if blk, ok := o.blocks[b]; ok {
		return blk, nil
	}
	blk := make([]byte, blockSize)
	if _, err := bf.ReadAt(blk, b*blockSize); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return blk, nil
}

func (o *overlay) write(data []byte, off int64) error {
	bf, err := os.Open(o.path)
	if err != nil {
		return err
	}
	defer bf.Close()
	o.mu.Lock()
	defer o.mu.Unlock()
	for done := 0; done < len(data); {
		pos := off + int64(done)
		b, in := pos/blockSize, int(pos%blockSize)
		blk, err := o.blockLocked(bf, b)
		if err != nil {
			return err
		}
		n := copy(blk[in:], data[done:])
		o.blocks[b] = blk
		done += n
	}
	o.end = max(o.end, off+int64(len(data)))
	return nil
}

func (o *overlay) read(dest []byte, off int64) (int, error) {
	bf, err := os.Open(o.path)
	if err != nil {
		return 0, err
	}
	defer bf.Close()
	st, err := bf.Stat()
	if err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	size := max(st.Size(), o.end)
	if off >= size {
		return 0, nil
	}
	n := int(min(int64(len(dest)), size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		b, in := pos/blockSize, int(pos%blockSize)
		blk, err := o.blockLocked(bf, b)
		if err != nil {
			return 0, err
		}
		done += copy(dest[done:n], blk[in:])
	}
	return n, nil
}

// apply writes the overlay to the backing file (an fsync that succeeded).
func (o *overlay) apply() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.blocks) == 0 {
		return nil
	}
	bf, err := os.OpenFile(o.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer bf.Close()
	st, err := bf.Stat()
	if err != nil {
		return err
	}
	size := max(st.Size(), o.end)
	for b, blk := range o.blocks {
		n := min(int64(blockSize), size-b*blockSize)
		if n <= 0 {
			continue
		}
		if _, err := bf.WriteAt(blk[:n], b*blockSize); err != nil {
			return err
		}
	}
	clear(o.blocks)
	o.end = 0
	return nil
}

// discard forgets the writes since the last fsync.
func (o *overlay) discard() {
	o.mu.Lock()
	clear(o.blocks)
	o.end = 0
	o.mu.Unlock()
}

// truncate applies a truncation to size to the overlay.
func (o *overlay) truncate(size int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for b := range o.blocks {
		if b*blockSize >= size {
			delete(o.blocks, b)
		}
	}
	if o.end > size {
		o.end = size
	}
	if blk, ok := o.blocks[size/blockSize]; ok {
		clear(blk[size%blockSize:])
	}
}

// invalidate drops the kernel's cached pages of the file.
func (o *overlay) invalidate() {
	o.inodeMu.Lock()
	inode := o.inode
	o.inodeMu.Unlock()
	if inode != nil {
		inode.NotifyContent(0, 0)
	}
}
