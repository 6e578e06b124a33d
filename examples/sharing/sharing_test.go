package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/client"
	"github.com/roomlog/roomlog/internal/servertest"
)

const hookSecret = "the-sharing-example-hook-secret-32b"

var roomlogBin string

func TestMain(m *testing.M) {
	bin, remove := servertest.BuildForMain()
	roomlogBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// TestSharing runs the example as its README walks through it: a real roomlog serve asks the
// application (this package, on loopback) who may open each document. Shared people join and,
// with write access, edit; others are refused with the application's reason; unsharing removes
// a person from the open document at once, and their rejoin is refused. The webhook projects the
// document's events into the application's table. A hook request that is not signed with the
// secret is refused by the application.
func TestSharing(t *testing.T) {
	servertest.Long(t, "example test")
	table, err := openTable(filepath.Join(t.TempDir(), "sharing.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &App{Table: table, Secret: []byte(hookSecret), AdminToken: servertest.Token(t, auth.TokenSpec{Subject: "sharing", Admin: true}), Logger: slog.Default()}
	srv := &http.Server{Handler: app.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	appURL := "http://" + ln.Addr().String()

	p := servertest.Start(t, exec.Command(roomlogBin, "serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "rooms.db"),
		"--jwt-secret", servertest.Secret, "--hook-url", appURL+"/hook", "--hook-secret", hookSecret, "--hook-rooms", "doc:*",
		"--webhook", "sharing="+appURL+"/webhook", "--webhook-rooms", "sharing=doc:*"))
	app.Roomlog = "http://" + p.Addr

	post := func(path, body string) int {
		t.Helper()
		status, answer := servertest.Request(t, "POST", appURL+path, "", body)
		if status >= 300 {
			t.Logf("%s: %d %s", path, status, answer)
		}
		return status
	}
	if post("/share", `{"room":"doc:1","user":"alice","access":"write"}`) != 204 || post("/share", `{"room":"doc:1","user":"bob","access":"read"}`) != 204 {
		t.Fatal("share failed")
	}
	if post("/share", `{"room":"doc:1","user":"bob","access":"admin"}`) != 400 {
		t.Error("a bad access level was stored")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(user string) *client.Client {
		t.Helper()
		c, err := client.Dial(ctx, "ws://"+p.Addr+"/v1/ws", client.Options{
			Token:      func(context.Context) (string, error) { return servertest.NewToken(auth.TokenSpec{Subject: user}) }, // no room claims
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice, bob, carol := connect("alice"), connect("bob"), connect("carol")
	aliceDoc, err := alice.Join(ctx, "doc:1", client.JoinOptions{})
	if err != nil {
		t.Fatalf("alice's join: %v", err)
	}
	if _, err := alice.Publish(ctx, "doc:1", "", map[string]string{"text": "hello"}); err != nil {
		t.Fatalf("alice's edit: %v", err)
	}
	if _, err := bob.Join(ctx, "doc:1", client.JoinOptions{}); err != nil {
		t.Fatalf("bob's join: %v", err)
	}
	var refusal *client.Error
	if _, err := bob.Publish(ctx, "doc:1", "", "an edit"); !errors.As(err, &refusal) || refusal.Code != "forbidden" {
		t.Errorf("bob (read-only) edited: %v", err)
	}
	if _, err := carol.Join(ctx, "doc:1", client.JoinOptions{}); !errors.As(err, &refusal) || refusal.Message != "this document is not shared with you" {
		t.Errorf("carol's join: %v, want the application's refusal", err)
	}

	if post("/unshare", `{"room":"doc:1","user":"alice"}`) != 204 {
		t.Fatal("unshare failed")
	}
	for deadline := time.Now().Add(10 * time.Second); aliceDoc.Removed() == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alice was not removed from the open document")
		}
	}
	if got := aliceDoc.Removed(); got != "the document was unshared" {
		t.Errorf("removed because %q", got)
	}
	if _, err := alice.Join(ctx, "doc:1", client.JoinOptions{}); !errors.As(err, &refusal) || refusal.Code != "forbidden" {
		t.Errorf("alice rejoined an unshared document: %v", err)
	}

	// The webhook projected the document's events into the application's table: its last
	// activity is alice's removal (the leave the unshare wrote).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		all, err := table.Activity()
		if err != nil {
			t.Fatal(err)
		}
		if len(all) == 1 && all[0].Room == "doc:1" && all[0].Kind == "leave" && all[0].User == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projection holds %+v, want doc:1's last event, alice's leave", all)
		}
	}

	// The application refuses hook requests not signed with the secret.
	res, err := http.Post(appURL+"/hook", "application/json", strings.NewReader(`{"action":"join","user":"mallory","room":"doc:1"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unsigned hook request: %d %s", res.StatusCode, body)
	}
}
