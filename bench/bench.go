// Package bench is roomlog's load generator, behind `roomlog bench`: scenarios that drive a server
// through the Go client and report figures a person can compare, checking while they measure that
// nothing was lost or duplicated.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/rooms"
	"github.com/roomlog/roomlog/transport"
)

// Target is the server a scenario runs against: one node, or several sharing a log (JetStream),
// in which case publishers write to the first and readers read from the others.
type Target struct {
	URL     string   // ws://host:port/v1/ws: the node publishers write to
	Readers []string // the nodes subscribers and resuming clients read from; none: URL
	Token   func(sub string) func(context.Context) (string, error)
	stop    func()
}

// reader is the URL the i-th reading client dials.
func (t *Target) reader(i int) string {
	if len(t.Readers) == 0 {
		return t.URL
	}
	return t.Readers[i%len(t.Readers)]
}

// Close stops an in-process server (nothing for a remote one).
func (t *Target) Close() {
	if t.stop != nil {
		t.stop()
	}
}

// Remote targets running servers, signing tokens with their HS256 secret. With several URLs
// (nodes sharing one log), publishers use the first and readers the others.
func Remote(urls []string, secret string) (*Target, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("no server URL")
	}
	var t *Target
	for i, u := range urls {
		one, err := remote(u, secret)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			t = one
		} else {
			t.Readers = append(t.Readers, one.URL)
		}
	}
	return t, nil
}

func remote(url, secret string) (*Target, error) {
	if !strings.HasPrefix(url, "ws://") && !strings.HasPrefix(url, "wss://") {
		if strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://") {
			url = "ws" + strings.TrimPrefix(url, "http")
		} else {
			return nil, fmt.Errorf("server %q is not a ws:// or http:// URL", url)
		}
	}
	if !strings.HasSuffix(url, "/v1/ws") {
		url = strings.TrimRight(url, "/") + "/v1/ws"
	}
	if err := checkLoopback(url); err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, fmt.Errorf("a remote server needs its --secret to sign the load generator's tokens")
	}
	return &Target{URL: url, Token: signer(secret)}, nil
}

func signer(secret string) func(sub string) func(context.Context) (string, error) {
	return func(sub string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			return auth.NewToken([]byte(secret), auth.TokenSpec{Subject: sub, Rooms: []string{"*"}, TTL: time.Hour})
		}
	}
}

// checkLoopback refuses targets off this machine: a load generator aimed at the wrong address
// is an attack, so this one only ever loads a loopback server.
func checkLoopback(raw string) error {
	u, err := neturl.Parse(raw)
	if err != nil {
		return fmt.Errorf("server %q: %v", raw, err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("server %q is not on loopback (127.0.0.0/8, ::1, localhost): roomlog bench loads only a server on this machine", host)
}

// InProcess starts a server in this process on a loopback port with a fresh data file.
func InProcess() (*Target, error) {
	dir, err := os.MkdirTemp("", "roomlog-bench-")
	if err != nil {
		return nil, err
	}
	log, err := boltlog.Open(filepath.Join(dir, "bench.db"), boltlog.Options{})
	if err != nil {
		return nil, err
	}
	const secret = "roomlog-bench-secret-of-32-bytes-or-more"
	v, _ := auth.NewVerifier(auth.Config{Secret: []byte(secret)})
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hub := rooms.NewHub(log, rooms.Options{Logger: quiet})
	srv, err := transport.New(transport.Config{Hub: hub, Auth: v, PublishRate: transport.NoRateLimit, Logger: quiet})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	return &Target{
		URL:   "ws://" + ln.Addr().String() + "/v1/ws",
		Token: signer(secret),
		stop: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hs.Shutdown(ctx)
			srv.Shutdown(ctx)
			log.Close()
			os.RemoveAll(dir)
		},
	}, nil
}

// Result is what a scenario measured.
type Result struct {
	Scenario  string             `json:"scenario"`
	Params    map[string]any     `json:"params"`
	Seconds   float64            `json:"seconds"`
	Figures   map[string]float64 `json:"figures"`
	Errors    int                `json:"errors"`
	Lost      int                `json:"lost"`
	Duplicate int                `json:"duplicated"`
	Problems  []string           `json:"problems,omitempty"`
}

// OK reports whether the run lost, duplicated and failed nothing.
func (r *Result) OK() bool {
	return r.Errors == 0 && r.Lost == 0 && r.Duplicate == 0 && len(r.Problems) == 0
}

func (r *Result) problem(format string, args ...any) {
	if len(r.Problems) < 20 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Text is the result for a person.
func (r *Result) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s) over %.1fs\n", r.Scenario, params(r.Params), r.Seconds)
	keys := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-22s %12.1f\n", k, r.Figures[k])
	}
	verdict := "nothing lost or duplicated"
	if !r.OK() {
		verdict = fmt.Sprintf("LOST %d, DUPLICATED %d, ERRORS %d", r.Lost, r.Duplicate, r.Errors)
	}
	fmt.Fprintf(&b, "  %s\n", verdict)
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	return b.String()
}

func params(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(parts, " ")
}

// JSON is the result as JSON.
func (r *Result) JSON() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return b
}

// latencies collects durations and reports percentiles in milliseconds.
type latencies []time.Duration

func (l latencies) report(into map[string]float64, prefix string) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	pct := func(p float64) float64 {
		return float64(l[min(len(l)-1, int(float64(len(l))*p))].Microseconds()) / 1000
	}
	into[prefix+"p50_ms"] = pct(0.50)
	into[prefix+"p99_ms"] = pct(0.99)
	into[prefix+"p999_ms"] = pct(0.999)
}

func dial(ctx context.Context, url string, t *Target, user, session string) (*client.Client, error) {
	return client.Dial(ctx, url, client.Options{
		Token: t.Token(user), Session: session,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// payload is a 200-byte body carrying the publisher, a sequence number and the send time.
type payload struct {
	P   int    `json:"p"`
	Seq int    `json:"s"`
	T   int64  `json:"t"`
	Pad string `json:"pad"`
}

// readPayload reads p, s and t from the front of a body as json.Marshal writes a payload, without
// decoding the rest: the load generator checks every delivery and must stay cheap.
func readPayload(b []byte) (payload, bool) {
	var out payload
	rest := b
	num := func(prefix string) (int64, bool) {
		if !strings.HasPrefix(string(rest[:min(len(rest), len(prefix))]), prefix) {
			return 0, false
		}
		rest = rest[len(prefix):]
		var n int64
		i := 0
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			n = n*10 + int64(rest[i]-'0')
		}
		if i == 0 {
			return 0, false
		}
		rest = rest[i:]
		return n, true
	}
	p, ok1 := num(`{"p":`)
	s, ok2 := num(`,"s":`)
	t, ok3 := num(`,"t":`)
	if !ok1 || !ok2 || !ok3 {
		return out, false
	}
	out.P, out.Seq, out.T = int(p), int(s), t
	return out, true
}

func newPayload(p, seq int) payload {
	return payload{P: p, Seq: seq, T: time.Now().UnixNano(), Pad: strings.Repeat("x", 160)}
}
