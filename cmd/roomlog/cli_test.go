package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/servertest"
)

// roomlog runs the command (this test binary as main) and returns its exit code and output.
func roomlog(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "ROOMLOG_RUN_MAIN=1"), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

func TestCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	notALog := filepath.Join(dir, "text.db")
	os.WriteFile(notALog, []byte(strings.Repeat("hello\n", 2000)), 0o600)
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", nil, []string{"serve", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"bad duration", nil, []string{"serve", "--grace", "soon"}, 2, `invalid value "soon" for flag -grace`},
		{"bad env duration", []string{"ROOMLOG_GRACE=soon"}, []string{"serve"}, 2, `ROOMLOG_GRACE="soon" is not a duration`},
		{"stray argument", nil, []string{"serve", "extra"}, 2, `unexpected argument "extra"`},
		{"small max frame", nil, []string{"serve", "--max-frame", "10", "--data", filepath.Join(dir, "a.db")}, 2, "--max-frame must be at least 1024"},
		{"not a log", nil, []string{"serve", "--data", notALog, "--addr", "127.0.0.1:0"}, 1, "not a roomlog data file"},
		{"bad origin", nil, []string{"serve", "--allowed-origins", "nope", "--data", filepath.Join(dir, "b.db"), "--addr", "127.0.0.1:0"}, 2, `allowed origin "nope"`},
		{"missing key file", nil, []string{"serve", "--jwt-public-key", filepath.Join(dir, "none.pem"), "--data", filepath.Join(dir, "c.db")}, 2, "no such file"},
		{"token without secret", nil, []string{"token", "--sub", "a"}, 2, "--secret is required"},
		{"token without sub", nil, []string{"token", "--secret", servertest.Secret}, 2, "--sub is required"},
		{"token with a bad room pattern", nil, []string{"token", "--secret", servertest.Secret, "--sub", "a", "--rooms", "doc:*,bad room!"}, 2, `--rooms: bad room name: "bad room!" has ' ' at byte 3`},
		{"token with a wildcard inside", nil, []string{"token", "--secret", servertest.Secret, "--sub", "a", "--read-rooms", "d*c"}, 2, `--read-rooms: bad room name: "d*c" has '*' at byte 1`},
		{"port in use", nil, []string{"serve", "--addr", busy, "--data", filepath.Join(dir, "busy.db")}, 1, "address already in use"},
		{"bad address", nil, []string{"serve", "--addr", "nonsense", "--data", filepath.Join(dir, "addr.db")}, 2, "missing port in address"},
		{"nats not a URL", nil, []string{"serve", "--nats", "n1:4222", "--data", filepath.Join(dir, "n1.db")}, 2, `--nats: "n1:4222" is not a URL (nats://host:4222)`},
		{"tls cert without key", nil, []string{"serve", "--tls-cert", filepath.Join(dir, "cert.pem"), "--data", filepath.Join(dir, "t1.db")}, 2, "--tls-cert and --tls-key go together"},
		{"tls files missing", nil, []string{"serve", "--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem"), "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "t2.db")}, 1, "--tls-cert/--tls-key: stat "},
		{"negative bound", nil, []string{"serve", "--max-conns", "-1", "--data", filepath.Join(dir, "t3.db")}, 2, "must be 0 (no bound) or positive"},
		{"negative write interval", nil, []string{"serve", "--write-interval", "-1ms", "--data", filepath.Join(dir, "w1.db")}, 2, "--write-interval may be 0"},
		{"long write interval", nil, []string{"serve", "--write-interval", "2s", "--data", filepath.Join(dir, "w2.db")}, 2, "--write-interval must be at most 1s"},
		{"nats replicas", nil, []string{"serve", "--nats-replicas", "9", "--data", filepath.Join(dir, "n2.db")}, 2, "--nats-replicas must be 0 (automatic) or 1-5"},
		{"nats unreachable", nil, []string{"serve", "--nats", "nats://" + busy, "--jwt-secret", servertest.Secret, "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "n3.db")}, 1, "--nats nats://" + busy + ": "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := roomlog(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if tc.name != "no command" && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("more than one line for bad input:\n%s", stderr)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Fatalf("a stack trace for bad input:\n%s", stderr)
			}
		})
	}
	if b, _ := os.ReadFile(notALog); string(b) != strings.Repeat("hello\n", 2000) {
		t.Fatalf("serve changed a file that is not a log")
	}
	// A start that failed left no data file (nor a development secret) behind.
	for _, name := range []string{"a.db", "b.db", "c.db", "busy.db", "addr.db", "n1.db", "n2.db", "n3.db", "t1.db", "t2.db", "t3.db"} {
		for _, path := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".dev-secret")} {
			if _, err := os.Stat(path); err == nil {
				t.Errorf("a failed start left %s behind", filepath.Base(path))
			}
		}
	}
}

