package transport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/servertest"
	"github.com/roomlog/roomlog/transport"
)

func TestHTTPAPI(t *testing.T) {
	ts := startServer(t, serverOpts{})
	writer := token(t, "svc", []string{"doc:*"})
	reader := token(t, "ro", nil, func(s *auth.TokenSpec) { s.ReadRooms = []string{"doc:*"} })
	admin := token(t, "auditor", nil, func(s *auth.TokenSpec) { s.Admin = true })
	post := ts.url + "/v1/rooms/doc:1/events"

	cases := []struct {
		name, tok, url, body string
		status               int
		code                 string
	}{
		{"no token", "", post, `{"body":1}`, 401, "unauthenticated"},
		{"bad token", "x.y.z", post, `{"body":1}`, 401, "unauthenticated"},
		{"read-only token", reader, post, `{"body":1}`, 403, "forbidden"},
		{"bad room", writer, ts.url + "/v1/rooms/a%20b/events", `{"body":1}`, 400, "bad_room"},
		{"not JSON", writer, post, `{"body":`, 400, "bad_frame"},
		{"array body", writer, post, `[1,2]`, 400, "bad_frame"},
		{"mistyped field", writer, post, `{"kind":5}`, 400, "bad_frame"},
		{"reserved kind", writer, post, `{"kind":"join"}`, 400, "bad_frame"},
		{"bad expect", writer, post, `{"expect":"zzz"}`, 400, "bad_frame"},
		{"too large", writer, post, `{"body":"` + strings.Repeat("x", 70000) + `"}`, 413, "frame_too_large"},
	}
	for _, tc := range cases {
		status, body := servertest.Request(t, "POST", tc.url, tc.tok, tc.body)
		if status != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.code)
		}
		if strings.Contains(body, "Go struct") || strings.Contains(body, "struct {") {
			t.Errorf("%s: the error names Go types: %s", tc.name, body)
		}
	}
	// Routes nobody serves answer in the same JSON shape.
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/nothing", 404, "not_found"},
		{"DELETE", "/v1/rooms/doc:1/events", 405, "method_not_allowed"},
		{"POST", "/v1/events", 405, "method_not_allowed"},
	} {
		status, body := servertest.Request(t, tc.method, ts.url+tc.path, writer, "")
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(body), &e); status != tc.status || err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s %s: %d %q, want %d with JSON code %s", tc.method, tc.path, status, body, tc.status, tc.code)
		}
	}
	if h, _ := ts.log.Head(context.Background(), "doc:1"); h.Count != 0 {
		t.Fatalf("refused requests appended %d events", h.Count)
	}

	status, body := servertest.Request(t, "POST", post, writer, `{"kind":"note","key":"k1","body":{"text":"from a backend"}}`)
	var ev map[string]any
	json.Unmarshal([]byte(body), &ev)
	if status != 201 || ev["type"] != "event" || ev["user"] != "svc" || ev["kind"] != "note" || ev["key"] != "k1" {
		t.Fatalf("publish: %d %s", status, body)
	}
	status, body = servertest.Request(t, "POST", post, writer, `{"kind":"note","key":"k1","body":{"text":"retry"}}`)
	var dup map[string]any
	json.Unmarshal([]byte(body), &dup)
	if status != 200 || dup["duplicate"] != true || dup["id"] != ev["id"] {
		t.Fatalf("retry: %d %s", status, body)
	}
	status, body = servertest.Request(t, "POST", post, writer, `{"expect":"","body":2}`)
	if status != 409 || !strings.Contains(body, `"head":"`+ev["id"].(string)+`"`) {
		t.Fatalf("conflict: %d %s", status, body)
	}
	status, _ = servertest.Request(t, "POST", post, writer, fmt.Sprintf(`{"expect":%q,"body":2}`, ev["id"]))
	if status != 201 {
		t.Fatalf("expect on the head: %d", status)
	}

	// Reading a room: read permission or admin.
	for _, tok := range []string{reader, admin} {
		status, body = servertest.Request(t, "GET", post+"?limit=1", tok, "")
		var page struct {
			Room   string           `json:"room"`
			Events []map[string]any `json:"events"`
		}
		json.Unmarshal([]byte(body), &page)
		if status != 200 || len(page.Events) != 1 || page.Events[0]["id"] != ev["id"] {
			t.Fatalf("GET room events: %d %s", status, body)
		}
		status, body = servertest.Request(t, "GET", post+"?after="+ev["id"].(string), tok, "")
		json.Unmarshal([]byte(body), &page)
		if status != 200 || len(page.Events) != 1 {
			t.Fatalf("GET after: %d %s", status, body)
		}
	}
	if status, _ := servertest.Request(t, "GET", ts.url+"/v1/rooms/secret/events", reader, ""); status != 403 {
		t.Fatalf("GET of a forbidden room: %d", status)
	}
	if status, _ := servertest.Request(t, "GET", post+"?limit=-1", reader, ""); status != 400 {
		t.Fatalf("GET with a bad limit: %d", status)
	}

	// The audit stream: admin only, JSON lines in id order, filtered.
	for i := range 5 {
		servertest.Request(t, "POST", ts.url+fmt.Sprintf("/v1/rooms/doc:%d/events", i+2), writer, fmt.Sprintf(`{"body":%d}`, i))
	}
	if status, _ := servertest.Request(t, "GET", ts.url+"/v1/events", writer, ""); status != 403 {
		t.Fatalf("audit with a non-admin token: %d", status)
	}
	if status, _ := servertest.Request(t, "GET", ts.url+"/v1/events?since=yesterday", admin, ""); status != 400 {
		t.Fatalf("audit with a bad since: %d", status)
	}
	status, body = servertest.Request(t, "GET", ts.url+"/v1/events", admin, "")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if status != 200 || len(lines) != 7 {
		t.Fatalf("audit: %d, %d lines:\n%s", status, len(lines), body)
	}
	prev := ""
	for _, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil || e["type"] != "event" || e["id"].(string) <= prev {
			t.Fatalf("audit line %q out of order or not an event", l)
		}
		prev = e["id"].(string)
	}
	_, body = servertest.Request(t, "GET", ts.url+"/v1/events?room=doc:1&kind=note", admin, "")
	if n := strings.Count(body, "\n"); n != 1 {
		t.Fatalf("filtered audit: %d lines:\n%s", n, body)
	}
	_, body = servertest.Request(t, "GET", ts.url+"/v1/events?room=doc:*&since="+ev["id"].(string)+"&limit=3", admin, "")
	if n := strings.Count(body, "\n"); n != 3 || !strings.HasPrefix(body, `{"type":"event","room":"doc:1","id":"`+ev["id"].(string)) {
		t.Fatalf("since+limit audit: %d lines:\n%s", n, body)
	}

	// follow: keeps streaming events published after the request.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+"/v1/events?follow=true&room=live", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go func() {
		for i := range 3 {
			servertest.Request(t, "POST", ts.url+"/v1/rooms/live/events", token(t, "svc", []string{"live"}), fmt.Sprintf(`{"body":%d}`, i))
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	for i := range 3 {
		if !sc.Scan() {
			t.Fatalf("follow ended after %d lines: %v", i, sc.Err())
		}
		if !strings.Contains(sc.Text(), fmt.Sprintf(`"body":%d}`, i)) {
			t.Fatalf("follow line %d: %s", i, sc.Text())
		}
	}
	cancel()
}

