package jetstream

import "time"

// Kill stops the log as a node that died would: no more heartbeats, none signed off.
func (l *Log) Kill() { l.shutdown(false) }

// SetPlacementSettle sets how long Open asks for three replicas before it settles for one, and
// restores it when the test ends.
func SetPlacementSettle(t interface{ Cleanup(func()) }, d time.Duration) {
	was := placementSettle
	placementSettle = d
	t.Cleanup(func() { placementSettle = was })
}

// DropKeyMarkers has the log write no key marker and no watermark from now on, as a node that
// died after its keyed events were acked (and before their markers) would not.
func (l *Log) DropKeyMarkers() { l.marks.off.Store(true) }

// SetMaxUnmarked sets how many keyed events of a room may wait for their markers, and restores it
// when the test ends.
func SetMaxUnmarked(t interface{ Cleanup(func()) }, n int) {
	was := maxUnmarked
	maxUnmarked = n
	t.Cleanup(func() { maxUnmarked = was })
}
