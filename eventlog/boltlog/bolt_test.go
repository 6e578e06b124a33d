package boltlog_test

import (
	"path/filepath"
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/internal/faultfs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	faultfs.ServeIfDaemon()
	if runCrashChild() || runCompactChild() {
		return
	}
	goleak.VerifyTestMain(m)
}

// boltBackend runs the conformance suite on real files in the test's temporary directory.
func boltBackend() logtest.Backend {
	paths := map[eventlog.Store]openArgs{}
	return logtest.Backend{
		Open: func(t testing.TB, cfg logtest.Config) eventlog.Store {
			args := openArgs{
				path: filepath.Join(t.TempDir(), "room.log"),
				opts: boltlog.Options{KeyRetention: cfg.KeyRetention, MaxBody: cfg.MaxBody, Now: cfg.Now},
			}
			l, err := boltlog.Open(args.path, args.opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			paths[l] = args
			return l
		},
		Reopen: func(t testing.TB, l eventlog.Store) eventlog.Store {
			args := paths[l]
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			nl, err := boltlog.Open(args.path, args.opts)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			paths[nl] = args
			return nl
		},
	}
}

type openArgs struct {
	path string
	opts boltlog.Options
}

func TestBoltConformance(t *testing.T) {
	logtest.Run(t, boltBackend())
}