func TestHealthAndMetrics(t *testing.T) {
	ts := startServer(t, serverOpts{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _ := servertest.Request(t, "GET", ts.url+p, "", ""); status != 200 {
			t.Fatalf("%s: %d", p, status)
		}
	}
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "s")
	c.join("doc:1", nil)
	c.publish("doc:1", 1, nil)
	_, body := servertest.Request(t, "GET", ts.url+"/metrics", "", "")
	for _, want := range []string{"roomlog_connections 1", "roomlog_joins_total 1", `roomlog_appends_total{outcome="appended"} 1`,
		"roomlog_append_seconds_count 1", "roomlog_deliveries_total", "roomlog_slow_consumers_total 0", "roomlog_auth_failures_total 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// metric reads one counter or gauge from /metrics.
func metric(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	_, body := servertest.Request(t, "GET", ts.url+"/metrics", "", "")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// lockedBuffer is a log sink for a server under test.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusalsAreLoggedAndCounted: refused connections and frames show in the metrics, by reason
// and code, and in the debug log, rate-limited so that a flood of bad frames cannot flood it.
func TestRefusalsAreLoggedAndCounted(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := startServer(t, serverOpts{cfg: transport.Config{Logger: logger}})
	bad, _, _ := dial(t, ts, "", nil)
	bad.send(frame{"type": "hello", "token": "not.a.jwt"})
	bad.expectClosed()
	c := connect(t, ts, token(t, "alice", []string{"doc:*"}), "s")
	const flood = 400
	for i := range flood {
		c.send(frame{"type": "join", "ref": fmt.Sprint(i), "room": "no room!"})
	}
	for range flood {
		c.expectError("bad_room")
	}
	c.send(frame{"type": "publish", "ref": "f", "room": "secret"})
	c.expectError("forbidden")

	if n := metric(t, ts, `roomlog_refused_connections_total{reason="unauthenticated"}`); n != 1 {
		t.Errorf("refused connections counted %v, want 1", n)
	}
	if n := metric(t, ts, `roomlog_error_replies_total{code="bad_room"}`); n != flood {
		t.Errorf("bad_room replies counted %v, want %d", n, flood)
	}
	if n := metric(t, ts, `roomlog_error_replies_total{code="forbidden"}`); n != 1 {
		t.Errorf("forbidden replies counted %v, want 1", n)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="connection refused" why=unauthenticated`) || !strings.Contains(out, "token refused") {
		t.Errorf("the refused hello was not logged:\n%s", out)
	}
	if n := strings.Count(out, `msg="frame refused"`); n == 0 || n > 100 {
		t.Errorf("%d log lines for %d refused frames: want some, rate-limited", n, flood+1)
	}
}
