// Command sharing is a small application backend beside roomlog: it owns who may open which
// document (a sharing table in a bbolt file), answers roomlog's join hook from it, and when a
// document is unshared, removes the person from the document's room through roomlog's admin API,
// so that their open editor is told at once. It also takes roomlog's webhook and projects the
// events into its own table (each document's last activity, GET /activity).
//
// Run roomlog with the hook pointing here, then this:
//
//	roomlog serve --jwt-secret $JWT --hook-url http://127.0.0.1:8080/hook --hook-secret $HOOK --hook-rooms 'doc:*' \
//	  --webhook sharing=http://127.0.0.1:8080/webhook --webhook-rooms 'sharing=doc:*'
//	go run ./examples/sharing --hook-secret $HOOK --admin-token "$(roomlog token --secret $JWT --sub sharing --admin)"
//
// and share with curl:
//
//	curl -X POST localhost:8080/share -d '{"room":"doc:1","user":"alice","access":"write"}'
//	curl -X POST localhost:8080/unshare -d '{"room":"doc:1","user":"alice"}'
//
// The sharing endpoints have no authentication of their own here: in a real application they are
// behind its login, and only the document's owner shares it.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", env("SHARING_ADDR", "127.0.0.1:8080"), "listen address (env SHARING_ADDR)")
	data := flag.String("data", env("SHARING_DATA", "sharing.db"), "the sharing table's file (env SHARING_DATA)")
	roomlog := flag.String("roomlog", env("SHARING_ROOMLOG", "http://127.0.0.1:7070"), "roomlog's HTTP address (env SHARING_ROOMLOG)")
	secret := flag.String("hook-secret", os.Getenv("SHARING_HOOK_SECRET"), "roomlog's --hook-secret (env SHARING_HOOK_SECRET)")
	admin := flag.String("admin-token", os.Getenv("SHARING_ADMIN_TOKEN"), "a roomlog admin token, to remove people from rooms (env SHARING_ADMIN_TOKEN)")
	flag.Parse()
	if len(*secret) < 32 || *admin == "" {
		fmt.Fprintln(os.Stderr, "sharing: --hook-secret (32 bytes or more) and --admin-token are required")
		os.Exit(2)
	}
	table, err := openTable(*data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sharing:", err)
		os.Exit(1)
	}
	defer table.Close()
	app := &App{Table: table, Secret: []byte(*secret), Roomlog: *roomlog, AdminToken: *admin, Logger: slog.Default()}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sharing:", err)
		os.Exit(1)
	}
	slog.Info("sharing serving", "addr", "http://"+ln.Addr().String())
	srv := &http.Server{Handler: app.Handler(), ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, "sharing:", srv.Serve(ln))
	os.Exit(1)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
