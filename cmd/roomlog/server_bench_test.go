package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/hooks"
)

// Benchmarks of a real roomlog serve process with the load generated here, as two processes:
//
//	ROOMLOG_BENCH_SERVER_CPU=0 taskset -c 1 go test -run '^$' -bench BenchmarkServer -benchtime 1x ./cmd/roomlog/
//
// pins the server to CPU 0 (taskset) and this process to CPU 1. Payloads are 200-byte JSON
// bodies; every ack is after fsync. ROOMLOG_BENCH_SERVER_PROFILE=FILE saves a CPU profile of the
// fan-out benchmarks' server while it publishes.

// startBenchProc starts roomlog serve on a fresh data file, pinned when ROOMLOG_BENCH_SERVER_CPU
// is set.
func startBenchProc(b *testing.B, data string, extra ...string) *serverProc {
	if cpu := os.Getenv("ROOMLOG_BENCH_SERVER_CPU"); cpu != "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			b.Fatalf("ROOMLOG_BENCH_SERVER_CPU needs taskset: %v", err)
		}
		os.Setenv("ROOMLOG_PIN_PREFIX", "taskset -c "+cpu)
		defer os.Unsetenv("ROOMLOG_PIN_PREFIX")
	}
	return startProc(b, data, append([]string{"--send-queue", "4096", "--max-conns-per-user", "0"}, extra...)...) // one user, a thousand connections
}

var body200 = `{"t":%d,"pad":"` + strings.Repeat("x", 170) + `"}`

// leanClient reads frames into one reused buffer: one core of it must keep up with a server's
// fan-out without being the bottleneck.
type leanClient struct {
	ws  *websocket.Conn
	buf []byte
}

func dialLean(b *testing.B, addr, tok, session string) *leanClient {
	d := websocket.Dialer{ReadBufferSize: 64 << 10, WriteBufferSize: 16 << 10}
	ws, _, err := d.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		b.Fatal(err)
	}
	c := &leanClient{ws: ws, buf: make([]byte, 0, 64<<10)}
	c.write(fmt.Sprintf(`{"type":"hello","token":%q,"session":%q}`, tok, session))
	if f := c.read(); !bytes.HasPrefix(f, []byte(`{"type":"welcome"`)) {
		b.Fatalf("hello: %s", f)
	}
	return c
}

func (c *leanClient) write(s string) error {
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// read returns the next frame; the slice is valid until the next read. nil on error.
func (c *leanClient) read() []byte {
	_, r, err := c.ws.NextReader()
	if err != nil {
		return nil
	}
	c.buf = c.buf[:0]
	for {
		if len(c.buf) == cap(c.buf) {
			c.buf = slices.Grow(c.buf, len(c.buf))
		}
		n, err := r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if err == io.EOF {
			return c.buf
		}
		if err != nil {
			return nil
		}
	}
}

// sentAt extracts the publish time from a body made with body200.
func sentAt(frame []byte) (int64, bool) {
	i := bytes.Index(frame, []byte(`"t":`))
	if i < 0 {
		return 0, false
	}
	j := bytes.IndexByte(frame[i:], ',')
	ns, err := strconv.ParseInt(string(frame[i+4:i+j]), 10, 64)
	return ns, err == nil
}

// BenchmarkServerPublish: one connection, 64 publishes in flight, acks after fsync.
func BenchmarkServerPublish(b *testing.B) {
	for b.Loop() {
		p := startBenchProc(b, b.TempDir()+"/pub.db")
		c := dialLean(b, p.addr, crashToken(b, "pub", false), "s")
		const n, window = 50000, 64
		start := time.Now()
		sent, acked := 0, 0
		for acked < n {
			for sent < n && sent-acked < window {
				c.write(fmt.Sprintf(`{"type":"publish","ref":"%d","room":"bench","key":"k%d","body":`+body200+`}`, sent, sent, time.Now().UnixNano()))
				sent++
			}
			if f := c.read(); !bytes.HasPrefix(f, []byte(`{"type":"ack"`)) {
				b.Fatalf("publish answered %s", f)
			}
			acked++
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "acks/s")
		p.cmd.Process.Kill()
		<-p.done
	}
}

// BenchmarkServerFanout: 10 rooms x 100 members, 10 publishers at a total rate stepped from 1,000
// to 8,000 publishes/s for 5 s each; deliveries/s and the p99 from publish to delivery.
func BenchmarkServerFanout(b *testing.B) {
	const rooms, members, seconds = 10, 100, 5
	for _, rate := range []int{1000, 2000, 4000, 6000, 8000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for b.Loop() {
				runFanout(b, rooms, members, rate, seconds)
			}
		})
	}
}

// fanoutExtra is what a variant of the fan-out benchmark adds: flags for the server, and what
// to do once the members have every event, before the server stops.
type fanoutExtra struct {
	serverFlags []string
	beforeStop  func()
}

