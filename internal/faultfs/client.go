package faultfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// daemonEnv tells a test binary run by Start to serve the file system at that mount point,
// passing through to daemonBackingEnv, instead of running tests.
const (
	daemonEnv        = "ROOMLOG_FAULTFS_DAEMON"
	daemonBackingEnv = "ROOMLOG_FAULTFS_BACKING"
)

// ServeIfDaemon serves the file system and exits when this process was started by Start; it
// returns otherwise. Call it first in the TestMain of every package that uses Start.
func ServeIfDaemon() {
	spec := os.Getenv(daemonEnv)
	if spec == "" {
		return
	}
	if err := serveDaemon(spec, os.Getenv(daemonBackingEnv), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// FS is a mounted fault-injecting file system, served by a daemon process Start runs.
type FS struct {
	dir string
	cmd *exec.Cmd

	mu  sync.Mutex // one command at a time
	in  io.WriteCloser
	out *bufio.Reader
}

// Stats counts what the file system has seen.
type Stats struct {
	Syncs, FailedSyncs, PowerCuts int
}

// Start mounts a file system at dir passing through to the directory backing, served by this
// executable run again (its TestMain must call ServeIfDaemon).
func Start(dir, backing string) (*FS, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), daemonEnv+"="+dir, daemonBackingEnv+"="+backing)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("faultfs: start the daemon: %w", err)
	}
	f := &FS{dir: dir, cmd: cmd, in: in, out: bufio.NewReader(out)}
	if _, err := f.readReply(); err != nil {
		in.Close()
		cmd.Wait()
		return nil, err
	}
	return f, nil
}

// Dir is the mount point.
func (f *FS) Dir() string { return f.dir }

func (f *FS) readReply() (string, error) {
	line, err := f.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("faultfs: the daemon stopped: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "err "); ok {
		return "", errors.New(msg)
	}
	return strings.TrimPrefix(strings.TrimPrefix(line, "ok"), " "), nil
}

func (f *FS) do(format string, args ...any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := fmt.Fprintf(f.in, format+"\n", args...); err != nil {
		panic(fmt.Sprintf("faultfs: the daemon is gone: %v", err))
	}
	reply, err := f.readReply()
	if err != nil {
		panic(err.Error())
	}
	return reply
}

// FailSyncs makes the next n fsyncs fail with EIO, and every one from now on when n is negative;
// 0 stops failing them.
func (f *FS) FailSyncs(n int) { f.do("fail %d", n) }

// SetSpace lets writes take n more bytes, then fails them with ENOSPC; negative n lifts the limit.
func (f *FS) SetSpace(n int64) { f.do("space %d", n) }

// PauseSyncs lets the next skip fsyncs through, then holds every fsync until Release.
// (A bbolt commit is two: its data pages, then its meta page; skip 1 holds the meta page's.)
func (f *FS) PauseSyncs(skip int) { f.do("pause %d", skip) }

// WaitHeld waits up to d for an fsync to be held, and reports whether one is.
func (f *FS) WaitHeld(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for f.do("held") != "true" {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// Release lets held fsyncs go on, and later ones pass.
func (f *FS) Release() { f.do("release") }

// PowerCut discards every write not yet fsynced, in every file, and drops what the kernel cached
// of them; until PowerOn every write and fsync fails with EIO, as on a machine that is off.
// Reads still pass.
func (f *FS) PowerCut() { f.do("cut") }

// PowerOn ends a power cut.
func (f *FS) PowerOn() { f.do("on") }

// Unsynced is how many bytes of writes wait for an fsync, in all files.
func (f *FS) Unsynced() int {
	n, _ := strconv.Atoi(f.do("unsynced"))
	return n
}

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	var s Stats
	fmt.Sscan(f.do("stats"), &s.Syncs, &s.FailedSyncs, &s.PowerCuts)
	return s
}

// Unmount unmounts the file system and stops its daemon. Unsynced writes are lost.
func (f *FS) Unmount() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintln(f.in, "unmount")
	_, err := f.readReply()
	f.in.Close()
	if werr := f.cmd.Wait(); err == nil {
		err = werr
	}
	return err
}
