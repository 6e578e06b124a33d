package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/internal/faultfs"
)

// TestPowerCutCycles runs a real roomlog serve on the fault-injecting file system, with publishers
// and a subscriber, and cuts the power at a random moment: every write since the last fsync is
// lost. After each cut the server starts again on what is left, and every acked event is there
// once, with its id; every event the subscriber received is there; and the chain verifies.
func TestPowerCutCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("power-cut test skipped in -short mode")
	}
	f := faultfs.MountT(t)
	data := filepath.Join(f.Dir(), "rooms.db")
	acked := map[sent]string{}    // every ack of every cycle
	received := map[string]sent{} // event id -> (room, key), as the subscriber got them
	var after string              // the subscriber's cursor across cycles
	p := startProc(t, data)
	const cycles = 5
	for cycle := range cycles {
		var mu sync.Mutex
		sub := wsConnect(t, p.addr, crashToken(t, "reader", false), "reader")
		sub.WriteJSON(map[string]any{"type": "join", "ref": "j", "room": "pc-0", "after": after})
		subDone := make(chan struct{})
		go func() {
			defer close(subDone)
			for {
				var fr map[string]any
				if sub.ReadJSON(&fr) != nil {
					return
				}
				if fr["type"] == "event" && fr["kind"] == "message" {
					mu.Lock()
					received[fr["id"].(string)] = sent{fr["room"].(string), fmt.Sprint(fr["key"])}
					after = fr["id"].(string)
					mu.Unlock()
				}
			}
		}()
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Go(func() {
				ws := wsConnect(t, p.addr, crashToken(t, fmt.Sprint("pub", w), false), fmt.Sprint("p", w))
				defer ws.Close()
				refs := map[string]sent{}
				for i := 0; i < 20000; i++ {
					k := sent{fmt.Sprintf("pc-%d", i%2), fmt.Sprintf("c%d-w%d-%d", cycle, w, i)}
					refs[fmt.Sprint(i)] = k
					if ws.WriteJSON(map[string]any{"type": "publish", "ref": fmt.Sprint(i), "room": k.room, "key": k.key, "body": map[string]any{"i": i}}) != nil {
						return
					}
					if i < 8 {
						continue // keep 8 in flight
					}
					var fr map[string]any
					if ws.ReadJSON(&fr) != nil {
						return // the power went
					}
					if fr["type"] != "ack" {
						continue // an error while the log fails: not acked, resent by nobody
					}
					mu.Lock()
					acked[refs[fr["ref"].(string)]] = fr["id"].(string)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		// The power goes: the process stops where it is, and the disk keeps only what was fsynced.
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		lost := f.Unsynced()
		f.PowerCut()
		wg.Wait()
		sub.Close()
		<-subDone
		f.PowerOn()

		p = startProc(t, data)
		stored := map[sent]string{}
		admin := crashToken(t, "auditor", true)
		sc := bufio.NewScanner(strings.NewReader(httpGet(t, "http://"+p.addr+"/v1/events", admin)))
		sc.Buffer(nil, 1<<20)
		storedIDs := map[string]sent{}
		for sc.Scan() {
			var e map[string]any
			json.Unmarshal(sc.Bytes(), &e)
			if e["kind"] != "message" {
				continue
			}
			k := sent{e["room"].(string), fmt.Sprint(e["key"])}
			if _, dup := stored[k]; dup {
				t.Fatalf("cycle %d: %s stored twice", cycle, k.key)
			}
			stored[k] = e["id"].(string)
			storedIDs[e["id"].(string)] = k
		}
		mu.Lock()
		for k, id := range acked {
			if stored[k] != id {
				t.Fatalf("cycle %d: acked %s (%s) lost by the power cut (stored: %q)", cycle, k.key, id, stored[k])
			}
		}
		for id, k := range received {
			if storedIDs[id] != k {
				t.Fatalf("cycle %d: the subscriber received %s (%s), which the log does not hold after the cut", cycle, k.key, id)
			}
		}
		nAcked, nReceived := len(acked), len(received)
		mu.Unlock()
		var rep map[string]any
		verify := httpGet(t, "http://"+p.addr+"/v1/verify", admin)
		if json.Unmarshal([]byte(verify), &rep) != nil || rep["broken"] != nil || rep["events"] == nil {
			t.Fatalf("cycle %d: verify after the cut: %s", cycle, verify)
		}
		t.Logf("cycle %d: %d acked and %d received events checked after the power cut (the cut lost %d unsynced bytes)", cycle, nAcked, nReceived, lost)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	l, err := eventlog.Open(data, eventlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rep, err := l.Verify(context.Background(), ""); err != nil || rep.Broken != nil {
		t.Fatalf("verify: %+v %v", rep.Broken, err)
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acked")
	}
}
