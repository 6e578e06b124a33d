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
