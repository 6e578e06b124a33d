package eventlog_test

import (
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
)

// TestMemConformance runs the conformance suite on the in-memory backend: the same promises as
// the file's, but those of persistence (the suite skips Reopen for it).
func TestMemConformance(t *testing.T) {
	logtest.Run(t, logtest.Backend{
		Open: func(t testing.TB, cfg logtest.Config) eventlog.Store {
			return eventlog.NewMemLog(eventlog.Options{KeyRetention: cfg.KeyRetention, MaxBody: cfg.MaxBody, Now: cfg.Now})
		},
	})
}
