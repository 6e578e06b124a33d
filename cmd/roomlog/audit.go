package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/adminapi"
	"github.com/roomlog/roomlog/replay"
	"github.com/roomlog/roomlog/wire"
)

// roomsFlag collects repeated --room flags.
type roomsFlag []string

func (r *roomsFlag) String() string     { return strings.Join(*r, ",") }
func (r *roomsFlag) Set(v string) error { *r = append(*r, v); return nil }

func replayCmd(args []string) int {
	c := newCommand("replay", "Prints events, oldest first, from a data file, a live server or a JetStream log, filtered.")
	src := addSource(c).withNATS(c)
	var roomPatterns roomsFlag
	c.fs.Var(&roomPatterns, "room", "room name or prefix pattern ending in '*'; repeatable")
	user := c.String("user", "ROOMLOG_REPLAY_USER", "", "only events by this user")
	kind := c.String("kind", "ROOMLOG_REPLAY_KIND", "", "only events of this kind")
	since := c.String("since", "ROOMLOG_REPLAY_SINCE", "", "events at or after this RFC 3339 time or event id")
	until := c.String("until", "ROOMLOG_REPLAY_UNTIL", "", "events before this RFC 3339 time or event id")
	after := c.String("after", "ROOMLOG_REPLAY_AFTER", "", "events after this event id")
	limit := c.Int("limit", "ROOMLOG_REPLAY_LIMIT", 0, "at most this many events (0: all)")
	format := c.String("format", "ROOMLOG_REPLAY_FORMAT", "", "jsonl or text (default: text on a terminal, jsonl otherwise)")
	follow := c.Bool("follow", "ROOMLOG_REPLAY_FOLLOW", false, "keep printing new events until interrupted (with --server)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err != nil {
		return usageError("replay", err)
	}
	if *limit < 0 {
		return usageError("replay", errors.New("--limit must be 0 or positive"))
	}
	if *format == "" {
		*format = "jsonl"
		if isTerminal(os.Stdout) {
			*format = "text"
		}
	}
	if *format != "jsonl" && *format != "text" {
		return usageError("replay", fmt.Errorf("--format must be jsonl or text, not %q", *format))
	}
	if *follow && !online {
		return usageError("replay", errors.New("--follow needs --server: a data file in use is read through its server"))
	}
	fargs := replay.FilterArgs{Rooms: roomPatterns, User: *user, Kind: *kind, Since: *since, Until: *until, After: *after}
	if *limit > 0 {
		fargs.Limit = fmt.Sprint(*limit)
	}
	f, err := replay.ParseFilter(fargs)
	if err != nil {
		return usageError("replay", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer out.Flush()
	print := eventPrinter(out, *format)
	if online {
		q := url.Values{}
		for _, r := range f.Rooms {
			q.Add("room", r)
		}
		for k, v := range map[string]string{"user": *user, "kind": *kind, "since": *since, "until": *until, "after": *after, "limit": fargs.Limit} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if *follow {
			q.Set("follow", "true")
		}
		if err := replayFromServer(ctx, src, q, print, *follow, out); err != nil {
			return fail("replay", err)
		}
		return 0
	}
	l, err := src.openAudit()
	if err != nil {
		return fail("replay", err)
	}
	defer l.Close()
	err = replay.Audit(ctx, l, f, false, func(e *eventlog.Event) error { return print(e) }, out.Flush)
	if err != nil && ctx.Err() == nil {
		return fail("replay", err)
	}
	return 0
}

// replayFromServer prints the events the server at src answers /v1/events?q with, flushing out
// after each when following, until the answer ends or ctx is done.
func replayFromServer(ctx context.Context, src source, q url.Values, print func(*eventlog.Event) error, follow bool, out *bufio.Writer) error {
	body, err := src.get("/v1/events", q)
	if err != nil {
		return err
	}
	defer body.Close()
	go func() { <-ctx.Done(); body.Close() }()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		e, err := decodeEventLine(sc.Bytes())
		if err != nil {
			return fmt.Errorf("the server sent a line that is not an event: %v", err)
		}
		if err := print(&e); err != nil {
			return err
		}
		if follow {
			out.Flush()
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// timestamp is the time of id as an event's ts (2026-11-27T10:21:06.123Z).
func timestamp(id eventlog.ID) []byte { return wire.AppendTimestamp(nil, int64(id.Millis())) }

// eventPrinter writes one event a line as JSON or as aligned text columns.
func eventPrinter(w *bufio.Writer, format string) func(*eventlog.Event) error {
	var buf []byte
	if format == "jsonl" {
		return func(e *eventlog.Event) error {
			st := wire.StoredEvent{ID: e.ID, Room: e.Room, Kind: e.Kind, User: e.User, Session: e.Session, Key: e.Key, Body: e.Body}
			buf = append(wire.AppendEventJSON(buf[:0], &st), '\n')
			_, err := w.Write(buf)
			return err
		}
	}
	return func(e *eventlog.Event) error {
		body := string(e.Body)
		if len(body) > 100 {
			body = body[:97] + "..."
		}
		_, err := fmt.Fprintf(w, "%s  %-20s %-14s %-10s %s\n", timestamp(e.ID), e.Room, e.User, e.Kind, body)
		return err
	}
}

// decodeEventLine reads an event object as the HTTP API sends it.
func decodeEventLine(b []byte) (eventlog.Event, error) {
	var v struct {
		Room, ID, Kind, User, Session, Key string
		Body                               json.RawMessage
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return eventlog.Event{}, err
	}
	id, err := eventlog.ParseID(v.ID)
	if err != nil {
		return eventlog.Event{}, err
	}
	return eventlog.Event{ID: id, Room: v.Room, Kind: v.Kind, User: v.User, Session: v.Session, Key: v.Key, Body: v.Body}, nil
}

func usageError(cmd string, err error) int {
	fmt.Fprintf(os.Stderr, "roomlog %s: %v (see 'roomlog %s --help')\n", cmd, err, cmd)
	return 2
}

func verifyCmd(args []string) int {
	c := newCommand("verify", "Walks every room's hash chain and id order; exit 0 when intact, 1 naming the first broken event.")
	src := addSource(c).withNATS(c)
	room := c.String("room", "ROOMLOG_VERIFY_ROOM", "", "verify only this room")
	headsFile := c.String("heads", "ROOMLOG_VERIFY_HEADS", "", "a file of anchors from 'roomlog heads': each must still be in the log, chained")
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err != nil {
		return usageError("verify", err)
	}
	if *room != "" {
		if err := eventlog.ValidRoom(*room); err != nil {
			return usageError("verify", err)
		}
	}
	var anchors []eventlog.Anchor
	if *headsFile != "" {
		if anchors, err = readAnchorFile(*headsFile); err != nil {
			return usageError("verify", err)
		}
	}
	var res adminapi.VerifyResult
	if online {
		q := url.Values{}
		if *room != "" {
			q.Set("room", *room)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, a := range anchors {
			enc.Encode(a)
		}
		body, err := src.request("POST", "/v1/verify", q, &buf)
		if err != nil {
			return fail("verify", err)
		}
		defer body.Close()
		if err := json.NewDecoder(body).Decode(&res); err != nil {
			return fail("verify", fmt.Errorf("reading the server's answer: %v", err))
		}
	} else {
		l, err := src.openAudit()
		if err != nil {
			return fail("verify", err)
		}
		defer l.Close()
		rep, err := verifyWithProgress(l, *room, anchors)
		if err != nil {
			return fail("verify", err)
		}
		res = adminapi.NewVerifyResult(rep)
	}
	if b := res.Broken; b != nil {
		fmt.Printf("BROKEN: room %s, event %s: %s\n", b.Room, b.ID, b.Reason)
		return 1
	}
	span := "no events"
	if res.First != "" {
		first, _ := eventlog.ParseID(res.First)
		last, _ := eventlog.ParseID(res.Last)
		span = fmt.Sprintf("from %s to %s", timestamp(first), timestamp(last))
	}
	anchored := ""
	if len(anchors) > 0 {
		anchored = fmt.Sprintf("; all %d anchors from %s are in the log, chained", len(anchors), *headsFile)
	}
	fmt.Printf("intact: %d rooms, %d events, %s%s\n", res.Rooms, res.Events, span, anchored)
	return 0
}

// readAnchorFile reads the anchors 'roomlog heads' printed.
func readAnchorFile(path string) ([]eventlog.Anchor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--heads: %v", err)
	}
	defer f.Close()
	anchors, err := eventlog.ReadAnchors(f)
	if err != nil {
		return nil, fmt.Errorf("--heads %s: %v", path, err)
	}
	return anchors, nil
}

func headsCmd(args []string) int {
	c := newCommand("heads", "Prints each room's head as a JSON line {room, count, id, hash}: anchors to keep apart from the data file. 'roomlog verify --heads FILE' later checks the log still holds them, so a room cut back to an earlier event shows.")
	src := addSource(c).withNATS(c)
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err != nil {
		return usageError("heads", err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	err = listRooms(src, online, func() {}, func(r adminapi.RoomListing) error {
		a, err := anchorOf(r)
		if err != nil {
			return fmt.Errorf("the listing of %q: %v", r.Room, err)
		}
		return enc.Encode(a)
	})
	if err != nil {
		return fail("heads", err)
	}
	return 0
}

// anchorOf reads the anchor in a room listing of the HTTP API.
func anchorOf(r adminapi.RoomListing) (eventlog.Anchor, error) {
	var a eventlog.Anchor
	line, _ := json.Marshal(map[string]any{"room": r.Room, "count": r.Events, "id": r.Last, "hash": r.Hash})
	err := json.Unmarshal(line, &a)
	return a, err
}

// verifyWithProgress verifies room by room, reporting progress on stderr when it is a terminal
// and the log is large.
func verifyWithProgress(l auditableLog, room string, anchors []eventlog.Anchor) (eventlog.VerifyReport, error) {
	ctx := context.Background()
	if room != "" || len(anchors) > 0 || !isTerminal(os.Stderr) {
		return l.Verify(ctx, room, anchors...)
	}
	var names []string
	var total uint64
	if err := l.Rooms(ctx, func(r eventlog.RoomInfo) error {
		names = append(names, r.Name)
		total += r.Count
		return nil
	}); err != nil {
		return eventlog.VerifyReport{}, err
	}
	var rep eventlog.VerifyReport
	last := time.Now()
	for i, name := range names {
		r, err := l.Verify(ctx, name)
		if err != nil {
			return rep, err
		}
		rep.Rooms += r.Rooms
		rep.Events += r.Events
		if rep.First.IsZero() || (!r.First.IsZero() && r.First.Compare(rep.First) < 0) {
			rep.First = r.First
		}
		if r.Last.Compare(rep.Last) > 0 {
			rep.Last = r.Last
		}
		if r.Broken != nil {
			rep.Broken = r.Broken
			break
		}
		if total > 1_000_000 && time.Since(last) > 500*time.Millisecond {
			fmt.Fprintf(os.Stderr, "\rverifying: %d of %d rooms, %d of %d events", i+1, len(names), rep.Events, total)
			last = time.Now()
		}
	}
	if total > 1_000_000 {
		fmt.Fprintln(os.Stderr)
	}
	return rep, nil
}

func roomsCmd(args []string) int {
	c := newCommand("rooms", "Lists the rooms: name, events, first and last event time, head id, members online.")
	src := addSource(c).withNATS(c)
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err != nil {
		return usageError("rooms", err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	header := func() {
		fmt.Fprintf(out, "%-24s %8s  %-24s  %-24s  %-26s %s\n", "ROOM", "EVENTS", "FIRST", "LAST", "HEAD", "MEMBERS")
	}
	line := func(r adminapi.RoomListing) {
		first, _ := eventlog.ParseID(r.First)
		last, _ := eventlog.ParseID(r.Last)
		fmt.Fprintf(out, "%-24s %8d  %-24s  %-24s  %-26s %d\n", r.Room, r.Events, timestamp(first), timestamp(last), r.Last, r.Members)
	}
	if err := listRooms(src, online, header, func(r adminapi.RoomListing) error { line(r); return nil }); err != nil {
		return fail("rooms", err)
	}
	return 0
}

// listRooms calls each for every room, from the server's /v1/rooms or from the data file, after
// begin once the source is open. Offline, "members" are the sessions the log records as joined
// (after a crash, those the next start will close).
func listRooms(src source, online bool, begin func(), each func(adminapi.RoomListing) error) error {
	if online {
		body, err := src.get("/v1/rooms", nil)
		if err != nil {
			return err
		}
		defer body.Close()
		begin()
		dec := json.NewDecoder(body)
		for {
			var r adminapi.RoomListing
			if err := dec.Decode(&r); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("reading the server's answer: %v", err)
			}
			if err := each(r); err != nil {
				return err
			}
		}
	}
	l, err := src.openAudit()
	if err != nil {
		return err
	}
	defer l.Close()
	begin()
	members := map[string]int{}
	ctx := context.Background()
	if err := l.Sessions(ctx, func(s eventlog.Session) error { members[s.Room]++; return nil }); err != nil {
		return err
	}
	return l.Rooms(ctx, func(r eventlog.RoomInfo) error { return each(adminapi.NewRoomListing(r, members[r.Name])) })
}

func backupCmd(args []string) int {
	c := newCommand("backup", "Takes a consistent copy of a live server's data file (--server) or of an idle one (--data), then verifies the copy.")
	src := addSource(c)
	outPath := c.String("out", "ROOMLOG_BACKUP_OUT", "", "file to write the copy to (must not exist)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err != nil {
		return usageError("backup", err)
	}
	if *outPath == "" {
		return usageError("backup", errors.New("--out FILE is required"))
	}
	out, err := os.OpenFile(*outPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail("backup", err)
	}
	var n int64
	if online {
		body, err := src.get("/v1/backup", nil)
		if err == nil {
			n, err = io.Copy(out, body)
			body.Close()
		}
		if err != nil {
			out.Close()
			os.Remove(*outPath)
			return fail("backup", err)
		}
	} else {
		l, err := src.open()
		if err == nil {
			n, err = l.WriteTo(out)
			l.Close()
		}
		if err != nil {
			out.Close()
			os.Remove(*outPath)
			return fail("backup", err)
		}
	}
	if err := errors.Join(out.Sync(), out.Close()); err != nil {
		return fail("backup", err)
	}
	// The copy must open and verify, or it is not a backup.
	copyLog, err := boltlog.Open(*outPath, boltlog.Options{ReadOnly: true})
	if err != nil {
		return fail("backup", fmt.Errorf("the copy in %s does not open: %v", *outPath, err))
	}
	defer copyLog.Close()
	rep, err := copyLog.Verify(context.Background(), "")
	if err != nil || rep.Broken != nil {
		return fail("backup", fmt.Errorf("the copy in %s does not verify: %v %+v", *outPath, err, rep.Broken))
	}
	fmt.Printf("backup: %s, %d bytes, %d rooms, %d events, verified\n", *outPath, n, rep.Rooms, rep.Events)
	return 0
}
