package filestore_test

import (
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/client/filestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStoreKeepsWhatARestartNeeds: cursors only move forward, the outbox lists in key order, and
// both are there after the file is opened again; a second opener waits, then fails.
func TestStoreKeepsWhatARestartNeeds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetCursor("doc:1", "01B")
	s.SetCursor("doc:1", "01A") // older: ignored
	for _, k := range []string{"03", "01", "02"} {
		if err := s.AddOutgoing(client.Outgoing{Key: k, Room: "doc:1", Body: []byte(`"` + k + `"`)}); err != nil {
			t.Fatal(err)
		}
	}
	s.RemoveOutgoing("02")
	if _, err := filestore.Open(path); err == nil {
		t.Fatalf("a second Open of a store in use succeeded")
	}
	s.Close()

	s, err = filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, _ := s.Cursor("doc:1"); c != "01B" {
		t.Fatalf("cursor %q after reopening, want 01B", c)
	}
	out, err := s.Outgoing()
	if err != nil || len(out) != 2 || out[0].Key != "01" || out[1].Key != "03" || string(out[1].Body) != `"03"` {
		t.Fatalf("outbox after reopening: %+v %v", out, err)
	}
}
