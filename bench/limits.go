package bench

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
)

// Limits are the raw limits of this machine's disk, measured in the same run as a scenario so
// that its figures can be read against them: a durable ack can never be cheaper than a commit.
type Limits struct {
	FsyncsPerSec  float64 // 4 KiB write + fsync, one after another
	CommitsPerSec float64 // single-event durable appends of the event log, one after another
}

// MeasureLimits measures Limits in a temporary directory (on this machine's disk, which a
// loopback server shares) for about the given time.
func MeasureLimits(d time.Duration) (Limits, error) {
	var lim Limits
	dir, err := os.MkdirTemp("", "roomlog-limits-")
	if err != nil {
		return lim, err
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "fsync"))
	if err != nil {
		return lim, err
	}
	defer f.Close()
	page := make([]byte, 4096)
	n, start := 0, time.Now()
	for time.Since(start) < d/2 {
		if _, err := f.WriteAt(page, 0); err != nil {
			return lim, err
		}
		if err := f.Sync(); err != nil {
			return lim, err
		}
		n++
	}
	lim.FsyncsPerSec = float64(n) / time.Since(start).Seconds()

	l, err := boltlog.Open(filepath.Join(dir, "commits.db"), boltlog.Options{})
	if err != nil {
		return lim, err
	}
	defer l.Close()
	ctx := context.Background()
	body := []byte(`{"pad":"x"}`)
	n, start = 0, time.Now()
	for time.Since(start) < d/2 {
		if _, err := l.Append(ctx, eventlog.AppendRequest{Room: "limits", User: "bench", Body: body}); err != nil {
			return lim, err
		}
		n++
	}
	lim.CommitsPerSec = float64(n) / time.Since(start).Seconds()
	return lim, nil
}

// Add records the limits in a result's figures.
func (l Limits) Add(r *Result) {
	r.Figures["raw_fsyncs_per_s"] = l.FsyncsPerSec
	r.Figures["raw_commits_per_s"] = l.CommitsPerSec
}
