package client_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/transport"
	"go.uber.org/goleak"
)

var roomlogBin string // the roomlog binary, built once for the process tests

func TestMain(m *testing.M) {
	bin, remove := servertest.BuildForMain()
	roomlogBin = bin
	code := 0
	func() {
		defer func() {
			if err := goleak.Find(); err != nil && code == 0 {
				fmt.Fprintln(os.Stderr, "goroutine leak:", err)
				code = 1
			}
		}()
		code = m.Run()
	}()
	remove()
	os.Exit(code)
}

func token(t testing.TB, sub string, rooms ...string) func(context.Context) (string, error) {
	return tokenTTL(t, sub, time.Hour, rooms...)
}

func tokenTTL(t testing.TB, sub string, ttl time.Duration, rooms ...string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		return servertest.NewToken(auth.TokenSpec{Subject: sub, Rooms: rooms, TTL: ttl})
	}
}

// inProcServer is a real server in this process, on a loopback port, with a real data file.
type inProcServer struct {
	addr string
	log  *boltlog.Log
	srv  *transport.Server
	http *http.Server
}

func startInProc(t *testing.T) *inProcServer {
	return startInProcWith(t, 0)
}

// startInProcWith starts a server whose log remembers keys for keyRetention (0: the default).
func startInProcWith(t *testing.T, keyRetention time.Duration) *inProcServer {
	t.Helper()
	log, err := boltlog.Open(filepath.Join(t.TempDir(), "rooms.db"), boltlog.Options{KeyRetention: keyRetention})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{Secret: []byte(servertest.Secret)})
	srv, err := transport.New(transport.Config{Hub: rooms.NewHub(log, rooms.Options{Grace: time.Second}), Auth: v, PublishRate: transport.NoRateLimit, KeyRetention: keyRetention})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &inProcServer{addr: ln.Addr().String(), log: log, srv: srv, http: &http.Server{Handler: srv}}
	go s.http.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.http.Shutdown(ctx)
		s.srv.Shutdown(ctx)
		s.log.Close()
	})
	return s
}

// proxy forwards loopback TCP connections to a target it can change, and can cut every
// connection it carries: a network failure, as the client sees it.
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/v1/ws" }

func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(out, in) })
		p.wg.Go(func() { pipe(in, out) })
	}
}

// cut closes every connection in flight.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// serverProc is a roomlog serve process.
type serverProc struct {
	*servertest.Proc
	cmd  *exec.Cmd
	addr string
	done <-chan struct{}
}

// startProc starts roomlog serve on data; extra flags follow the test's own (and override them).
func startProc(t *testing.T, data string, extra ...string) *serverProc {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--jwt-secret", servertest.Secret, "--grace", "2s", "--publish-rate", "0"}, extra...)
	p := servertest.Start(t, exec.Command(roomlogBin, args...))
	return &serverProc{Proc: p, cmd: p.Cmd, addr: p.Addr, done: p.Done()}
}
