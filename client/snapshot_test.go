package client_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/internal/servertest"
)

// compact compacts room through the server at addr with an admin token, and returns the answer.
func compact(t *testing.T, addr, room string) (int, []byte) {
	t.Helper()
	admin, _ := servertest.NewToken(auth.TokenSpec{Subject: "ops", Admin: true})
	status, body := servertest.Request(t, "POST", "http://"+addr+"/v1/rooms/"+room+"/compact", admin, "")
	return status, []byte(body)
}

// collect gathers a room's events from a handler.
type collect chan client.Event

func (c collect) next(t *testing.T) client.Event {
	t.Helper()
	select {
	case e := <-c:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return client.Event{}
	}
}

// TestSnapshotsCompactionAndSignals: the Go client joins a long room from its latest snapshot
// (the snapshot, then what follows), is told when a compaction removed what followed its cursor
// (the replay starts at the snapshot, never a silent gap), and sends and receives signals.
func TestSnapshotsCompactionAndSignals(t *testing.T) {
	p := startProc(t, filepath.Join(t.TempDir(), "snap.db"))
	ctx := ctxT(t)
	url := "ws://" + p.addr + "/v1/ws"
	editorTok := func(context.Context) (string, error) {
		return servertest.NewToken(auth.TokenSpec{Subject: "editor", Rooms: []string{"doc:*"}, SnapshotRooms: []string{"doc:*"}})
	}
	w, err := client.Dial(ctx, url, client.Options{Token: editorTok, Session: "w"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var early []string
	for i := range 3 {
		ack, err := w.Publish(ctx, "doc:long", "edit", i)
		if err != nil {
			t.Fatal(err)
		}
		early = append(early, ack.ID)
	}
	snap, err := w.PublishExpect(ctx, "doc:long", "snapshot", map[string]any{"covers": early[2], "state": "0 1 2"}, early[2])
	if err != nil {
		t.Fatal(err)
	}
	later, err := w.Publish(ctx, "doc:long", "edit", 3)
	if err != nil {
		t.Fatal(err)
	}

	// A newcomer from the snapshot: the snapshot, then the edit after it.
	fresh, err := client.Dial(ctx, url, client.Options{Token: token(t, "reader", "doc:*"), Session: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	got := make(collect, 16)
	room, err := fresh.Join(ctx, "doc:long", client.JoinOptions{FromSnapshot: true, Handler: func(e client.Event) { got <- e }})
	if err != nil {
		t.Fatal(err)
	}
	if e := got.next(t); e.ID != snap.ID || e.Kind != "snapshot" || room.Snapshot() != snap.ID || room.CursorTooOld() {
		t.Fatalf("from the snapshot: first %s %s, Snapshot %q, CursorTooOld %v", e.Kind, e.ID, room.Snapshot(), room.CursorTooOld())
	}
	if e := got.next(t); e.ID != later.ID {
		t.Fatalf("after the snapshot: %s, want %s", e.ID, later.ID)
	}

	// A compaction; a device whose saved cursor it removed is told, and starts at the snapshot.
	if code, body := compact(t, p.addr, "doc:long"); code != 200 {
		t.Fatalf("compact: %d %s", code, body)
	}
	store := client.NewMemoryStore()
	store.SetCursor("doc:long", early[0])
	old, err := client.Dial(ctx, url, client.Options{Token: token(t, "old", "doc:*"), Session: "o", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	back := make(collect, 16)
	oldRoom, err := old.Join(ctx, "doc:long", client.JoinOptions{Handler: func(e client.Event) { back <- e }})
	if err != nil {
		t.Fatal(err)
	}
	if e := back.next(t); !oldRoom.CursorTooOld() || oldRoom.Snapshot() != snap.ID || e.ID != snap.ID {
		t.Fatalf("a cursor the compaction removed: CursorTooOld %v, Snapshot %q, first event %s", oldRoom.CursorTooOld(), oldRoom.Snapshot(), e.ID)
	}

	// Signals: from one member to the others, with who sent them; not logged.
	heard := make(chan client.Signal, 4)
	listener, err := client.Dial(ctx, url, client.Options{Token: token(t, "listener", "doc:*"), Session: "l"})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if _, err := listener.Join(ctx, "doc:long", client.JoinOptions{OnSignal: func(s client.Signal) { heard <- s }}); err != nil {
		t.Fatal(err)
	}
	if err := room.Signal(map[string]int{"cursor": 7}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-heard:
		var b map[string]int
		if json.Unmarshal(s.Body, &b); s.User != "reader" || s.Session != "r" || s.Room != "doc:long" || b["cursor"] != 7 {
			t.Fatalf("signal: %+v %s", s, s.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no signal within 10 s")
	}
}
