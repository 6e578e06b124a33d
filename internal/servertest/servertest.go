// Package servertest runs real roomlog serve processes for tests: the one way every package that
// needs a server process starts one. It reads the process's log to the end (a process whose
// stderr is not read blocks once the pipe is full), learns the address it listens on from it,
// shows its last lines when the test fails, and kills it when the test ends.
package servertest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// StartTimeout bounds the wait for a process to say where it listens.
const StartTimeout = 30 * time.Second

// FailureLines is how many of a process's last log lines a failed test shows.
const FailureLines = 200

// Proc is a running roomlog serve process.
type Proc struct {
	Cmd  *exec.Cmd
	Addr string // host:port it listens on, from its "roomlog serving" line

	done chan struct{}
	mu   sync.Mutex
	log  strings.Builder
}

var servingAddr = regexp.MustCompile(`addr=https?://(\S+)`)

// Start starts cmd (a roomlog serve command line, with --addr 127.0.0.1:0 or another free
// loopback port) and returns once the process says where it listens. It fails the test, with
// the process's log, when the process exits first or says nothing within StartTimeout. The
// process is killed when the test ends; ROOMLOG_TEST_SERVER_LOG names a file that keeps every
// process's log too (SIGQUIT dumps included).
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		var tee *os.File
		if path := os.Getenv("ROOMLOG_TEST_SERVER_LOG"); path != "" {
			tee, _ = os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			defer tee.Close()
		}
		r := bufio.NewReader(stderr) // not a Scanner: lines of any length
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				if tee != nil {
					tee.WriteString(line)
				}
				p.mu.Lock()
				p.log.WriteString(line)
				p.mu.Unlock()
				if m := servingAddr.FindStringSubmatch(line); m != nil {
					select {
					case addr <- m[1]:
					default:
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// os/exec wants every read of the pipe done before Wait.
	go func() { <-logged; cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("the last lines of %s:\n%s", strings.Join(cmd.Args, " "), p.lastLines(FailureLines))
		}
	})
	select {
	case p.Addr = <-addr:
	case <-p.done:
		t.Fatalf("%s exited at start:\n%s", cmd.Path, p.Log())
	case <-time.After(StartTimeout):
		t.Fatalf("%s did not start within %v:\n%s", cmd.Path, StartTimeout, p.Log())
	}
	return p
}

// Log is everything the process has logged so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *Proc) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("(%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Done is closed once the process has exited and its log is read to the end.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill kills the process (SIGKILL) and waits for it to exit.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// Long skips t in -short mode: a test that starts processes or clusters, kills them, or runs for
// seconds (what says so, in the skip message).
func Long(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s skipped in -short mode", what)
	}
}