func TestCLIHelpListsEnvironment(t *testing.T) {
	code, stdout, _ := roomlog(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{"--addr", "env ROOMLOG_ADDR, default 127.0.0.1:7070", "--jwt-secret", "env ROOMLOG_JWT_SECRET",
		"--allowed-origins", "--max-frame", "--grace", "--publish-rate", "--send-queue", "--jwks", "--jwt-issuer", "--jwt-audience",
		"--dev", "--max-token-ttl", "--jwt-any-audience", "--max-rooms-per-conn", "--max-conns-per-user", "--max-members-listed",
		"env ROOMLOG_MAX_CONNS, default 50000", "--max-conns-per-ip", "--http-read-timeout", "--http-write-timeout", "--http-idle-timeout",
		"--tls-cert", "--tls-key"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	if code, stdout, _ := roomlog(t, nil, "version"); code != 0 || !strings.HasPrefix(stdout, "roomlog ") {
		t.Errorf("version: %d %q", code, stdout)
	}
}

func TestTokenCommand(t *testing.T) {
	code, stdout, stderr := roomlog(t, []string{"ROOMLOG_JWT_SECRET=" + servertest.Secret}, "token", "--sub", "alice", "--rooms", "doc:*, chat:1", "--read-rooms", "news:*", "--admin", "--ttl", "2h")
	if code != 0 {
		t.Fatalf("token: %d %s", code, stderr)
	}
	v, _ := auth.NewVerifier(auth.Config{Secret: []byte(servertest.Secret)})
	c, err := v.Verify(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Grants()
	if c.Subject != "alice" || !g.CanWrite("doc:7") || !g.CanWrite("chat:1") || g.CanWrite("news:1") || !g.CanRead("news:1") || !g.Admin {
		t.Fatalf("token claims %+v", c)
	}
	if d := c.Expiry().Sub(c.IssuedAt.Time); d.Hours() != 2 {
		t.Fatalf("ttl %s", d)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// TestBenchCommand runs each scenario briefly against an in-process server.
func TestBenchCommand(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "publish", "--duration", "1s", "--in-flight", "8", "--json"},
		{"bench", "fanout", "--duration", "1s", "--rooms", "2", "--subscribers", "2", "--publishers", "2", "--rate", "100", "--json"},
		{"bench", "resume", "--clients", "3", "--missed", "300", "--json"},
		{"bench", "connections", "--conns", "30", "--big-room", "10", "--sources", "127.0.0.1-127.0.0.3", "--publishes", "2", "--interval", "50ms", "--churn", "3", "--json"},
	} {
		code, stdout, stderr := roomlog(t, nil, args...)
		var res map[string]any
		if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res["lost"] != float64(0) || res["duplicated"] != float64(0) {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, stdout, stderr)
		}
	}
	// The soak scenario samples the server's /metrics each window and compares the stretch after
	// the warmup: figures at its start and end, and a line per sample.
	code, stdout, stderr := roomlog(t, nil, "bench", "soak", "--duration", "3s", "--every", "500ms", "--warmup", "500ms",
		"--rooms", "2", "--subscribers", "2", "--publishers", "2", "--rate", "100", "--json")
	var soak struct {
		Lost, Duplicated int
		Figures          map[string]float64
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &soak) != nil || soak.Figures["node0_rss_mib_end"] <= 0 || soak.Figures["node0_heap_mib_end"] <= 0 || soak.Figures["node0_goroutines_start"] <= 0 ||
		soak.Figures["node0_open_files_end"] <= 0 || strings.Count(stderr, " rss ") < 4 {
		t.Fatalf("bench soak: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, bad := range [][]string{{"bench"}, {"bench", "nope"}, {"bench", "fanout", "--rate", "0"}, {"bench", "soak", "--every", "0"}, {"bench", "publish", "--server", "http://127.0.0.1:1"},
		{"bench", "publish", "--server", "http://10.0.0.1:7070", "--secret", "s"}, {"bench", "connections", "--sources", "10.0.0.1"},
		{"bench", "connections", "--settle", "11m"}, {"bench", "connections", "--conns", "0"}} {
		if code, _, _ := roomlog(t, nil, bad...); code == 0 {
			t.Fatalf("%v succeeded", bad)
		}
	}
}

// TestDebugListener: --debug-addr serves Go's profiles on a separate listener.
func TestDebugListener(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "d.db"), "--debug-addr", "127.0.0.1:0")
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil; time.Sleep(20 * time.Millisecond) {
		if m = regexp.MustCompile(`debug=(http://\S+)`).FindStringSubmatch(p.log()); m == nil && time.Now().After(deadline) {
			t.Fatalf("no profiling listener in the log:\n%s", p.log())
		}
	}
	resp, err := http.Get(m[1] + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("profile: %d %.200s", resp.StatusCode, body)
	}
	// Not on the API listener.
	if resp, err := http.Get("http://" + p.addr + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("profiles are served on the API listener")
		}
	}
}

