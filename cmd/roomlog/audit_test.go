package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/servertest"
	bolt "go.etcd.io/bbolt"
)

// auditLog writes a data file with 3 rooms, 3 users and 2 kinds, in two batches 50 ms apart,
// and returns its events in log order and a time between the batches.
func auditLog(t *testing.T, path string) ([]eventlog.Event, time.Time) {
	t.Helper()
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var evs []eventlog.Event
	var mid time.Time
	rooms, users := []string{"doc:1", "doc:2", "chat"}, []string{"ann", "ben", "cat"}
	for i := range 60 {
		if i == 30 {
			time.Sleep(25 * time.Millisecond)
			mid = time.Now()
			time.Sleep(25 * time.Millisecond)
		}
		kind := "message"
		if i%4 == 0 {
			kind = "edit"
		}
		r, err := l.Append(context.Background(), eventlog.AppendRequest{
			Room: rooms[i%3], User: users[i%3*i%3], Kind: kind, Key: fmt.Sprint("k", i), Body: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
		})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, r.Event)
	}
	return evs, mid
}

func sum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// jsonlIDs parses replay's JSON lines into ids.
func jsonlIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e["type"] != "event" {
			t.Fatalf("not an event line: %q (%v)", sc.Text(), err)
		}
		ids = append(ids, e["id"].(string))
	}
	return ids
}

func idsWhere(evs []eventlog.Event, keep func(eventlog.Event) bool) []string {
	var out []string
	for _, e := range evs {
		if keep(e) {
			out = append(out, e.ID.String())
		}
	}
	return out
}

func TestReplayFiltersAndFormats(t *testing.T) {
	data := filepath.Join(t.TempDir(), "audit.db")
	evs, mid := auditLog(t, data)
	before := sum(t, data)
	midTime := mid.UTC().Format(time.RFC3339Nano)
	tenth := evs[10].ID
	cases := []struct {
		name string
		args []string
		keep func(eventlog.Event) bool
	}{
		{"everything", nil, func(eventlog.Event) bool { return true }},
		{"one room", []string{"--room", "chat"}, func(e eventlog.Event) bool { return e.Room == "chat" }},
		{"pattern", []string{"--room", "doc:*"}, func(e eventlog.Event) bool { return strings.HasPrefix(e.Room, "doc:") }},
		{"two rooms", []string{"--room", "doc:1", "--room", "chat"}, func(e eventlog.Event) bool { return e.Room != "doc:2" }},
		{"user", []string{"--user", "ben"}, func(e eventlog.Event) bool { return e.User == "ben" }},
		{"kind", []string{"--kind", "edit"}, func(e eventlog.Event) bool { return e.Kind == "edit" }},
		{"since time", []string{"--since", midTime}, func(e eventlog.Event) bool { return e.Time().After(mid) }},
		{"until time", []string{"--until", midTime}, func(e eventlog.Event) bool { return e.Time().Before(mid) }},
		{"since id", []string{"--since", tenth.String()}, func(e eventlog.Event) bool { return e.ID.Compare(tenth) >= 0 }},
		{"after id", []string{"--after", tenth.String()}, func(e eventlog.Event) bool { return e.ID.Compare(tenth) > 0 }},
		{"until id and kind", []string{"--until", tenth.String(), "--kind", "message"}, func(e eventlog.Event) bool { return e.ID.Compare(tenth) < 0 && e.Kind == "message" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := roomlog(t, nil, append([]string{"replay", "--data", data}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got, want := jsonlIDs(t, out), idsWhere(evs, tc.keep)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("got %d events, want %d", len(got), len(want))
			}
		})
	}
	code, out, _ := roomlog(t, nil, "replay", "--data", data, "--limit", "5")
	if code != 0 || len(jsonlIDs(t, out)) != 5 {
		t.Fatalf("--limit 5: %d lines", len(jsonlIDs(t, out)))
	}
	code, out, _ = roomlog(t, nil, "replay", "--data", data, "--format", "text", "--room", "chat", "--limit", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "chat") || !strings.Contains(lines[0], `{"n":2}`) ||
		!strings.HasPrefix(lines[0], string(timestamp(evs[2].ID))) {
		t.Fatalf("text format:\n%s", out)
	}
	if sum(t, data) != before {
		t.Fatalf("replay changed the data file")
	}
}

func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "v.db")
	evs, _ := auditLog(t, data)
	code, out, stderr := roomlog(t, nil, "verify", "--data", data)
	if code != 0 || !strings.HasPrefix(out, "intact: 3 rooms, 60 events, from ") {
		t.Fatalf("intact log: exit %d %q %s", code, out, stderr)
	}
	pristine, _ := os.ReadFile(data)
	corruptions := []struct {
		name string
		edit func(tx *bolt.Tx) eventlog.Event
	}{
		{"changed body byte", func(tx *bolt.Tx) eventlog.Event {
			e := evs[20]
			b := tx.Bucket([]byte("rooms")).Bucket([]byte(e.Room))
			v := bytes.Clone(b.Get(e.ID[:]))
			v[len(v)-2] ^= 1
			b.Put(e.ID[:], v)
			return e
		}},
		{"deleted event", func(tx *bolt.Tx) eventlog.Event {
			tx.Bucket([]byte("rooms")).Bucket([]byte(evs[21].Room)).Delete(evs[21].ID[:])
			return evs[24]
		}},
		{"reordered key", func(tx *bolt.Tx) eventlog.Event {
			a, c := evs[22], evs[25]
			b := tx.Bucket([]byte("rooms")).Bucket([]byte(a.Room))
			va, vc := bytes.Clone(b.Get(a.ID[:])), bytes.Clone(b.Get(c.ID[:]))
			b.Put(a.ID[:], vc)
			b.Put(c.ID[:], va)
			return a
		}},
	}
	for _, tc := range corruptions {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(data, pristine, 0o600)
			db, err := bolt.Open(data, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			var at eventlog.Event
			db.Update(func(tx *bolt.Tx) error { at = tc.edit(tx); return nil })
			db.Close()
			code, out, _ := roomlog(t, nil, "verify", "--data", data)
			want := fmt.Sprintf("BROKEN: room %s, event %s: ", at.Room, at.ID)
			if code != 1 || !strings.HasPrefix(out, want) {
				t.Fatalf("exit %d %q, want exit 1 and %q", code, out, want)
			}
		})
	}
}

