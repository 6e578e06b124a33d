package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/faultfs"
	"github.com/roomlog/roomlog/internal/servertest"
	"go.uber.org/goleak"
)

// The tests run this test binary as the roomlog command: with ROOMLOG_RUN_MAIN set, TestMain runs
// main's code on the arguments instead of the tests.
func TestMain(m *testing.M) {
	faultfs.ServeIfDaemon()
	if os.Getenv("ROOMLOG_RUN_MAIN") == "1" {
		if n := os.Getenv("ROOMLOG_TEST_NOFILE"); n != "" { // a low open-file limit (ulimit -n)
			setNoFile(n)
		}
		os.Exit(run(os.Args[1:]))
	}
	code := m.Run()
	// The tests' own HTTP calls leave keep-alive connections in the default client's pool.
	http.DefaultClient.CloseIdleConnections()
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goroutine leak:", err)
		code = 1
	}
	os.Exit(code)
}

// serverProc is a roomlog serve process: this test binary run as the roomlog command.
type serverProc struct {
	*servertest.Proc
	cmd  *exec.Cmd
	addr string
	done <-chan struct{}
}

func startProc(t testing.TB, data string, extra ...string) *serverProc {
	t.Helper()
	return startServe(t, append([]string{"--data", data, "--jwt-secret", servertest.Secret, "--grace", "1h", "--publish-rate", "0"}, extra...)...)
}

// startServe starts roomlog serve on a free loopback port with these flags, and returns once it
// listens. ROOMLOG_PIN_PREFIX (taskset -c 0) pins it to a core.
func startServe(t testing.TB, flags ...string) *serverProc {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)
	cmd := exec.Command(os.Args[0], args...)
	if prefix := strings.Fields(os.Getenv("ROOMLOG_PIN_PREFIX")); len(prefix) > 0 {
		// taskset execs the server in place: the pid is the server's.
		cmd = exec.Command(prefix[0], append(append(prefix[1:], os.Args[0]), args...)...)
	}
	cmd.Env = append(os.Environ(), "ROOMLOG_RUN_MAIN=1")
	p := servertest.Start(t, cmd)
	return &serverProc{Proc: p, cmd: p.Cmd, addr: p.Addr, done: p.Done()}
}

func (p *serverProc) log() string { return p.Log() }

func crashToken(t testing.TB, sub string, admin bool) string {
	return servertest.Token(t, auth.TokenSpec{Subject: sub, Rooms: []string{"*"}, Admin: admin})
}

func wsConnect(t *testing.T, addr, tok, session string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.WriteJSON(map[string]any{"type": "hello", "token": tok, "session": session})
	var w map[string]any
	if err := ws.ReadJSON(&w); err != nil || w["type"] != "welcome" {
		t.Fatalf("hello: %v %v", w, err)
	}
	return ws
}

type sent struct{ room, key string }

// pumpKeyed publishes n events on ws, the key of each from next, with up to inFlight unanswered,
// and hands each answer to answered with its key; it stops when the connection breaks (the
// server died) or answered returns false.
func pumpKeyed(ws *websocket.Conn, n, inFlight int, next func(i int) sent, answered func(sent, map[string]any) bool) {
	refs := map[string]sent{}
	for i := range n {
		k := next(i)
		ref := fmt.Sprint(i)
		refs[ref] = k
		if ws.WriteJSON(map[string]any{"type": "publish", "ref": ref, "room": k.room, "key": k.key, "body": map[string]any{"i": i}}) != nil {
			return
		}
		if i < inFlight {
			continue
		}
		var f map[string]any
		if ws.ReadJSON(&f) != nil {
			return
		}
		ref, _ = f["ref"].(string)
		if !answered(refs[ref], f) {
			return
		}
	}
}