func runFanout(b *testing.B, rooms, members, rate, seconds int, extra ...fanoutExtra) {
	var x fanoutExtra
	if len(extra) > 0 {
		x = extra[0]
	}
	profile := os.Getenv("ROOMLOG_BENCH_SERVER_PROFILE")
	if profile != "" {
		x.serverFlags = append(x.serverFlags, "--debug-addr", benchDebugAddr)
	}
	p := startBenchProc(b, b.TempDir()+"/fan.db", x.serverFlags...)
	defer func() { p.cmd.Process.Kill(); <-p.done }()
	if x.beforeStop != nil {
		defer x.beforeStop()
	}
	tok := crashToken(b, "u", false)
	perRoom := rate * seconds / rooms
	var delivered atomic.Int64
	lat := make([][]int64, rooms*members) // microseconds
	var ready, done sync.WaitGroup
	for r := range rooms {
		for m := range members {
			c := dialLean(b, p.addr, tok, fmt.Sprintf("m%d-%d", r, m))
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				c.write(fmt.Sprintf(`{"type":"join","ref":"j","room":"fan-%d"}`, r))
				for {
					f := c.read()
					if f == nil {
						b.Error("member lost its connection")
						ready.Done()
						return
					}
					if bytes.HasPrefix(f, []byte(`{"type":"synced"`)) {
						break
					}
				}
				ready.Done()
				mine := make([]int64, 0, perRoom)
				for got := 0; got < perRoom; {
					c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
					f := c.read()
					if f == nil {
						b.Errorf("member got %d of %d events", got, perRoom)
						return
					}
					if !bytes.Contains(f, []byte(`"kind":"message"`)) {
						continue
					}
					if ns, ok := sentAt(f); ok {
						mine = append(mine, (time.Now().UnixNano()-ns)/1000)
					}
					got++
					delivered.Add(1)
				}
				lat[r*members+m] = mine
				c.ws.Close()
			}()
		}
	}
	ready.Wait()
	start := time.Now()
	cpuBefore, writesBefore := cpuTime(b, p.cmd.Process.Pid), writeCalls(b, p.cmd.Process.Pid)
	var pubs sync.WaitGroup
	if profile != "" {
		pubs.Go(func() { saveProfile(b, profile, seconds-1) })
	}
	for r := range rooms {
		c := dialLean(b, p.addr, tok, fmt.Sprint("pub-", r))
		pubs.Add(2)
		go func() { // acks
			defer pubs.Done()
			for range perRoom {
				if c.read() == nil {
					b.Error("publisher lost its connection")
					return
				}
			}
		}()
		go func() { // paced sends
			defer pubs.Done()
			interval := time.Second / time.Duration(rate/rooms)
			next := time.Now()
			for i := range perRoom {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				c.write(fmt.Sprintf(`{"type":"publish","ref":"%d","room":"fan-%d","body":`+body200+`}`, i, r, time.Now().UnixNano()))
			}
		}()
	}
	pubs.Wait()
	done.Wait()
	elapsed := time.Since(start)
	cpu, writes := cpuTime(b, p.cmd.Process.Pid)-cpuBefore, writeCalls(b, p.cmd.Process.Pid)-writesBefore
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "deliveries/s")
	if delivered.Load() > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(delivered.Load()), "server-µs/delivery")
		b.ReportMetric(float64(delivered.Load())/float64(max(writes, 1)), "deliveries/write")
	}
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2])/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100])/1000, "p99-ms")
	}
	if want := int64(rooms * members * perRoom); delivered.Load() != want {
		b.Errorf("delivered %d of %d", delivered.Load(), want)
	}
}

// benchDebugAddr is where a benchmark's server serves its profiles when
// ROOMLOG_BENCH_SERVER_PROFILE names a file for one.
const benchDebugAddr = "127.0.0.1:17199"

// saveProfile writes a CPU profile of the benchmark's server, taken over the next seconds, to
// path: where the server's time goes under the benchmark's load (go tool pprof path).
func saveProfile(b *testing.B, path string, seconds int) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", benchDebugAddr, max(seconds, 1)))
	if err != nil {
		b.Errorf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		b.Errorf("profile: %v", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		b.Errorf("profile: %v", err)
	}
}

