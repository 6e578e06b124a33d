package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/internal/servertest"
)

// TestTrustOnJetStream: the trust rules hold on nodes sharing a JetStream log. A writer without
// the snapshot_rooms claim cannot publish a snapshot through any node, a trusted writer can, and
// a compaction through another node names the snapshot's author; a user's connections are
// bounded per node (--max-conns-per-user), not across nodes.
func TestTrustOnJetStream(t *testing.T) {
	servertest.Long(t, "process test")
	ns := natstest.Start(t)
	dir := t.TempDir()
	a := startProc(t, filepath.Join(dir, "a.db"), "--nats", ns.ClientURL(), "--max-conns-per-user", "2")
	b := startProc(t, filepath.Join(dir, "b.db"), "--nats", ns.ClientURL(), "--max-conns-per-user", "2")
	ctx := ctxT(t)
	dial := func(p *serverProc, tok func(context.Context) (string, error), session string) (*client.Client, error) {
		return client.Dial(ctx, "ws://"+p.addr+"/v1/ws", client.Options{Token: tok, Session: session})
	}
	w, err := dial(a, token(t, "writer", "doc:*"), "w1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	edit, err := w.Publish(ctx, "doc:js", "", map[string]any{"text": "real work"})
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string]any{"covers": edit.ID, "state": ""}
	_, err = w.PublishExpect(ctx, "doc:js", "snapshot", forged, edit.ID)
	var refused *client.Error
	if !errors.As(err, &refused) || refused.Code != "forbidden" {
		t.Fatalf("a snapshot without the claim on JetStream: %v", err)
	}

	trusted := func(context.Context) (string, error) {
		return servertest.NewToken(auth.TokenSpec{Subject: "editor", Rooms: []string{"doc:*"}, SnapshotRooms: []string{"doc:*"}})
	}
	e, err := dial(b, trusted, "e1")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	snap, err := e.PublishExpect(ctx, "doc:js", "snapshot", map[string]any{"covers": edit.ID, "state": "real"}, edit.ID)
	if err != nil {
		t.Fatalf("the trusted writer's snapshot on another node: %v", err)
	}
	code, body := compact(t, a.addr, "doc:js")
	var out struct {
		Snapshot   string
		SnapshotBy string `json:"snapshot_by"`
	}
	if json.Unmarshal(body, &out); code != 200 || out.Snapshot != snap.ID || out.SnapshotBy != "editor" {
		t.Fatalf("compaction through node A: %d %s", code, body)
	}

	// writer holds one connection to A; a second fits, a third does not; B takes its own two.
	second, err := dial(a, token(t, "writer", "doc:*"), "w2")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if third, err := dial(a, token(t, "writer", "doc:*"), "w3"); err == nil || !strings.Contains(err.Error(), "too_many_connections") {
		if third != nil {
			third.Close()
		}
		t.Fatalf("a third connection of one user to node A: %v", err)
	}
	onB, err := dial(b, token(t, "writer", "doc:*"), "w4")
	if err != nil {
		t.Fatalf("node B refused the user A is full of: %v", err)
	}
	onB.Close()
}
