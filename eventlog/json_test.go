package eventlog

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestAppendTSMatchesTimeFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		ms := rng.Int64N(253402300799999) // up to 9999-12-31
		id := MinIDAt(time.UnixMilli(ms))
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if got := string(AppendTimestamp(nil, id)); got != want {
			t.Fatalf("appendTS(%d) = %s, want %s", ms, got, want)
		}
	}
}

func TestAppendJSONIsValidAndComplete(t *testing.T) {
	id := MinIDAt(time.Date(2026, 11, 27, 10, 21, 6, 123e6, time.UTC))
	for _, e := range []Event{
		{ID: id, Room: "doc:42", Kind: "message", User: "alice", Session: "s1", Key: "c-17", Body: []byte(`{"text":"hi"}`)},
		{ID: id, Room: "r", Kind: "join", User: "quote\"back\\slash\ncontrol é"},
		{ID: id, Room: "r", Kind: "k", User: "u"},
	} {
		b := e.AppendJSON(nil)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if m["type"] != "event" || m["room"] != e.Room || m["id"] != e.ID.String() || m["user"] != e.User ||
			m["kind"] != e.Kind || m["ts"] != "2026-11-27T10:21:06.123Z" {
			t.Fatalf("%s decodes to %v", b, m)
		}
		if _, has := m["session"]; has != (e.Session != "") {
			t.Fatalf("%s: session presence", b)
		}
	}
}

// TestNameErrorsNameTheCharacter: a refused room or kind is explained with the character as the
// user typed it, not a byte of its UTF-8 encoding.
func TestNameErrorsNameTheCharacter(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ValidRoom("doc:café"), `"doc:café" has 'é' at byte 7`},
		{ValidRoom("a\xffb"), `has byte 0xff at byte 1`},
		{ValidRoom("a b"), `has ' ' at byte 1`},
		{ValidKind("Big"), `"Big" has 'B' at byte 0`},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("got %v, want it to say %s", tc.err, tc.want)
		}
	}
}
