// Command roomlog is roomlog's one binary: the server and the operator's tools. The logic lives
// in the library packages; each command parses flags, calls them and prints.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = `roomlog: an event-sourced real-time collaboration server.

Usage:
  roomlog serve [flags]    run the server
  roomlog token [flags]    print a signed HS256 token
  roomlog replay [flags]   print events from a data file or a live server, filtered
  roomlog verify [flags]   check the log's hash chains and order
  roomlog rooms [flags]    list the rooms
  roomlog heads [flags]    print each room's head and chain hash: anchors for verify --heads
  roomlog backup [flags]   copy a live server's or an idle data file, and verify the copy
  roomlog compact [flags]  remove the events a room's latest snapshot covers
  roomlog webhooks [flags] each webhook of a running server: cursor, pending events, last error
  roomlog bench SCENARIO   load-test a server: fanout, publish or resume
  roomlog version          print the version

Every flag has an environment variable (ROOMLOG_ADDR for --addr); the flag wins.
Run 'roomlog CMD --help' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "token":
		return token(args[1:])
	case "replay":
		return replayCmd(args[1:])
	case "verify":
		return verifyCmd(args[1:])
	case "rooms":
		return roomsCmd(args[1:])
	case "heads":
		return headsCmd(args[1:])
	case "backup":
		return backupCmd(args[1:])
	case "compact":
		return compactCmd(args[1:])
	case "webhooks":
		return webhooksCmd(args[1:])
	case "bench":
		return benchCmd(args[1:])
	case "version", "--version":
		fmt.Println("roomlog", version)
		return 0
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "roomlog: unknown command %q (commands: serve, token, replay, verify, rooms, heads, backup, compact, webhooks, bench, version; see 'roomlog --help')\n", args[0])
		return 2
	}
}