// TestKillDashNine kills a real roomlog serve process with SIGKILL while publishers are writing,
// restarts it on the same data file, and checks that every acked event is there exactly once,
// that resending every key appends nothing twice, and that the presence of the session that was
// joined when the server died is closed with a leave event.
func TestKillDashNine(t *testing.T) {
	servertest.Long(t, "crash test")
	data := filepath.Join(t.TempDir(), "crash.db")
	for round := range 3 {
		p := startProc(t, data)
		member := wsConnect(t, p.addr, crashToken(t, "watcher", false), fmt.Sprint("watch-", round))
		member.WriteJSON(map[string]any{"type": "join", "ref": "j", "room": "crash-0"})

		var mu sync.Mutex
		acked := map[sent]string{}
		var all []sent
		var wg sync.WaitGroup
		killAt := 300 + rand.IntN(1500)
		for w := range 4 {
			wg.Go(func() {
				ws := wsConnect(t, p.addr, crashToken(t, fmt.Sprint("pub", w), false), fmt.Sprint("s", w))
				defer ws.Close()
				pumpKeyed(ws, 5000, 16, func(i int) sent {
					k := sent{fmt.Sprintf("crash-%d", i%3), fmt.Sprintf("r%d-w%d-%d", round, w, i)}
					mu.Lock()
					all = append(all, k)
					mu.Unlock()
					return k
				}, func(k sent, f map[string]any) bool {
					if f["type"] != "ack" {
						t.Errorf("publish answered %v", f)
						return false
					}
					mu.Lock()
					acked[k] = f["id"].(string)
					n := len(acked)
					mu.Unlock()
					if n == killAt {
						p.cmd.Process.Signal(syscall.SIGKILL)
					}
					return true
				})
			})
		}
		wg.Wait()
		<-p.done
		member.Close()
		if len(acked) < killAt {
			t.Fatalf("round %d: the server died before the kill (after %d acks):\n%s", round, len(acked), p.log())
		}

		// Restart on the same file.
		p = startProc(t, data)
		if !strings.Contains(p.log(), "closed sessions left by an unclean stop") {
			t.Fatalf("round %d: no orphaned session was closed at start:\n%s", round, p.log())
		}
		admin := crashToken(t, "auditor", true)
		counts := map[sent]int{}
		ids := map[sent]string{}
		kinds := map[string]int{}
		resp := httpGet(t, "http://"+p.addr+"/v1/events", admin)
		sc := bufio.NewScanner(strings.NewReader(resp))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e map[string]any
			json.Unmarshal(sc.Bytes(), &e)
			k := sent{e["room"].(string), fmt.Sprint(e["key"])}
			counts[k]++
			ids[k] = e["id"].(string)
			if e["user"] == "watcher" && e["session"] == fmt.Sprint("watch-", round) {
				kinds[e["kind"].(string)]++
			}
		}
		for k, id := range acked {
			if counts[k] != 1 || ids[k] != id {
				t.Fatalf("round %d: acked %s (%s) found %d times (id %s) after kill -9", round, k.key, id, counts[k], ids[k])
			}
		}
		if kinds["join"] != 1 || kinds["leave"] != 1 {
			t.Fatalf("round %d: the watcher's presence: %v, want one join and one leave", round, kinds)
		}
		// Resend every key that was sent, acked or not: nothing doubles.
		pub := wsConnect(t, p.addr, crashToken(t, "pub0", false), "resend")
		for _, k := range all {
			if !strings.Contains(k.key, "-w0-") {
				continue // keys are per user: resend those of pub0 as pub0
			}
			pub.WriteJSON(map[string]any{"type": "publish", "ref": k.key, "room": k.room, "key": k.key, "body": map[string]any{"resent": true}})
			var f map[string]any
			if err := pub.ReadJSON(&f); err != nil || f["type"] != "ack" {
				t.Fatalf("resend: %v %v", f, err)
			}
			if id, ok := acked[k]; ok && (f["duplicate"] != true || f["id"] != id) {
				t.Fatalf("resend of acked key %s: %v", k.key, f)
			}
			if counts[k] == 1 && f["duplicate"] != true {
				t.Fatalf("resend of stored key %s appended again", k.key)
			}
		}
		pub.Close()
		// A clean stop: SIGTERM, exit 0.
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("SIGTERM did not stop the server")
		}
		if p.cmd.ProcessState.ExitCode() != 0 || !strings.Contains(p.log(), "stopped cleanly") {
			t.Fatalf("clean stop: exit %d\n%s", p.cmd.ProcessState.ExitCode(), p.log())
		}
		t.Logf("round %d: %d acked events survived kill -9", round, len(acked))
	}
	servertest.OpenData(t, data)
}

func httpGet(t *testing.T, url, tok string) string {
	t.Helper()
	status, b := servertest.Request(t, "GET", url, tok, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %s", url, status, b)
	}
	return b
}

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
