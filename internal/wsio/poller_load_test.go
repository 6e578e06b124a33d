//go:build linux

package wsio

import (
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkWakeUnderLoad measures how long a byte written to an idle connection waits before its
// reader runs while the scheduler is never idle (see pollerTick): with the poller at two ticks,
// and with a goroutine per connection blocked in Read, as Go servers usually read. Run it as
//
//	GOMAXPROCS=1 go test -run '^$' -bench WakeUnderLoad -benchtime 1x ./internal/wsio/
//
// Each run writes 2,000 bytes over 4 s at most; the metrics are the wait's p50, p99 and max.
func BenchmarkWakeUnderLoad(b *testing.B) {
	for _, c := range []struct {
		name string
		tick time.Duration // 0: a goroutine per connection in Read
	}{{"poller-tick-10ms", 10 * time.Millisecond}, {"poller-tick-1s", time.Second}, {"read-goroutines", 0}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				waits := wakeUnderLoad(b, c.tick)
				sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
				b.ReportMetric(ms(waits[len(waits)/2]), "p50-ms")
				b.ReportMetric(ms(waits[len(waits)*99/100]), "p99-ms")
				b.ReportMetric(ms(waits[len(waits)-1]), "max-ms")
				b.ReportMetric(float64(len(waits)), "reads")
			}
		})
	}
}

// loadedConn is one server-side connection: it records how long its last byte waited.
type loadedConn struct {
	p      *Poller
	raw    syscall.RawConn
	token  Token
	sentAt atomic.Int64
	record func(time.Duration)
}

func (c *loadedConn) took() {
	if t := c.sentAt.Swap(0); t != 0 {
		c.record(time.Duration(time.Now().UnixNano() - t))
	}
}

// Readable starts a reader, as transport does: it drains the socket and re-arms.
func (c *loadedConn) Readable() {
	go func() {
		var buf [64]byte
		for {
			if _, err := ReadNonblocking(c.raw, buf[:]); err != nil {
				break
			}
		}
		c.took()
		if err := c.p.Arm(c.raw, c.token); err == nil && ReadableNow(c.raw) {
			c.Readable()
		}
	}()
}

func wakeUnderLoad(b *testing.B, tick time.Duration) []time.Duration {
	const conns, pairs, writes, rate = 100, 20, 2000, 1000
	var mu sync.Mutex
	var waits []time.Duration
	record := func(d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var p *Poller
	if tick > 0 {
		if p, err = newPoller(tick); err != nil {
			b.Fatal(err)
		}
	}
	var readers sync.WaitGroup
	clients := make([]net.Conn, conns)
	servers := make([]*loadedConn, conns)
	for i := range conns {
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		sv, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		defer sv.Close()
		raw, _ := sv.(*net.TCPConn).SyscallConn()
		c := &loadedConn{p: p, raw: raw, record: record}
		clients[i], servers[i] = cl, c
		if p == nil {
			readers.Add(1)
			go func() {
				defer readers.Done()
				var buf [64]byte
				for {
					if _, err := sv.Read(buf[:]); err != nil {
						return
					}
					c.took()
				}
			}()
		} else if err := p.Register(raw, c, &c.token); err != nil {
			b.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var load sync.WaitGroup
	for range pairs {
		ping, pong := make(chan int), make(chan int)
		load.Add(2)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				case x := <-ping:
					for j := range 2000 {
						x += j
					}
					pong <- x
				}
			}
		}()
		go func() {
			defer load.Done()
			x := 0
			for {
				select {
				case <-stop:
					return
				case ping <- x:
				}
				x = <-pong
			}
		}()
	}
	deadline := time.Now().Add(4 * time.Second)
	for i := 0; i < writes && time.Now().Before(deadline); i++ {
		c := servers[i%conns]
		if c.sentAt.CompareAndSwap(0, time.Now().UnixNano()) {
			clients[i%conns].Write([]byte{1})
		}
		time.Sleep(time.Second / rate)
	}
	close(stop)
	load.Wait()
	for _, c := range servers { // what still waits is read now the load is gone
		for end := time.Now().Add(2 * time.Second); c.sentAt.Load() != 0 && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
	for _, cl := range clients {
		cl.Close()
	}
	if p != nil {
		for _, c := range servers {
			p.Deregister(c.raw, c.token)
		}
		time.Sleep(10 * time.Millisecond) // readers started for the closing connections finish
		p.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) == 0 {
		b.Fatal("no byte was read")
	}
	return waits
}
