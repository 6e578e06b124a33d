package jetstream

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// ids hands out event ids (see "Order across nodes" in the package comment). It is safe for
// concurrent use.
//
// Invariant: an id made for a room whose head is at stream sequence headSeq has a sequence part
// >= headSeq and a time part >= the head's, so it sorts after the head; and a sequence part that
// was already assigned when the id was made (headSeq, or one this node saw acknowledged), so it
// is below the sequence the event gets. Each id is also above every id made before on this node.
type ids struct {
	mu    sync.Mutex
	now   func() time.Time
	last  eventlog.ID
	known uint64 // the highest stream sequence this node has seen assigned
}

// seen records that seq was assigned.
func (g *ids) seen(seq uint64) {
	g.mu.Lock()
	g.known = max(g.known, seq)
	g.mu.Unlock()
}

// next makes an id for an event after head (at stream sequence headSeq).
func (g *ids) next(head eventlog.ID, headSeq uint64) eventlog.ID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := max(uint64(g.now().UnixMilli()), head.Millis(), g.last.Millis())
	seq := min(max(headSeq, g.known), 1<<56-1)
	var id eventlog.ID
	binary.BigEndian.PutUint64(id[0:8], ms<<16)
	binary.BigEndian.PutUint64(id[5:13], seq) // bytes 6..12; byte 5 is rewritten below
	id[5] = byte(ms)
	rand.Read(id[13:])
	id[13] &= 0x7f // room to count up within one (time, sequence)
	for _, floor := range []eventlog.ID{g.last, head} {
		if id.Compare(floor) <= 0 {
			id = after(floor)
		}
	}
	g.last = id
	return id
}

// after is the smallest id above id.
func after(id eventlog.ID) eventlog.ID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			break
		}
	}
	return id
}

// hintSeq is the stream sequence an id made by next carries: the event is at a higher one. For an
// id made elsewhere it is noise, which the readers check.
func hintSeq(id eventlog.ID) uint64 {
	return binary.BigEndian.Uint64(id[5:13]) & (1<<56 - 1)
}
