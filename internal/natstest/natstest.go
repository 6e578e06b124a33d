// Package natstest runs real NATS servers with JetStream in the test process, on loopback: one
// server, or a cluster of several. Tests of the JetStream backend and of roomlog nodes on it use
// it; nothing outside tests does.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is a NATS server with JetStream, running in the test process.
type Server struct {
	*server.Server
}

// Start starts a single JetStream server on a free loopback port, storing in a temporary
// directory; it is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := start(t, &server.Options{
		ServerName: "single", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
	})
	t.Cleanup(s.Shutdown)
	return s
}

func start(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("nats-server %s did not start", opts.ServerName)
	}
	return &Server{Server: s}
}

// Connect connects a client to the given servers, reconnecting for ever.
func Connect(t testing.TB, servers ...*Server) *nats.Conn {
	t.Helper()
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Cluster is n JetStream servers in one cluster.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts a cluster of n JetStream servers on loopback, and waits until it has
// formed; each stores in a temporary directory of its own. They are shut down when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &Cluster{}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			s.Shutdown()
		}
	})
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
			NoLog: true, NoSigs: true, JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
			Cluster: server.ClusterOpts{Name: "roomlog-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.Servers = append(c.Servers, start(t, opts))
	}
	c.waitFormed(t)
	return c
}

// waitFormed waits until the cluster has elected a JetStream meta leader that has heard from
// every running server, and every running server has caught up with it: before that, a stream
// asking for a replica on each server is refused ("no suitable peers for placement").
func (c *Cluster) waitFormed(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c.formed() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the JetStream cluster did not form in 30s (a meta leader hearing from every running server, all current)")
}

func (c *Cluster) formed() bool {
	var leader *Server
	running := 0
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		running++
		if !s.JetStreamIsCurrent() {
			return false
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	return leader != nil && len(leader.JetStreamClusterPeers()) == running
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
