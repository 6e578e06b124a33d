package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/roomlog/roomlog/auth"
)

func TestGrants(t *testing.T) {
	g := auth.Grants{User: "alice", Rooms: []string{"doc:*", "chat"}, ReadRooms: []string{"news"}}
	for _, c := range []struct {
		room        string
		read, write bool
	}{
		{"doc:1", true, true}, {"doc:", true, true}, {"chat", true, true}, {"chat2", false, false},
		{"news", true, false}, {"user:alice", true, false}, {"user:bob", false, false}, {"do", false, false},
	} {
		if g.CanRead(c.room) != c.read || g.CanWrite(c.room) != c.write {
			t.Errorf("%s: read %v write %v, want %v %v", c.room, g.CanRead(c.room), g.CanWrite(c.room), c.read, c.write)
		}
	}
	all := auth.Grants{User: "x", Rooms: []string{"*"}}
	if !all.CanWrite("anything") || all.Authorize(auth.Operate, "") == nil {
		t.Errorf("'*' grants")
	}
}

// TestAuthorize: every room action, decided by one call, for each kind of token: what each
// allows, and that a refusal is a *Refusal wrapping ErrForbidden with a reason.
func TestAuthorize(t *testing.T) {
	tokens := map[string]auth.Grants{
		"nobody":   {User: "nobody"},
		"reader":   {User: "r", ReadRooms: []string{"doc:*"}},
		"writer":   {User: "w", Rooms: []string{"doc:*"}},
		"snapshot": {User: "s", Rooms: []string{"doc:*"}, SnapshotRooms: []string{"doc:*"}},
		"admin":    {User: "a", Admin: true},
	}
	// What each token may do in doc:1, by action.
	want := map[auth.Action]string{
		auth.Join:     "reader writer snapshot",
		auth.History:  "reader writer snapshot",
		auth.Receipt:  "reader writer snapshot",
		auth.Publish:  "writer snapshot",
		auth.Snapshot: "snapshot",
		auth.Read:     "reader writer snapshot admin",
		auth.Operate:  "admin",
	}
	for action, allowed := range want {
		for name, g := range tokens {
			err := g.Authorize(action, "doc:1")
			ok := strings.Contains(" "+allowed+" ", " "+name+" ")
			var why *auth.Refusal
			switch {
			case ok && err != nil:
				t.Errorf("action %d, %s: refused: %v", action, name, err)
			case !ok && (!errors.Is(err, auth.ErrForbidden) || !errors.As(err, &why) || why.Reason == ""):
				t.Errorf("action %d, %s: %v, want a refusal with a reason", action, name, err)
			}
		}
	}
	if err := (&auth.Grants{User: "nobody"}).Authorize(auth.Join, "user:nobody"); err != nil {
		t.Errorf("the personal room: %v", err)
	}
	if auth.PublishAction("snapshot") != auth.Snapshot || auth.PublishAction("message") != auth.Publish {
		t.Errorf("PublishAction")
	}
}
