package transport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/internal/servertest"
)

// recordingAuthorizer decides as the grants do, except that it refuses every action on rooms
// named "vault:*", and records each decision it is asked for.
type recordingAuthorizer struct {
	mu    sync.Mutex
	asked []string
}

func (a *recordingAuthorizer) Authorize(_ context.Context, g auth.Grants, action auth.Action, room string) error {
	a.mu.Lock()
	a.asked = append(a.asked, fmt.Sprintf("%s %d %s", g.User, action, room))
	a.mu.Unlock()
	if strings.HasPrefix(room, "vault:") {
		return &auth.Refusal{Reason: "the vault is closed today"}
	}
	if strings.HasPrefix(room, "broken:") { // a decision that cannot be made (a hook down)
		return errors.New("the authoriser is unreachable")
	}
	return g.Authorize(action, room)
}

func (a *recordingAuthorizer) saw(entry string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.asked {
		if e == entry {
			return true
		}
	}
	return false
}

// TestOneAuthoriser: every room action, over the WebSocket and the HTTP API, is decided by the
// hub's Authorizer: it is asked for each, and its refusal (with its reason) is what the client
// gets, even where the token's grants would allow the action; nothing is appended.
func TestOneAuthoriser(t *testing.T) {
	a := &recordingAuthorizer{}
	ts := startServer(t, serverOpts{authorizer: a})
	tok := token(t, "ann", []string{"*"}, func(s *auth.TokenSpec) { s.SnapshotRooms = []string{"*"}; s.Admin = true })
	c := connect(t, ts, tok, "s")
	for _, f := range []frame{
		{"type": "join", "ref": "1", "room": "vault:1"},
		{"type": "publish", "ref": "2", "room": "vault:1", "body": 1},
		{"type": "publish", "ref": "3", "room": "vault:1", "kind": "snapshot", "expect": "", "body": map[string]any{"covers": ""}},
		{"type": "history", "ref": "4", "room": "vault:1"},
		{"type": "ack", "ref": "5", "room": "vault:1", "id": "01K00000000000000000000000"},
	} {
		c.send(f)
		if e := c.expect("error"); e.str("code") != "forbidden" || e.str("message") != "the vault is closed today" {
			t.Errorf("%v: %v", f, e)
		}
	}
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/rooms/vault:1/events", `{"body":1}`},
		{"GET", "/v1/rooms/vault:1/events", ""},
		{"GET", "/v1/rooms/vault:1/snapshot", ""},
		{"POST", "/v1/rooms/vault:1/compact", ""},
	} {
		if code, body := servertest.Request(t, req.method, ts.url+req.path, tok, req.body); code != 403 || !strings.Contains(body, "the vault is closed today") {
			t.Errorf("%s %s: %d %s", req.method, req.path, code, body)
		}
	}
	if n := roomEvents(t, ts, "vault:1"); n != 0 {
		t.Fatalf("refused actions appended %d events", n)
	}
	// A decision that cannot be made refuses (fail closed): nothing joined, nothing appended.
	for _, f := range []frame{
		{"type": "join", "ref": "b1", "room": "broken:1"},
		{"type": "publish", "ref": "b2", "room": "broken:1", "body": 1},
	} {
		c.send(f)
		if e := c.expect("error"); e.str("code") != "internal" {
			t.Errorf("%v when the authoriser cannot decide: %v", f, e)
		}
	}
	if code, body := servertest.Request(t, "POST", ts.url+"/v1/rooms/broken:1/events", tok, `{"body":1}`); code != 500 {
		t.Errorf("HTTP publish when the authoriser cannot decide: %d %s", code, body)
	}
	if n := roomEvents(t, ts, "broken:1"); n != 0 {
		t.Fatalf("undecided actions appended %d events", n)
	}
	// The same actions elsewhere go through, each decided by the authoriser too.
	c.join("open:1", nil)
	c.publish("open:1", 1, nil)
	servertest.Request(t, "GET", ts.url+"/v1/rooms", tok, "")
	for _, want := range []string{
		fmt.Sprintf("ann %d vault:1", auth.Join), fmt.Sprintf("ann %d vault:1", auth.Publish), fmt.Sprintf("ann %d vault:1", auth.Snapshot),
		fmt.Sprintf("ann %d vault:1", auth.History), fmt.Sprintf("ann %d vault:1", auth.Receipt), fmt.Sprintf("ann %d vault:1", auth.Read),
		fmt.Sprintf("ann %d vault:1", auth.Operate), fmt.Sprintf("ann %d open:1", auth.Join), fmt.Sprintf("ann %d open:1", auth.Publish),
		fmt.Sprintf("ann %d ", auth.Operate),
	} {
		if !a.saw(want) {
			t.Errorf("the authoriser was not asked %q", want)
		}
	}
}
