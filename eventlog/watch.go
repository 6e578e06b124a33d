package eventlog

import "sync"

// Watchers is a backend's registry of Watches, by room ("" for every room): the one every
// backend uses (Log.Watch returns Add's Watch; the backend calls Notify once events are durable).
// The zero value is ready to use.
type Watchers struct {
	// OnFirst and OnLast, when set before the first Add, are told when a room gets its first
	// watch and loses its last (the JetStream backend follows the heads of watched rooms). They
	// run with the registry's lock held: they must not call back into it.
	OnFirst, OnLast func(room string)

	mu sync.Mutex
	m  map[string]map[*Watch]struct{}
}

// Add returns a new Watch of room, registered until it is closed.
func (ws *Watchers) Add(room string) *Watch {
	w := NewWatch(room, ws.remove)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = map[string]map[*Watch]struct{}{}
	}
	if ws.m[room] == nil {
		ws.m[room] = map[*Watch]struct{}{}
		if ws.OnFirst != nil {
			ws.OnFirst(room)
		}
	}
	ws.m[room][w] = struct{}{}
	return w
}

func (ws *Watchers) remove(w *Watch) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if set := ws.m[w.room]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(ws.m, w.room)
			if ws.OnLast != nil {
				ws.OnLast(w.room)
			}
		}
	}
}

// Notify wakes the watchers of the rooms touched and of every room.
func (ws *Watchers) Notify(touched ...string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, room := range touched {
		for w := range ws.m[room] {
			w.Notify()
		}
	}
	for w := range ws.m[""] {
		w.Notify()
	}
}

// NotifyAll wakes every watcher.
func (ws *Watchers) NotifyAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, set := range ws.m {
		for w := range set {
			w.Notify()
		}
	}
}

// CloseAll closes every watch's channel (the log closed) and forgets them all.
func (ws *Watchers) CloseAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, set := range ws.m {
		for w := range set {
			close(w.c)
		}
	}
	ws.m = nil
}
