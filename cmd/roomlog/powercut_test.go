package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/internal/faultfs"
	"github.com/roomlog/roomlog/internal/servertest"
)

// TestPowerCutCycles runs a real roomlog serve on the fault-injecting file system, with publishers
// and a subscriber, and cuts the power at a random moment: every write since the last fsync is
// lost. After each cut the server starts again on what is left, and every acked event is there
// once, with its id; every event the subscriber received is there; and the chain verifies.
func TestPowerCutCycles(t *testing.T) {
	servertest.Long(t, "power-cut test")
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
				pumpKeyed(ws, 20000, 8, func(i int) sent {
					return sent{fmt.Sprintf("pc-%d", i%2), fmt.Sprintf("c%d-w%d-%d", cycle, w, i)}
				}, func(k sent, fr map[string]any) bool {
					if fr["type"] == "ack" { // an error while the log fails: not acked, resent by nobody
						mu.Lock()
						acked[k] = fr["id"].(string)
						mu.Unlock()
					}
					return true
				})
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
	servertest.OpenData(t, data)
	if len(acked) == 0 {
		t.Fatal("nothing was acked")
	}
}

// TestServeFsyncFailure fails the server's fsyncs: publishes get error internal (WebSocket) and
// 503 (HTTP), never an ack; /readyz stops answering 200; no member receives the failed event; once
// fsyncs work again the server takes publishes by itself, and a keyed resend is appended once.
func TestServeFsyncFailure(t *testing.T) {
	f, p := serveOnFaultFS(t)
	sub := wsConnect(t, p.addr, crashToken(t, "reader", false), "reader")
	defer sub.Close()
	// A live join: it must be answered before the first publish, or that publish may precede it.
	if fr := roundTrip(t, sub, map[string]any{"type": "join", "ref": "j", "room": "doc"}); fr["type"] != "joined" {
		t.Fatalf("join: %v", fr)
	}
	pub := wsConnect(t, p.addr, crashToken(t, "writer", false), "writer")
	defer pub.Close()
	publish := func(key string) map[string]any { t.Helper(); return publishKeyed(t, pub, "doc", key) }
	if fr := publish("before"); fr["type"] != "ack" {
		t.Fatalf("publish: %v", fr)
	}
	status := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(`{"body":{"via":"http"}}`))
		req.Header.Set("Authorization", "Bearer "+crashToken(t, "writer", false))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	f.FailSyncs(-1)
	if fr := publish("failed"); fr["type"] != "error" || fr["code"] != "internal" {
		t.Fatalf("publish while fsyncs fail: %v, want error internal", fr)
	}
	if got := status("POST", "/v1/rooms/doc/events"); got != http.StatusServiceUnavailable {
		t.Fatalf("HTTP publish while fsyncs fail: %d, want 503", got)
	}
	if got := status("GET", "/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while fsyncs fail: %d, want 503", got)
	}
	f.FailSyncs(0)
	deadline := time.Now().Add(15 * time.Second)
	for status("GET", "/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not come back:\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, wantDup := range []any{nil, true} {
		fr := publish("failed")
		if fr["type"] != "ack" || fr["duplicate"] != wantDup {
			t.Fatalf("resend %d after recovery: %v", i, fr)
		}
	}
	// The member saw "before", then the resend, and never the failed attempt.
	var keys []string
	sub.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(keys) < 2 {
		var fr map[string]any
		if err := sub.ReadJSON(&fr); err != nil {
			t.Fatalf("member: %v (got %v)", err, keys)
		}
		if fr["type"] == "event" && fr["kind"] == "message" {
			keys = append(keys, fmt.Sprint(fr["key"]))
		}
	}
	events := httpGet(t, "http://"+p.addr+"/v1/events", crashToken(t, "auditor", true))
	if keys[0] != "before" || keys[1] != "failed" || strings.Count(events, `"key":"failed"`) != 1 {
		t.Fatalf("member got %v; the log holds:\n%s", keys, events)
	}
	if n := strings.Count(p.log(), "event log commit failed"); n == 0 {
		t.Fatalf("the failure was not logged:\n%s", p.log())
	}
}

// publishKeyed publishes {"k": key} to room under the idempotency key key and returns the answer.
func publishKeyed(t *testing.T, ws *websocket.Conn, room, key string) map[string]any {
	t.Helper()
	return roundTrip(t, ws, map[string]any{"type": "publish", "ref": key, "room": room, "key": key, "body": map[string]any{"k": key}})
}

