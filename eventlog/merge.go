package eventlog

import "container/heap"

// RoomMerge orders rooms by the id of each one's next event: the merge every backend's
// Auditor.Scan does to give several rooms' events in id order, with memory that grows with the
// number of rooms, not of events. Each room comes with a cursor C, the backend's position in its
// storage; the merge only orders them. The zero value is an empty merge.
type RoomMerge[C any] struct {
	h mergeHeap[C]
}

type mergeEntry[C any] struct {
	next ID
	cur  C
}

// Add adds a room whose next event is next, with its cursor.
func (m *RoomMerge[C]) Add(next ID, cur C) { heap.Push(&m.h, mergeEntry[C]{next, cur}) }

// Len is how many rooms are left.
func (m *RoomMerge[C]) Len() int { return len(m.h) }

// Top returns the room whose next event comes first, and its cursor. The merge must not be empty.
func (m *RoomMerge[C]) Top() (next ID, cur C) { return m.h[0].next, m.h[0].cur }

// Advance records that the top room's next event is now next.
func (m *RoomMerge[C]) Advance(next ID) {
	m.h[0].next = next
	heap.Fix(&m.h, 0)
}

// Done removes the top room: it has no more events.
func (m *RoomMerge[C]) Done() { heap.Pop(&m.h) }

// Runner returns the smallest next id among the rooms other than the top, the zero ID when there
// is none: the top room's events before it can be read in one run.
func (m *RoomMerge[C]) Runner() ID {
	switch len(m.h) {
	case 0, 1:
		return ID{}
	case 2:
		return m.h[1].next
	}
	if m.h[2].next.Compare(m.h[1].next) < 0 {
		return m.h[2].next
	}
	return m.h[1].next
}

type mergeHeap[C any] []mergeEntry[C]

func (h mergeHeap[C]) Len() int           { return len(h) }
func (h mergeHeap[C]) Less(i, j int) bool { return h[i].next.Compare(h[j].next) < 0 }
func (h mergeHeap[C]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap[C]) Push(x any)        { *h = append(*h, x.(mergeEntry[C])) }
func (h *mergeHeap[C]) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
