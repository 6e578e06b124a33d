package faultfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomlog/roomlog/internal/faultfs"
)

func TestMain(m *testing.M) {
	faultfs.ServeIfDaemon()
	goleak.VerifyTestMain(m)
}

// The file system's own promises, on which every fault test rests.
func TestOverlaySemantics(t *testing.T) {
	f := faultfs.MountT(t)
	path := filepath.Join(f.Dir(), "data")
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	synced := bytes.Repeat([]byte("s"), 10000)
	if _, err := fd.WriteAt(synced, 0); err != nil {
		t.Fatal(err)
	}
	if err := fd.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("unsynced"), 9000); err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("past the end"), 20000); err != nil {
		t.Fatal(err)
	}

	// Reads, memory-mapped reads and the size see unsynced writes.
	if st, _ := fd.Stat(); st.Size() != 20012 {
		t.Fatalf("size %d with unsynced writes, want 20012", st.Size())
	}
	m, err := syscall.Mmap(int(fd.Fd()), 0, 20012, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if string(m[9000:9008]) != "unsynced" || string(m[20000:]) != "past the end" {
		t.Fatalf("the memory map does not see the unsynced writes")
	}
	syscall.Munmap(m)

	// A power cut loses them, and only them.
	f.PowerCut()
	if _, err := fd.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("a write while the power is off: %v, want EIO", err)
	}
	f.PowerOn()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, synced) {
		t.Fatalf("after a power cut: %d bytes, want the %d synced ones", len(got), len(synced))
	}

	// A failed fsync reports EIO and loses the writes; the next one passes.
	f.FailSyncs(1)
	fd.WriteAt([]byte("lost"), 0)
	if err := fd.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync: %v, want EIO", err)
	}
	if err := fd.Sync(); err != nil {
		t.Fatalf("the fsync after: %v", err)
	}
	f.PowerCut()
	f.PowerOn()
	if got, _ := os.ReadFile(path); !bytes.Equal(got, synced) {
		t.Fatalf("a write whose fsync failed survived")
	}

	// A full disk refuses writes with ENOSPC until space is freed.
	f.SetSpace(100)
	if _, err := fd.WriteAt(make([]byte, 101), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the budget: %v, want ENOSPC", err)
	}
	f.SetSpace(-1)
	if _, err := fd.WriteAt([]byte("ok"), 0); err != nil {
		t.Fatal(err)
	}

	// A paused fsync returns only once released; skipped ones pass.
	f.PauseSyncs(1)
	if err := fd.Sync(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fd.Sync() }()
	if !f.WaitHeld(5 * time.Second) {
		t.Fatal("the fsync was not held")
	}
	select {
	case err := <-done:
		t.Fatalf("a paused fsync returned: %v", err)
	default:
	}
	f.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.FailedSyncs != 1 || st.PowerCuts != 2 {
		t.Fatalf("stats %+v", st)
	}
}
