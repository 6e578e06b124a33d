package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkIdleConnections measures the resident memory a real roomlog serve process spends per
// idle connection (authenticated, joined to a room, silent), with the clients in this process.
//
//	go test -run '^$' -bench BenchmarkIdleConnections -benchtime 1x ./cmd/roomlog/
//
// ROOMLOG_IDLE_CONNS sets the number of connections (default 10,000). ROOMLOG_IDLE_SETTLE sets
// how long the idle server is left before its memory is read (default 3s): an idle Go process
// collects the garbage of the handshakes only at its periodic GC (2 minutes) and returns memory to
// the OS gradually after it, so a steady-state figure needs about 150s.
func BenchmarkIdleConnections(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("ROOMLOG_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	for b.Loop() {
		p := startProc(b, b.TempDir()+"/idle.db", "--max-conns-per-user", "0") // one user, every connection
		time.Sleep(500 * time.Millisecond)
		before := rssKiB(b, p.cmd.Process.Pid)
		tok := crashToken(b, "idle", false)
		conns := make([]*websocket.Conn, 0, n)
		for i := range n {
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/v1/ws", nil)
			if err != nil {
				b.Fatalf("connection %d: %v", i, err)
			}
			ws.WriteJSON(map[string]any{"type": "hello", "token": tok, "session": fmt.Sprint("s", i)})
			var w map[string]any
			if err := ws.ReadJSON(&w); err != nil || w["type"] != "welcome" {
				b.Fatalf("hello %d: %v %v", i, w, err)
			}
			ws.WriteJSON(map[string]any{"type": "join", "ref": "j", "room": fmt.Sprint("room-", i%100)})
			conns = append(conns, ws)
		}
		settle := 3 * time.Second
		if d, err := time.ParseDuration(os.Getenv("ROOMLOG_IDLE_SETTLE")); err == nil {
			settle = d
		}
		time.Sleep(settle)
		after := rssKiB(b, p.cmd.Process.Pid)
		b.ReportMetric(float64(after-before)/float64(n), "KiB/conn")
		for _, ws := range conns {
			ws.Close()
		}
		p.cmd.Process.Kill()
		<-p.done
	}
}

func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.Fields(v)[0])
			return kib
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// cpuTime is the CPU time (user and system, every thread) process pid has used, from
// /proc/PID/stat in clock ticks (10 ms on Linux).
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces; the fields after its ')' start with field 3.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// writeCalls is how many write system calls process pid has made (syscw in /proc/PID/io: write,
// writev and the like, on sockets and files alike).
func writeCalls(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatalf("/proc/%d/io: %q", pid, line)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/io has no syscw", pid)
	return 0
}
