package actions_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/roomlog/roomlog/actions"
	"github.com/roomlog/roomlog/eventlog/memlog"
	"go.uber.org/goleak"
)

// TestFollow: two nodes on one log: an action one takes reaches the other once, in order, and
// not the one that took it (it applied it itself); actions logged before a node started are
// not applied by it.
func TestFollow(t *testing.T) {
	l := memlog.New(memlog.Options{})
	defer l.Close()
	ctx := context.Background()
	early, err := actions.Follow(ctx, l, func(actions.Action) {}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := early.Take(ctx, actions.Action{Kind: actions.KindDisconnect, User: "old", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	early.Close()
	var mu sync.Mutex
	got := map[string][]string{}
	node := func(name string) *actions.Log {
		f, err := actions.Follow(ctx, l, func(a actions.Action) {
			mu.Lock()
			got[name] = append(got[name], a.Kind+" "+a.User)
			mu.Unlock()
		}, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		return f
	}
	a, _ := node("a"), node("b")
	if err := a.Take(ctx, actions.Action{Kind: actions.KindRemove, Room: "doc:1", User: "bob", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Take(ctx, actions.Action{Kind: actions.KindDisconnect, User: "carol", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Take(ctx, actions.Action{Kind: "explode", User: "x"}); err == nil {
		t.Error("an unknown kind was logged")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got["b"])
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a late repeat would show
	mu.Lock()
	defer mu.Unlock()
	if len(got["a"]) != 0 || len(got["b"]) != 2 || got["b"][0] != "remove bob" || got["b"][1] != "disconnect carol" {
		t.Fatalf("applied %v; want b to apply both, in order, and a neither", got)
	}
}

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