// roundTrip sends frame and returns the answer carrying its ref, skipping other frames.
func roundTrip(t *testing.T, ws *websocket.Conn, frame map[string]any) map[string]any {
	t.Helper()
	ws.WriteJSON(frame)
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer ws.SetReadDeadline(time.Time{})
	for {
		var fr map[string]any
		if err := ws.ReadJSON(&fr); err != nil {
			t.Fatalf("waiting for the answer to %v: %v", frame, err)
		}
		if fr["ref"] == frame["ref"] {
			return fr
		}
	}
}

// TestServeFullDisk fills the disk under a real roomlog serve: publishes are refused, never acked;
// a new session still joins (its join event unlogged), replays the room and reads its history;
// once space is freed, publishing works again without a restart and the member gets it live.
func TestServeFullDisk(t *testing.T) {
	f, p := serveOnFaultFS(t)
	pub := wsConnect(t, p.addr, crashToken(t, "writer", false), "writer")
	defer pub.Close()
	publish := func(key string) map[string]any { t.Helper(); return publishKeyed(t, pub, "doc", key) }
	for i := range 3 {
		if fr := publish(fmt.Sprint("before-", i)); fr["type"] != "ack" {
			t.Fatalf("publish: %v", fr)
		}
	}

	f.SetSpace(0)
	for i := range 3 {
		if fr := publish(fmt.Sprint("full-", i)); fr["type"] != "error" || fr["code"] != "internal" {
			t.Fatalf("publish on a full disk: %v, want error internal", fr)
		}
	}
	late := wsConnect(t, p.addr, crashToken(t, "late", false), "late")
	defer late.Close()
	joined := roundTrip(t, late, map[string]any{"type": "join", "ref": "j", "room": "doc", "after": ""})
	if joined["type"] != "joined" || joined["unlogged"] != true {
		t.Fatalf("join on a full disk: %v, want joined with unlogged", joined)
	}
	var replayed []string
	late.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var fr map[string]any
		if err := late.ReadJSON(&fr); err != nil {
			t.Fatalf("replay on a full disk: %v (got %v)", err, replayed)
		}
		if fr["type"] == "synced" {
			break
		}
		if fr["type"] == "event" && fr["kind"] == "message" {
			replayed = append(replayed, fmt.Sprint(fr["key"]))
		}
	}
	if strings.Join(replayed, " ") != "before-0 before-1 before-2" {
		t.Fatalf("replay on a full disk: %v", replayed)
	}
	history := roundTrip(t, late, map[string]any{"type": "history", "ref": "h", "room": "doc", "limit": 10})
	if evs, _ := history["events"].([]any); history["type"] != "history" || len(evs) != 3 {
		t.Fatalf("history on a full disk: %v", history)
	}
	if body := httpGet(t, "http://"+p.addr+"/v1/rooms/doc/events", crashToken(t, "late", false)); strings.Count(body, `"kind":"message"`) != 3 {
		t.Fatalf("HTTP read on a full disk:\n%s", body)
	}

	f.SetSpace(-1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		fr := publish("after")
		if fr["type"] == "ack" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing did not resume after space was freed: %v\n%s", fr, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	late.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var fr map[string]any
		if err := late.ReadJSON(&fr); err != nil {
			t.Fatalf("the member did not get the publish after recovery: %v", err)
		}
		if fr["type"] == "event" && fr["key"] == "after" {
			break
		}
	}
	if fr := roundTrip(t, late, map[string]any{"type": "leave", "ref": "l", "room": "doc"}); fr["type"] != "left" {
		t.Fatalf("leave: %v", fr)
	}
	events := httpGet(t, "http://"+p.addr+"/v1/events", crashToken(t, "auditor", true))
	if strings.Contains(events, `"full-`) || strings.Count(events, `"key":"after"`) != 1 {
		t.Fatalf("the log after a full disk:\n%s", events)
	}
	if strings.Contains(events, `"session":"late"`) {
		t.Fatalf("the unlogged member's leave was written without its join:\n%s", events)
	}
}

// serveOnFaultFS starts roomlog serve on a data file on the fault-injecting file system (not in
// -short mode).
func serveOnFaultFS(t *testing.T) (*faultfs.FS, *serverProc) {
	servertest.Long(t, "fault test")
	f := faultfs.MountT(t)
	return f, startProc(t, filepath.Join(f.Dir(), "rooms.db"))
}
