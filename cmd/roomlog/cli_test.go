package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

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
	} {
		code, stdout, stderr := roomlog(t, nil, args...)
		var res map[string]any
		if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res["lost"] != float64(0) || res["duplicated"] != float64(0) {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, stdout, stderr)
		}
	}
	for _, bad := range [][]string{{"bench"}, {"bench", "nope"}, {"bench", "fanout", "--rate", "0"}, {"bench", "publish", "--server", "http://127.0.0.1:1"},
		{"bench", "publish", "--server", "http://10.0.0.1:7070", "--secret", "s"}} {
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
