package memlog_test

import (
	"testing"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/eventlog/memlog"
)

// TestConformance runs the conformance suite on the in-memory backend: the same promises as the
// file's, but those of persistence (the suite skips Reopen for it).
func TestConformance(t *testing.T) {
	logtest.Run(t, logtest.Backend{
		Open: func(t testing.TB, cfg logtest.Config) eventlog.Store {
			return memlog.New(memlog.Options{KeyRetention: cfg.KeyRetention, MaxBody: cfg.MaxBody, Now: cfg.Now})
		},
	})
}