// BenchmarkServerFanoutWebhook: the fan-out benchmark's load with a webhook delivering every
// event to a receiver in this process (signatures checked): the webhook's lag, from publish to
// the receiver, beside the fan-out's own figures. That every event arrives is checked. The
// receiver shares this process's core with the thousand members: past 4,000 publishes/s they
// leave it too little of the core for the figure to be the webhook's.
func BenchmarkServerFanoutWebhook(b *testing.B) {
	const rooms, members, seconds = 10, 100, 5
	for _, rate := range []int{1000, 2000, 4000, 8000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for b.Loop() {
				var mu sync.Mutex
				var lags []int64 // microseconds
				receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					if hooks.Verify([]byte(hookSecret), r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute) != nil {
						http.Error(w, "bad signature", http.StatusUnauthorized)
						return
					}
					var batch struct {
						Events []struct {
							Kind string
							Body struct{ T int64 }
						}
					}
					json.Unmarshal(body, &batch)
					now := time.Now().UnixNano()
					mu.Lock()
					for _, e := range batch.Events {
						if e.Kind == "message" && e.Body.T > 0 {
							lags = append(lags, (now-e.Body.T)/1000)
						}
					}
					mu.Unlock()
				}))
				want := rate * seconds
				waitDelivered := func() {
					for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
						mu.Lock()
						n := len(lags)
						mu.Unlock()
						if n >= want || time.Now().After(deadline) {
							return
						}
					}
				}
				flags := append([]string{"--hook-secret", hookSecret, "--webhook", "app=" + receiver.URL}, strings.Fields(os.Getenv("ROOMLOG_BENCH_SERVER_FLAGS"))...)
				runFanout(b, rooms, members, rate, seconds, fanoutExtra{serverFlags: flags, beforeStop: waitDelivered})
				receiver.Close()
				slices.Sort(lags)
				if len(lags) < want {
					b.Fatalf("the webhook delivered %d of %d events", len(lags), want)
				}
				b.ReportMetric(float64(lags[len(lags)/2])/1000, "webhook-p50-ms")
				b.ReportMetric(float64(lags[len(lags)*99/100])/1000, "webhook-p99-ms")
				b.ReportMetric(float64(lags[len(lags)-1])/1000, "webhook-max-ms")
			}
		})
	}
}

// BenchmarkServerResume: clients that missed 10,000 events resume, one alone and 100 at once,
// after the server was killed with SIGKILL and restarted on its file.
func BenchmarkServerResume(b *testing.B) {
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			data := b.TempDir() + "/resume.db"
			p := startBenchProc(b, data)
			tok := crashToken(b, "u", false)
			c := dialLean(b, p.addr, tok, "filler")
			var first string
			for sent, acked := 0, 0; acked < 10000; {
				for sent < 10000 && sent-acked < 256 {
					c.write(fmt.Sprintf(`{"type":"publish","ref":"%d","room":"resume","body":`+body200+`}`, sent, sent))
					sent++
				}
				f := c.read()
				if first == "" {
					i := bytes.Index(f, []byte(`"id":"`))
					first = string(f[i+6 : i+6+26])
				}
				acked++
			}
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			p = startBenchProc(b, data)
			defer func() { p.cmd.Process.Kill(); <-p.done }()
			var total time.Duration
			for b.Loop() {
				conns := make([]*leanClient, clients)
				for i := range conns {
					conns[i] = dialLean(b, p.addr, tok, fmt.Sprint("r", i))
				}
				start := time.Now()
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						c.write(`{"type":"join","ref":"j","room":"resume","after":"` + first + `"}`)
						n := 0
						for {
							f := c.read()
							if f == nil {
								b.Error("resume connection lost")
								return
							}
							if bytes.HasPrefix(f, []byte(`{"type":"event"`)) {
								n++
							} else if bytes.HasPrefix(f, []byte(`{"type":"synced"`)) {
								break
							}
						}
						if n < 9999 {
							b.Errorf("resumed %d events, want 9999", n)
						}
					})
				}
				wg.Wait()
				total += time.Since(start)
				for _, c := range conns {
					c.ws.Close()
				}
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/resume")
		})
	}
}

// BenchmarkServerJoinHook: a connection joins and leaves a room over and over, on a server
// without a hook, with a hook on loopback that answers at once (every join asked), and with one
// whose answer carries a ttl (joins after the first reuse it); p50 and p99 of join to joined.
//
//	go test -run '^$' -bench BenchmarkServerJoinHook -benchtime 2000x ./cmd/roomlog/
func BenchmarkServerJoinHook(b *testing.B) {
	for _, c := range []struct{ name, answer string }{
		{"no-hook", ""}, {"hook", `{"allow":true,"write":true}`}, {"hook-ttl", `{"allow":true,"write":true,"ttl_ms":600000}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			var flags []string
			if c.answer != "" {
				hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					io.WriteString(w, c.answer)
				}))
				defer hook.Close()
				flags = []string{"--hook-url", hook.URL, "--hook-secret", hookSecret, "--hook-rooms", "doc:*", "--hook-user-rate", "1000000"}
			}
			p := startProc(b, b.TempDir()+"/join.db", flags...)
			defer func() { p.cmd.Process.Kill(); <-p.done }()
			cl := dialLean(b, p.addr, crashToken(b, "u", false), "joiner")
			lat := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				cl.write(fmt.Sprintf(`{"type":"join","ref":"j%d","room":"doc:1"}`, i))
				for f := cl.read(); !bytes.HasPrefix(f, []byte(`{"type":"joined"`)); f = cl.read() {
					if f == nil || bytes.HasPrefix(f, []byte(`{"type":"error"`)) {
						b.Fatalf("join: %s", f)
					}
				}
				lat = append(lat, time.Since(start))
				cl.write(fmt.Sprintf(`{"type":"leave","ref":"l%d","room":"doc:1"}`, i))
				for f := cl.read(); !bytes.HasPrefix(f, []byte(`{"type":"left"`)); f = cl.read() {
					if f == nil {
						b.Fatal("connection lost")
					}
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