func TestOnlineCommandsAndBackup(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "live.db")
	evs, _ := auditLog(t, data)
	p := startProc(t, data)
	server := "http://" + p.addr
	admin := crashToken(t, "auditor", true)
	env := []string{"ROOMLOG_TOKEN=" + admin}

	// The file is locked by the server: offline commands say what to do instead.
	code, _, stderr := roomlog(t, nil, "replay", "--data", data)
	if code != 1 || !strings.Contains(stderr, "in use by a running server") || !strings.Contains(stderr, "--server") || !strings.Contains(stderr, "roomlog backup") {
		t.Fatalf("replay of a locked file: exit %d: %s", code, stderr)
	}
	// Online replay, with a filter.
	code, out, stderr := roomlog(t, env, "replay", "--server", server, "--room", "doc:*", "--user", "ann")
	want := idsWhere(evs, func(e eventlog.Event) bool { return strings.HasPrefix(e.Room, "doc:") && e.User == "ann" })
	if got := jsonlIDs(t, out); code != 0 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("online replay: exit %d, %d events, want %d: %s", code, len(got), len(want), stderr)
	}
	// A token the server refuses.
	code, _, stderr = roomlog(t, []string{"ROOMLOG_TOKEN=" + crashToken(t, "nobody", false)}, "replay", "--server", server)
	if code != 1 || !strings.Contains(stderr, "the server refused") {
		t.Fatalf("non-admin token: exit %d: %s", code, stderr)
	}
	code, out, _ = roomlog(t, env, "verify", "--server", server)
	if code != 0 || !strings.HasPrefix(out, "intact: 3 rooms") {
		t.Fatalf("online verify: %d %q", code, out)
	}
	// rooms, with a member online.
	ws := wsConnect(t, p.addr, crashToken(t, "ann", false), "phone")
	ws.WriteJSON(map[string]any{"type": "join", "ref": "j", "room": "chat"})
	var joined map[string]any
	ws.ReadJSON(&joined)
	code, out, _ = roomlog(t, env, "rooms", "--server", server)
	if code != 0 || !strings.Contains(out, "ROOM") || !regexpMatch(`(?m)^chat\s+21\s+.*\s1$`, out) || !regexpMatch(`(?m)^doc:1\s+20\s+.*\s0$`, out) {
		t.Fatalf("online rooms:\n%s", out)
	}
	ws.Close()

	// --follow streams events published while it runs.
	follow := exec.Command(os.Args[0], "replay", "--server", server, "--room", "live", "--follow", "--format", "jsonl")
	follow.Env = append(os.Environ(), "ROOMLOG_RUN_MAIN=1", "ROOMLOG_TOKEN="+admin)
	stdout, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	pub := crashToken(t, "svc", false)
	for i := range 3 {
		req, _ := http.NewRequest("POST", server+"/v1/rooms/live/events", strings.NewReader(fmt.Sprintf(`{"body":{"i":%d}}`, i)))
		req.Header.Set("Authorization", "Bearer "+pub)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("publish: %v %v", resp, err)
		}
		resp.Body.Close()
		if !lines.Scan() || !strings.Contains(lines.Text(), fmt.Sprintf(`"body":{"i":%d}`, i)) {
			t.Fatalf("--follow line %d: %q", i, lines.Text())
		}
	}
	follow.Process.Signal(syscall.SIGINT)
	if err := follow.Wait(); err != nil {
		t.Fatalf("--follow after SIGINT: %v", err)
	}

	// A hot backup under write load.
	stop := make(chan struct{})
	writerDone := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				writerDone <- n
				return
			default:
			}
			req, _ := http.NewRequest("POST", server+"/v1/rooms/busy/events", strings.NewReader(`{"body":1}`))
			req.Header.Set("Authorization", "Bearer "+pub)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				n++
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	backup := filepath.Join(dir, "hot.db")
	code, out, stderr = roomlog(t, env, "backup", "--server", server, "--out", backup)
	close(stop)
	n := <-writerDone
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("hot backup: exit %d %q %s", code, out, stderr)
	}
	code, out, _ = roomlog(t, nil, "verify", "--data", backup)
	if code != 0 || !strings.HasPrefix(out, "intact: ") {
		t.Fatalf("the backup does not verify: %q", out)
	}
	t.Logf("hot backup taken while %d events were published: %s", n, out)
	if code, _, stderr := roomlog(t, env, "backup", "--server", server, "--out", backup); code != 1 || !strings.Contains(stderr, "exists") {
		t.Fatalf("backup over an existing file: exit %d %s", code, stderr)
	}

	// Idle backup of a stopped server's file, which stays unchanged.
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	before := sum(t, data)
	idle := filepath.Join(dir, "idle.db")
	if code, out, stderr := roomlog(t, nil, "backup", "--data", data, "--out", idle); code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("idle backup: %d %q %s", code, out, stderr)
	}
	roomlog(t, nil, "rooms", "--data", data)
	roomlog(t, nil, "verify", "--data", data)
	if sum(t, data) != before {
		t.Fatalf("read-only commands changed the data file")
	}
}

