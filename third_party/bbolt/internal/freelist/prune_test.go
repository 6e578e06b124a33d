package freelist

import (
	"testing"

	"go.etcd.io/bbolt/internal/common"
)

// roomlog patch, see PATCHES.md.

func allocsOf(f Interface) map[common.Pgid]common.Txid {
	switch f := f.(type) {
	case *hashMap:
		return f.allocs
	case *array:
		return f.allocs
	}
	panic("unknown freelist type")
}

var freelistTypes = map[string]func() Interface{"hashmap": NewHashMapFreelist, "array": NewArrayFreelist}

// An append-mostly database allocates pages from the freelist that it never frees. Their allocs
// entries are forgotten once no reader can use them.
func TestAllocsArePrunedWithoutReaders(t *testing.T) {
	for name, newFreelist := range freelistTypes {
		t.Run(name, func(t *testing.T) {
			f := newFreelist()
			const txs = 50000
			ids := make([]common.Pgid, txs)
			for i := range ids {
				ids[i] = common.Pgid(i + 2)
			}
			f.Init(ids)
			most := 0
			for tx := common.Txid(1); tx <= txs; tx++ {
				f.ReleasePendingPages()
				if f.Allocate(tx, 1) == 0 {
					t.Fatalf("tx %d: nothing allocated", tx)
				}
				most = max(most, len(allocsOf(f)))
			}
			if most > 2*minAllocsPrune {
				t.Fatalf("allocs held up to %d entries for %d pages never freed, want at most %d", most, txs, 2*minAllocsPrune)
			}
		})
	}
}

// Pruning keeps what releaseRange needs: a page allocated and freed after the oldest open
// reader, with no reader open in between, is still released early.
func TestPruningKeepsEarlyRelease(t *testing.T) {
	for name, newFreelist := range freelistTypes {
		t.Run(name, func(t *testing.T) {
			f := newFreelist()
			ids := make([]common.Pgid, 10000)
			for i := range ids {
				ids[i] = common.Pgid(i + 2)
			}
			f.Init(ids)
			f.AddReadonlyTXID(10) // held open throughout
			var early common.Pgid
			for tx := common.Txid(11); tx <= 4000; tx++ {
				f.ReleasePendingPages()
				p := f.Allocate(tx, 1)
				if p == 0 {
					t.Fatalf("tx %d: nothing allocated", tx)
				}
				switch tx {
				case 20:
					early = p
				case 2000:
					f.Free(tx, common.NewPage(early, 0, 0, 0))
				case 2500:
					f.AddReadonlyTXID(tx)
				}
			}
			if len(allocsOf(f)) < 3000 {
				t.Fatalf("allocs has %d entries, want the ~4000 allocated after the open reader", len(allocsOf(f)))
			}
			f.ReleasePendingPages()
			if n := f.PendingCount(); n != 0 {
				t.Fatalf("page %d allocated at tx 20 and freed at tx 2000, between readers 10 and 2500: still pending (%d pending pages)", early, n)
			}
		})
	}
}
