// Package keyscan walks the keys matching a pattern with SCAN, on the one
// server or on every master of a cluster: the one SCAN loop of the layout
// migration (eventstore) and the cache reset (projectors/cache).
package keyscan

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// PageSize is the COUNT hint of each SCAN call.
const PageSize = 1000

// Each calls page with every non-empty page of the keys matching pattern,
// and the client of the server they are on (a master of a cluster, or rdb
// itself). An error of page or of SCAN stops the walk and is returned. A key
// created or deleted during the walk may be seen or not (SCAN's guarantee).
// On a cluster the masters are scanned at once, but calls of page never
// overlap: page needs no lock of its own.
func Each(ctx context.Context, rdb redis.UniversalClient, pattern string, page func(c redis.Cmdable, keys []string) error) error {
	var mu sync.Mutex
	one := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, PageSize).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				mu.Lock()
				err := page(c, keys)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return one(ctx, c) })
	}
	return one(ctx, rdb)
}
