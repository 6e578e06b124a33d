package eventlog

import "sync"

// watchers is a backend's registry of Watches, by room ("" for every room). The zero value is
// ready to use.
type watchers struct {
	mu sync.Mutex
	m  map[string]map[*Watch]struct{}
}

// add returns a new Watch of room, registered until it is closed.
func (ws *watchers) add(room string) *Watch {
	w := NewWatch(room, ws.remove)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = map[string]map[*Watch]struct{}{}
	}
	if ws.m[room] == nil {
		ws.m[room] = map[*Watch]struct{}{}
	}
	ws.m[room][w] = struct{}{}
	return w
}

func (ws *watchers) remove(w *Watch) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if set := ws.m[w.room]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(ws.m, w.room)
		}
	}
}

// notify wakes the watchers of the rooms in touched and of every room.
func (ws *watchers) notify(touched []string) {
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

// notifyAll wakes every watcher.
func (ws *watchers) notifyAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, set := range ws.m {
		for w := range set {
			w.Notify()
		}
	}
}

// closeAll closes every watch's channel (the log closed) and forgets them all.
func (ws *watchers) closeAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, set := range ws.m {
		for w := range set {
			close(w.c)
		}
	}
	ws.m = nil
}
