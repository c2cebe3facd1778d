package command

import "sync"

// cache holds loaded aggregate states by aggregate id. Entries are immutable
// snapshots (Decide never mutates); a newer version replaces an entry. When
// full, an arbitrary entry is evicted. It is safe for concurrent use.
type cache struct {
	mu    sync.Mutex
	max   int
	items map[string]any
}

func newCache(max int) *cache { return &cache{max: max, items: make(map[string]any)} }

func (c *cache) get(key string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items[key]
}

func (c *cache) put(key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; !ok && len(c.items) >= c.max {
		for k := range c.items {
			delete(c.items, k)
			break
		}
	}
	c.items[key] = v
}

func (c *cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.items, key)
}
