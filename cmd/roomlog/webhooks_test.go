package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/internal/servertest"
)

// TestServeWebhookAcrossKill: a real server delivers a webhook to a receiver on loopback that
// answers slowly, so batches are in flight; the server is killed (kill -9) part way and started
// again: the receiver ends with every event of the webhook's rooms exactly in log order, with at
// most the batch in flight at the kill repeated; GET /v1/webhooks and roomlog webhooks say it
// has caught up.
func TestServeWebhookAcrossKill(t *testing.T) {
	servertest.Long(t, "webhook crash test")
	var mu sync.Mutex
	var got []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if hooks.Verify([]byte(hookSecret), r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		time.Sleep(20 * time.Millisecond) // a batch stays in flight a while
		var batch struct{ Events []struct{ ID, Room string } }
		json.Unmarshal(body, &batch)
		mu.Lock()
		for _, e := range batch.Events {
			got = append(got, e.ID)
		}
		mu.Unlock()
	}))
	defer receiver.Close()
	received := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	data := filepath.Join(t.TempDir(), "wh.db")
	flags := []string{"--hook-secret", hookSecret, "--webhook", "app=" + receiver.URL, "--webhook-rooms", "app=doc:*"}
	p := startProc(t, data, flags...)
	writer := servertest.Token(t, auth.TokenSpec{Subject: "w", Rooms: []string{"*"}})
	publish := func(room string, n int) {
		for i := range n {
			if status, body := servertest.Request(t, "POST", "http://"+p.addr+"/v1/rooms/"+room+"/events", writer, fmt.Sprintf(`{"body":%d}`, i)); status != 201 {
				t.Fatalf("publish: %d %s", status, body)
			}
		}
	}
	publish("doc:1", 300)
	publish("chat:1", 20) // not the webhook's
	for deadline := time.Now().Add(20 * time.Second); len(received()) < 100; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events delivered", len(received()))
		}
	}
	p.cmd.Process.Kill()
	<-p.done
	p = startProc(t, data, flags...)
	publish("doc:2", 50)
	admin := servertest.Token(t, auth.TokenSpec{Subject: "ops", Admin: true})
	_, lines := servertest.Request(t, "GET", "http://"+p.addr+"/v1/events?room=doc:*", admin, "")
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		var e struct{ ID string }
		json.Unmarshal([]byte(l), &e)
		want = append(want, e.ID)
	}
	if len(want) != 350 {
		t.Fatalf("the log holds %d events of doc:*, want 350", len(want))
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if dedup(received()) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered after the restart", dedup(received()), len(want))
		}
	}
	all := received()
	seen, once := map[string]bool{}, []string{}
	for _, id := range all {
		if !seen[id] {
			seen[id] = true
			once = append(once, id)
		}
	}
	if strings.Join(once, " ") != strings.Join(want, " ") {
		t.Fatalf("delivered %d distinct events, not the log's %d in order", len(once), len(want))
	}
	if repeats := len(all) - len(want); repeats > 100 {
		t.Errorf("%d events repeated, want at most the batch in flight (100)", repeats)
	}
	status, body := servertest.Request(t, "GET", "http://"+p.addr+"/v1/webhooks", admin, "")
	if status != 200 || !strings.Contains(body, `"pending":0`) || !strings.Contains(body, `"cursor":"`+want[len(want)-1]+`"`) {
		t.Errorf("GET /v1/webhooks: %d %s", status, body)
	}
	code, out, errOut := roomlog(t, nil, "webhooks", "--server", "http://"+p.addr, "--token", admin)
	if code != 0 || !strings.Contains(out, "app") || !strings.Contains(out, want[len(want)-1]) {
		t.Errorf("roomlog webhooks: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("%d events delivered across a kill -9, %d repeated", len(want), len(all)-len(want))
}

func dedup(ids []string) int {
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	return len(seen)
}

// TestServeWebhookFlagsRefused: webhook flags that cannot work are a one-line usage error.
func TestServeWebhookFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook", "app=http://127.0.0.1:9/"}, "needs --hook-secret"},
		{[]string{"--hook-secret", hookSecret, "--webhook", "noequals"}, "want NAME=VALUE"},
		{[]string{"--hook-secret", hookSecret, "--webhook", "app=ftp://x/"}, "want an http or https URL"},
		{[]string{"--hook-secret", hookSecret, "--webhook", "app=http://a/", "--webhook", "app=http://b/"}, "named twice"},
		{[]string{"--hook-secret", hookSecret, "--webhook", "app=http://a/", "--webhook-rooms", "other=doc:*"}, `no --webhook named "other"`},
		{[]string{"--hook-secret", hookSecret, "--webhook", "app=http://a/", "--webhook-kinds", "app=Bad Kind"}, "kinds"},
		{[]string{"--hook-secret", hookSecret, "--webhook", "app=http://a/", "--nats", "nats://127.0.0.1:4222"}, "needs --data for now"},
	} {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "x.db"), "--jwt-secret", servertest.Secret}, c.args...)
		code, _, stderr := roomlog(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, %q; want 2 and one line saying %q", c.args, code, stderr, c.want)
		}
	}
}