// TestServeNoPoller: --no-poller serves as usual, each connection read on its own goroutine.
func TestServeNoPoller(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "np.db"), "--no-poller")
	ws := wsConnect(t, p.addr, crashToken(t, "np", false), "s")
	defer ws.Close()
	ws.WriteJSON(map[string]any{"type": "publish", "ref": "1", "room": "np", "body": "hi"})
	var f map[string]any
	if err := ws.ReadJSON(&f); err != nil || f["type"] != "ack" {
		t.Fatalf("publish answered %v, %v", f, err)
	}
}

// TestDevSecretSurvivesRestart: development mode keeps its secret beside the data file (0600),
// so a token minted from it still works after a restart.
func TestDevSecretSurvivesRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dev.db")
	p := startServe(t, "--data", data)
	path := data + ".dev-secret"
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("development secret file: %v, mode %v", err, st.Mode())
	}
	if !strings.Contains(p.log(), "DEVELOPMENT MODE") || !strings.Contains(p.log(), "secret_file="+path) {
		t.Fatalf("the log does not say where the development secret is:\n%s", p.log())
	}
	secret, _ := os.ReadFile(path)
	tok, err := auth.NewToken([]byte(strings.TrimSpace(string(secret))), auth.TokenSpec{Subject: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	wsConnect(t, p.addr, tok, "s").Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	again := startServe(t, "--data", data)
	wsConnect(t, again.addr, tok, "s").Close() // fails the test unless welcomed
	if after, _ := os.ReadFile(path); string(after) != string(secret) {
		t.Fatalf("the restart changed the development secret")
	}
}

// setNoFile sets the process's open-file limit, soft and hard (the ROOMLOG_TEST_NOFILE hook).
func setNoFile(n string) {
	v, err := strconv.ParseUint(n, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: v, Max: v})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ROOMLOG_TEST_NOFILE:", err)
		os.Exit(2)
	}
}

// closedWithin reports whether the server closes c (a read ends in EOF or a reset) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	ne, ok := err.(net.Error)
	return !(ok && ne.Timeout())
}

// TestSocketsAreNotHeld: a real server cuts the sockets of clients that send or read nothing: a
// keep-alive connection idle past --http-idle-timeout, a request whose declared body never
// comes (past --http-read-timeout), a connection that never sends a request. A WebSocket
// connection, once upgraded, is free of those timeouts.
func TestSocketsAreNotHeld(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "sockets.db"), "--http-read-timeout", "1s", "--http-idle-timeout", "1s")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	idle := dial()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", p.addr)
	res, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || res.StatusCode != 200 || res.Close {
		t.Fatalf("a keep-alive /healthz: %v %v", res, err)
	}
	halfSent := dial()
	fmt.Fprintf(halfSent, "POST /v1/rooms/doc:1/events HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n{\"body\":", p.addr)
	silent := dial()
	ws := wsConnect(t, p.addr, crashToken(t, "ws", false), "s")
	defer ws.Close()

	for name, c := range map[string]net.Conn{"idle keep-alive": idle, "half-sent request": halfSent, "silent": silent} {
		if !closedWithin(c, 5*time.Second) {
			t.Errorf("%s connection still open after 5 s", name)
		}
	}
	ws.WriteJSON(map[string]any{"type": "ping"})
	var f map[string]any
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.ReadJSON(&f); err != nil || f["type"] != "pong" {
		t.Fatalf("the WebSocket connection after the HTTP timeouts: %v %v", f, err)
	}
}

