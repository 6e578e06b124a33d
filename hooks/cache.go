package hooks

import (
	"container/list"
	"sync"
)

// lru is a map bounded in entries: past max, the entry put longest ago goes first. The hooks
// keep per-user state in them (reusable decisions, request rates), so that a stranger who joins
// many rooms, or many users, cannot grow them without bound.
type lru[K comparable, V any] struct {
	max int

	mu    sync.Mutex
	byKey map[K]*list.Element // of order, holding *lruEntry
	order *list.List          // oldest put first
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, byKey: map[K]*list.Element{}, order: list.New()}
}

func (c *lru[K, V]) get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[key]; e != nil {
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// getOrPut returns key's value, putting make() first when there is none.
func (c *lru[K, V]) getOrPut(key K, make func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[key]; e != nil {
		return e.Value.(*lruEntry[K, V]).val
	}
	v := make()
	c.putLocked(key, v)
	return v
}

func (c *lru[K, V]) put(key K, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(key, val)
}

func (c *lru[K, V]) putLocked(key K, val V) {
	if e := c.byKey[key]; e != nil {
		c.removeLocked(e)
	}
	c.byKey[key] = c.order.PushBack(&lruEntry[K, V]{key, val})
	for c.order.Len() > c.max {
		c.removeLocked(c.order.Front())
	}
}

func (c *lru[K, V]) forget(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[key]; e != nil {
		c.removeLocked(e)
	}
}

func (c *lru[K, V]) removeLocked(e *list.Element) {
	delete(c.byKey, e.Value.(*lruEntry[K, V]).key)
	c.order.Remove(e)
}

func (c *lru[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
