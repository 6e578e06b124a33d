package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
)

func TestCompactCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rooms.db")
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var head eventlog.ID
	for i := range 50 {
		r, err := l.Append(context.Background(), eventlog.AppendRequest{Room: "doc:1", User: "u", Body: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		head = r.Event.ID
	}
	body, _ := json.Marshal(map[string]string{"covers": head.String(), "state": "fifty"})
	if _, err := l.Append(context.Background(), eventlog.AppendRequest{Room: "doc:1", User: "u", Kind: eventlog.KindSnapshot, Body: body, Expect: &head}); err != nil {
		t.Fatal(err)
	}
	l.Append(context.Background(), eventlog.AppendRequest{Room: "doc:2", User: "u", Body: []byte(`1`)})
	l.Close()

	for _, bad := range [][]string{
		{"compact", "--data", path},
		{"compact", "--data", path, "--room", "no room"},
		{"compact", "--room", "doc:1"},
		{"compact", "--data", filepath.Join(t.TempDir(), "missing.db"), "--room", "doc:1"},
		{"compact", "--data", path, "--room", "doc:2"},
	} {
		code, stdout, stderr := roomlog(t, nil, bad...)
		if code == 0 || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "roomlog compact: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want one line of error", bad, code, stdout, stderr)
		}
	}
	code, stdout, stderr := roomlog(t, nil, "compact", "--data", path, "--room", "doc:1", "--by", "ops")
	if code != 0 || !strings.Contains(stdout, "removed 50 events") || !strings.Contains(stdout, "after event 50") {
		t.Fatalf("compact: %d %q %q", code, stdout, stderr)
	}
	code, stdout, _ = roomlog(t, nil, "compact", "--data", path, "--room", "doc:1")
	if code != 0 || !strings.HasPrefix(stdout, "nothing to compact") {
		t.Fatalf("compact again: %d %q", code, stdout)
	}
	if code, stdout, _ := roomlog(t, nil, "verify", "--data", path); code != 0 || !strings.HasPrefix(stdout, "intact") {
		t.Fatalf("verify after compaction: %d %q", code, stdout)
	}
	code, stdout, _ = roomlog(t, nil, "replay", "--data", path, "--room", "doc:1", "--format", "jsonl")
	if code != 0 || strings.Count(stdout, "\n") != 2 || !strings.Contains(stdout, `"kind":"snapshot"`) || !strings.Contains(stdout, `"kind":"compaction","user":"ops"`) {
		t.Fatalf("replay after compaction: %d\n%s", code, stdout)
	}
}
