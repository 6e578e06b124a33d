package servertest

import (
	"context"
	"testing"

	"github.com/roomlog/roomlog/eventlog/boltlog"
)

// OpenData opens the data file a stopped process left, read-only, and fails the test unless
// every room's chain in it verifies. The log is closed when the test ends.
func OpenData(t testing.TB, path string) *boltlog.Log {
	t.Helper()
	l, err := boltlog.Open(path, boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the data file the server left: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	if rep, err := l.Verify(context.Background(), ""); err != nil || rep.Broken != nil {
		t.Fatalf("verify the data file the server left: %+v %v", rep.Broken, err)
	}
	return l
}
