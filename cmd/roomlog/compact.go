package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/internal/adminapi"
)

func compactCmd(args []string) int {
	c := newCommand("compact", "Removes the events a room's latest snapshot covers, to bound the data file; the room's chain still verifies (from the compaction's floor) and the compaction is recorded in the room as an event of kind compaction.")
	src := addSource(c)
	room := c.String("room", "ROOMLOG_COMPACT_ROOM", "", "the room to compact (required)")
	by := c.String("by", "ROOMLOG_COMPACT_BY", "", "who compacts, as recorded (offline; default cli:<your user name>); online it is the token's subject")
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err != nil {
		return usageError("compact", err)
	}
	if *room == "" {
		return usageError("compact", errors.New("--room is required"))
	}
	if err := eventlog.ValidRoom(*room); err != nil {
		return usageError("compact", err)
	}
	var res adminapi.CompactResult
	if online {
		body, err := src.request("POST", "/v1/rooms/"+url.PathEscape(*room)+"/compact", nil, nil)
		if err != nil {
			return fail("compact", err)
		}
		defer body.Close()
		if err := json.NewDecoder(body).Decode(&res); err != nil {
			return fail("compact", fmt.Errorf("reading the server's answer: %v", err))
		}
	} else {
		if *by == "" {
			*by = "cli"
			if u, err := user.Current(); err == nil {
				*by = "cli:" + u.Username
			}
		}
		if _, err := os.Stat(*src.data); err != nil { // Open would make a new file
			return fail("compact", fmt.Errorf("%s: %v", *src.data, errors.Unwrap(err)))
		}
		l, err := boltlog.Open(*src.data, boltlog.Options{LockTimeout: 500 * time.Millisecond})
		switch {
		case errors.Is(err, boltlog.ErrLocked):
			return fail("compact", fmt.Errorf("%s is in use by a running server: compact through it with --server URL --token JWT", *src.data))
		case err != nil:
			return fail("compact", err)
		}
		defer l.Close()
		r, err := l.Compact(context.Background(), *room, *by)
		if errors.Is(err, eventlog.ErrNoSnapshot) {
			return fail("compact", fmt.Errorf("room %q has no snapshot to compact to", *room))
		}
		if err != nil {
			return fail("compact", err)
		}
		res = adminapi.NewCompactResult(*room, r)
	}
	if res.Removed == 0 {
		fmt.Printf("nothing to compact: %s is compacted to its latest snapshot %s (by %q) already (floor: event %d)\n", res.Room, res.Snapshot, res.SnapshotBy, res.FloorCount)
		return 0
	}
	fmt.Printf("compacted %s to snapshot %s by %q: removed %d events; the room now starts after event %d (%s); recorded as event %s\n",
		res.Room, res.Snapshot, res.SnapshotBy, res.Removed, res.FloorCount, res.Floor, res.Record)
	return 0
}
