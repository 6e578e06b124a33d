package transport_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/transport"
)

// Server benchmarks with clients in the same process, over loopback. They measure the server's
// code paths; `roomlog bench` measures server and load generator as separate processes.

var pad200 = strings.Repeat("x", 170) // with its JSON wrapping, a body of about 200 bytes

// BenchmarkPublishAcked: one connection, 64 publishes in flight, every ack after fsync.
//
//	go test -run '^$' -bench BenchmarkPublishAcked -benchtime 50000x ./transport/
func BenchmarkPublishAcked(b *testing.B) {
	ts := startServer(b, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit}})
	c := connect(b, ts, token(b, "pub", []string{"*"}), "s")
	frames := make([][]byte, 0, b.N)
	for i := range b.N {
		frames = append(frames, []byte(fmt.Sprintf(`{"type":"publish","ref":"%d","room":"bench","key":"k%d","body":{"t":%d,"pad":"%s"}}`, i, i, i, pad200)))
	}
	const window = 64
	b.ResetTimer()
	start := time.Now()
	sent, acked := 0, 0
	for acked < b.N {
		for sent < b.N && sent-acked < window {
			c.sendRaw(websocket.TextMessage, frames[sent])
			sent++
		}
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.HasPrefix(msg, []byte(`{"type":"ack"`)) {
			b.Fatalf("got %s", msg)
		}
		acked++
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "acks/s")
	b.ReportMetric(metricB(b, ts, "roomlog_commit_batch_size_sum")/metricB(b, ts, "roomlog_commit_batch_size_count"), "events/commit")
}

func metricB(b *testing.B, ts *testServer, name string) float64 {
	resp, err := http.Get(ts.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// BenchmarkFanout: 10 rooms x 100 members, 10 publishers (one per room); every event is
// delivered to its room's 100 members. It reports deliveries/s and the p99 latency from publish
// to delivery.
//
//	go test -run '^$' -bench BenchmarkFanout -benchtime 2000x ./transport/
func BenchmarkFanout(b *testing.B) {
	const rooms, members = 10, 100
	ts := startServer(b, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit}})
	tok := token(b, "u", []string{"*"})
	perRoom := max(b.N/rooms, 1)
	lat := make([][]time.Duration, rooms*members)
	var ready, done sync.WaitGroup
	for r := range rooms {
		for m := range members {
			ready.Add(1)
			done.Add(1)
			c := connect(b, ts, tok, fmt.Sprintf("m-%d-%d", r, m))
			go func() {
				defer done.Done()
				c.send(frame{"type": "join", "ref": "j", "room": fmt.Sprint("fan-", r)})
				got := 0
				mine := make([]time.Duration, 0, perRoom)
				for synced := false; got < perRoom; {
					c.ws.SetReadDeadline(time.Now().Add(60 * time.Second))
					_, msg, err := c.ws.ReadMessage()
					if err != nil {
						b.Error(err)
						return
					}
					if !synced {
						if bytes.HasPrefix(msg, []byte(`{"type":"synced"`)) {
							synced = true
							ready.Done()
						}
						continue
					}
					if i := bytes.Index(msg, []byte(`"t":`)); i >= 0 && bytes.Contains(msg, []byte(`"kind":"message"`)) {
						j := bytes.IndexByte(msg[i:], ',')
						ns, _ := strconv.ParseInt(string(msg[i+4:i+j]), 10, 64)
						mine = append(mine, time.Duration(time.Now().UnixNano()-ns))
						got++
					}
				}
				lat[r*members+m] = mine
			}()
		}
	}
	ready.Wait()
	b.ResetTimer()
	start := time.Now()
	var pubs sync.WaitGroup
	for r := range rooms {
		c := connect(b, ts, tok, fmt.Sprint("pub-", r))
		pubs.Go(func() {
			sent, acked := 0, 0
			for acked < perRoom {
				for sent < perRoom && sent-acked < 32 {
					c.sendRaw(websocket.TextMessage, fmt.Appendf(nil, `{"type":"publish","room":"fan-%d","body":{"t":%d,"pad":"%s"}}`, r, time.Now().UnixNano(), pad200))
					sent++
				}
				if _, _, err := c.ws.ReadMessage(); err != nil {
					b.Error(err)
					return
				}
				acked++
			}
		})
	}
	pubs.Wait()
	done.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Milliseconds()), "p99-ms")
	}
}

// BenchmarkResume: clients that missed 10,000 events join with their cursor and read up to
// synced; one client alone, and 100 at once.
//
//	go test -run '^$' -bench BenchmarkResume -benchtime 5x ./transport/
func BenchmarkResume(b *testing.B) {
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ts := startServer(b, serverOpts{cfg: transport.Config{PublishRate: transport.NoRateLimit}})
			tok := token(b, "u", []string{"*"})
			fill := connect(b, ts, tok, "filler")
			first := fill.publish("resume", map[string]any{"pad": pad200}, nil).str("id")
			for sent, acked := 0, 0; acked < 9999; {
				for sent < 9999 && sent-acked < 256 {
					fill.sendRaw(websocket.TextMessage, fmt.Appendf(nil, `{"type":"publish","room":"resume","body":{"i":%d,"pad":"%s"}}`, sent, pad200))
					sent++
				}
				fill.recv()
				acked++
			}
			conns := make([]*client, clients)
			b.ResetTimer()
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				for i := range conns {
					conns[i] = connect(b, ts, tok, fmt.Sprint("r", i))
				}
				b.StartTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						c.send(frame{"type": "join", "ref": "j", "room": "resume", "after": first})
						n := 0
						for {
							_, msg, err := c.ws.ReadMessage()
							if err != nil {
								b.Error(err)
								return
							}
							if bytes.HasPrefix(msg, []byte(`{"type":"event"`)) {
								n++
							} else if bytes.HasPrefix(msg, []byte(`{"type":"synced"`)) {
								break
							}
						}
						if n < 9999 {
							b.Errorf("resumed %d events, want 9999+", n)
						}
					})
				}
				wg.Wait()
				total += time.Since(start)
				b.StopTimer()
				for _, c := range conns {
					c.ws.Close()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/resume")
		})
	}
}
