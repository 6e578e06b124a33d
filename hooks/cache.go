package hooks

import (
	"container/list"
	"sync"
	"time"
)

// cache keeps the decisions an answer's ttl_ms lets roomlog reuse, by user and room, bounded in
// entries: a user who joins many rooms evicts the oldest decisions, never grows the cache past
// its bound.
type cache struct {
	max int

	mu    sync.Mutex
	byKey map[cacheKey]*list.Element // of order, holding *cached
	order *list.List                 // oldest put first
}

type cacheKey struct{ user, room string }

type cached struct {
	key     cacheKey
	d       Decision
	expires time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, byKey: map[cacheKey]*list.Element{}, order: list.New()}
}

// get returns the decision for key while it may be reused at now.
func (c *cache) get(key cacheKey, now time.Time) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byKey[key]
	if e == nil {
		return Decision{}, false
	}
	v := e.Value.(*cached)
	if !now.Before(v.expires) {
		c.removeLocked(e)
		return Decision{}, false
	}
	return v.d, true
}

// put keeps d for key until expires, evicting the oldest decision past the bound.
func (c *cache) put(key cacheKey, d Decision, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[key]; e != nil {
		c.removeLocked(e)
	}
	c.byKey[key] = c.order.PushBack(&cached{key, d, expires})
	for c.order.Len() > c.max {
		c.removeLocked(c.order.Front())
	}
}

func (c *cache) forget(key cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[key]; e != nil {
		c.removeLocked(e)
	}
}

func (c *cache) removeLocked(e *list.Element) {
	delete(c.byKey, e.Value.(*cached).key)
	c.order.Remove(e)
}

// len is how many decisions are kept.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