func TestAuditBadInput(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "ok.db")
	auditLog(t, data)
	text := filepath.Join(dir, "text.db")
	os.WriteFile(text, []byte(strings.Repeat("not a log\n", 1000)), 0o600)
	future := filepath.Join(dir, "future.db")
	b, _ := os.ReadFile(data)
	os.WriteFile(future, b, 0o600)
	db, _ := bolt.Open(future, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("format"), binary.BigEndian.AppendUint32(nil, 7))
	})
	db.Close()
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing file", []string{"replay", "--data", filepath.Join(dir, "none.db")}, 1, "does not exist"},
		{"not a log", []string{"verify", "--data", text}, 1, "not a roomlog data file"},
		{"future format", []string{"rooms", "--data", future}, 1, "unknown data file format version"},
		{"bad since", []string{"replay", "--data", data, "--since", "last tuesday"}, 2, "neither an RFC 3339 time"},
		{"bad after", []string{"replay", "--data", data, "--after", "xyz"}, 2, "not a ULID"},
		{"bad room", []string{"replay", "--data", data, "--room", "a b"}, 2, "bad room name"},
		{"bad format", []string{"replay", "--data", data, "--format", "xml"}, 2, "--format must be jsonl or text"},
		{"follow offline", []string{"replay", "--data", data, "--follow"}, 2, "--follow needs --server"},
		{"both sources", []string{"rooms", "--data", data, "--server", "http://127.0.0.1:1"}, 2, "not several"},
		{"no source", []string{"verify"}, 2, "give --data FILE"},
		{"server without token", []string{"verify", "--server", "http://127.0.0.1:1"}, 2, "--server needs --token"},
		{"server unreachable", []string{"verify", "--server", "http://127.0.0.1:1", "--token", "x"}, 1, "cannot reach the server"},
		{"backup without out", []string{"backup", "--data", data}, 2, "--out FILE is required"},
		{"unknown flag", []string{"rooms", "--colour"}, 2, "flag provided but not defined"},
	}
	before := sum(t, data)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := roomlog(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q on one line", code, stderr, tc.code, tc.want)
			}
		})
	}
	if sum(t, data) != before {
		t.Fatalf("bad input changed the data file")
	}
}

// Every command that opens a data file refuses a damaged one with one line naming the file and the
// damage, and exits non-zero: no SIGBUS, no panic, no partial output.
func TestCommandsRefuseDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	auditLog(t, good)
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	damaged := map[string][]byte{
		"empty":     nil,
		"truncated": b[:3*4096+100],
		"garbage":   bytes.Repeat([]byte{0xab}, 64<<10),
	}
	overwritten := bytes.Clone(b)
	for i := 2 * 4096; i < 3*4096; i++ {
		overwritten[i] = byte(i * 7)
	}
	damaged["overwritten page"] = overwritten
	for name, content := range damaged {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".db")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"verify", "--data", path},
			{"replay", "--data", path},
			{"rooms", "--data", path},
			{"backup", "--data", path, "--out", filepath.Join(dir, "copy.db")},
			{"serve", "--data", path, "--addr", "127.0.0.1:0", "--jwt-secret", servertest.Secret},
		} {
			code, stdout, stderr := roomlog(t, nil, args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if args[0] == "serve" {
				lines = lines[len(lines)-1:] // after the start-up log lines
			}
			if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], path) || stdout != "" ||
				strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
				t.Errorf("%s: %v: exit %d, stdout %q, stderr:\n%s", name, args[:1], code, stdout, stderr)
			}
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
			t.Errorf("%s: the refused file was changed", name)
		}
	}
}