// TestFullServerKeepsServing: a server under a low open-file limit (ulimit -n 200) flooded with
// more idle and half-sent connections than it may hold refuses the excess at once and keeps
// serving: its WebSocket clients publish and receive, a health check on a kept connection is
// answered throughout, and a new one is answered again once the flood's sockets time out. It
// never runs out of file descriptors.
func TestFullServerKeepsServing(t *testing.T) {
	servertest.Long(t, "flood test")
	cmd := []string{"--data", filepath.Join(t.TempDir(), "full.db"), "--jwt-secret", servertest.Secret, "--publish-rate", "0",
		"--http-read-timeout", "2s", "--http-idle-timeout", "2s"}
	t.Setenv("ROOMLOG_TEST_NOFILE", "200")
	p := startServe(t, cmd...)
	os.Unsetenv("ROOMLOG_TEST_NOFILE")
	if !strings.Contains(p.log(), "max_conns=136") {
		t.Fatalf("--max-conns was not fitted to the open-file limit:\n%s", p.log())
	}

	keep := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, IdleConnTimeout: time.Minute}}
	defer keep.CloseIdleConnections()
	health := func(c *http.Client) error {
		res, err := c.Get("http://" + p.addr + "/healthz")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}
	if err := health(keep); err != nil {
		t.Fatal(err)
	}
	var members []*websocket.Conn
	for i := range 10 {
		ws := wsConnect(t, p.addr, crashToken(t, fmt.Sprint("m", i), false), "s")
		defer ws.Close()
		ws.WriteJSON(map[string]any{"type": "join", "ref": "j", "room": "flood"})
		members = append(members, ws)
	}
	for _, ws := range members {
		readUntil(t, ws, "synced")
	}

	// The flood: 300 sockets that send nothing or half a request.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 300 {
		c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
		if err != nil {
			continue // the kernel's queue; the server closes what it cannot hold
		}
		if i%2 == 1 {
			fmt.Fprintf(c, "POST /v1/rooms/doc:1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		}
		flood = append(flood, c)
	}
	if err := health(keep); err != nil {
		t.Fatalf("the kept health check during the flood: %v", err)
	}
	members[0].WriteJSON(map[string]any{"type": "publish", "ref": "p", "room": "flood", "body": "still here"})
	var wg sync.WaitGroup
	for i, ws := range members {
		wg.Go(func() {
			if f := readUntil(t, ws, "message"); f["body"] != "still here" {
				t.Errorf("member %d got %v", i, f)
			}
		})
	}
	wg.Wait()

	deadline := time.Now().Add(15 * time.Second)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	for health(fresh) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no new health check answered 15 s after the flood")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := keep.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `roomlog_refused_connections_total{reason="max_conns"}`) {
		t.Errorf("no socket refused as max_conns")
	}
	if strings.Contains(p.log(), "too many open files") {
		t.Fatalf("the server ran out of file descriptors:\n%s", p.log())
	}
	if err := exec.Command("kill", "-0", strconv.Itoa(p.cmd.Process.Pid)).Run(); err != nil {
		t.Fatalf("the server is gone: %v", err)
	}
}

// readUntil reads frames until one of type typ (or an event of kind typ), and returns it.
func readUntil(t *testing.T, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var f map[string]any
		if err := ws.ReadJSON(&f); err != nil {
			t.Errorf("waiting for %s: %v", typ, err)
			return nil
		}
		if f["type"] == typ || f["type"] == "event" && f["kind"] == typ {
			return f
		}
	}
}