// TestHeadsAnchorTheTail: a room cut back to an earlier event, its head entry rewritten to match,
// passes verify (an unanchored chain cannot show it) but fails verify --heads with the anchors
// roomlog heads printed before; offline and through a live server alike.
func TestHeadsAnchorTheTail(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "h.db")
	appendN := func(room string, n int) []eventlog.Event {
		l, err := boltlog.Open(data, boltlog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var out []eventlog.Event
		for i := range n {
			r, err := l.Append(context.Background(), eventlog.AppendRequest{Room: room, User: "ann", Body: json.RawMessage(fmt.Sprint(i))})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r.Event)
		}
		return out
	}
	rawHead := func(room string) []byte {
		db, err := bolt.Open(data, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v []byte
		db.View(func(tx *bolt.Tx) error {
			v = bytes.Clone(tx.Bucket([]byte("rooms")).Bucket([]byte(room)).Get(bytes.Repeat([]byte{0xff}, 17)))
			return nil
		})
		return v
	}
	appendN("doc:a", 5)
	appendN("doc:b", 3)
	earlier := rawHead("doc:a")
	cut := appendN("doc:a", 2)

	code, heads, stderr := roomlog(t, nil, "heads", "--data", data)
	if code != 0 || strings.Count(heads, "\n") != 2 || !strings.Contains(heads, `"room":"doc:a","count":7,"id":"`+cut[1].ID.String()+`"`) {
		t.Fatalf("heads: exit %d\n%s%s", code, heads, stderr)
	}
	anchors := filepath.Join(dir, "heads.jsonl")
	os.WriteFile(anchors, []byte(heads), 0o600)
	appendN("doc:a", 1) // the log goes on after the anchors were taken
	if code, out, _ := roomlog(t, nil, "verify", "--data", data, "--heads", anchors); code != 0 || !strings.Contains(out, "all 2 anchors") {
		t.Fatalf("verify --heads of an intact log: exit %d %q", code, out)
	}

	// Online: the same anchors through the server.
	p := startProc(t, data)
	env := []string{"ROOMLOG_TOKEN=" + crashToken(t, "auditor", true)}
	code, online, _ := roomlog(t, env, "heads", "--server", "http://"+p.addr)
	if code != 0 || !strings.Contains(online, `"room":"doc:b","count":3`) || !strings.Contains(online, `"room":"doc:a","count":8`) {
		t.Fatalf("online heads: exit %d\n%s", code, online)
	}
	if code, out, _ := roomlog(t, env, "verify", "--server", "http://"+p.addr, "--heads", anchors); code != 0 || !strings.Contains(out, "all 2 anchors") {
		t.Fatalf("online verify --heads: exit %d %q", code, out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done

	// Cut doc:a back to its fifth event and make its head entry say so.
	db, err := bolt.Open(data, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("rooms")).Bucket([]byte("doc:a"))
		c := b.Cursor()
		var ids [][]byte
		for k, _ := c.Seek(cut[0].ID[:]); len(k) == 16; k, _ = c.Next() {
			ids = append(ids, bytes.Clone(k))
		}
		for _, k := range ids {
			b.Delete(k)
		}
		return b.Put(bytes.Repeat([]byte{0xff}, 17), earlier)
	})
	db.Close()
	if code, out, _ := roomlog(t, nil, "verify", "--data", data); code != 0 {
		t.Fatalf("without anchors the cut was expected to pass: exit %d %q", code, out)
	}
	code, out, _ := roomlog(t, nil, "verify", "--data", data, "--heads", anchors)
	if code != 1 || !strings.Contains(out, "BROKEN: room doc:a") || !strings.Contains(out, "cut from its end") {
		t.Fatalf("verify --heads after a cut: exit %d %q", code, out)
	}

	// A bad anchors file is a usage error naming the line.
	os.WriteFile(anchors, []byte(heads+`{"room":"doc:a","count":1,"id":"nope","hash":""}`+"\n"), 0o600)
	if code, _, stderr := roomlog(t, nil, "verify", "--data", data, "--heads", anchors); code != 2 || !strings.Contains(stderr, "line 3") {
		t.Fatalf("bad anchors file: exit %d %q", code, stderr)
	}
}
