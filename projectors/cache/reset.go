package cache

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Reset deletes the model (every key under cachekeys' namespace) and the
// quarantine stream, and moves every partition's checkpoint back to zero,
// keeping the fencing tokens. Running the projector from zero afterwards
// rebuilds the same model. On Redis Cluster it scans every master. See the
// package comment for running owners.
func (p *Projector) Reset(ctx context.Context) error {
	esc := globEscape(p.cfg.Prefix)
	err := p.scan(ctx, esc+"cache:*", func(c redis.Cmdable, keys []string) error {
		pipe := c.Pipeline()
		for _, k := range keys {
			pipe.Unlink(ctx, k)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("cache: deleting the model: %w", err)
	}
	if err := p.rdb.Unlink(ctx, p.quarantineKey()).Err(); err != nil {
		return fmt.Errorf("cache: deleting the quarantine: %w", err)
	}
	err = p.scan(ctx, p.ckpt.KeyPattern(), func(c redis.Cmdable, keys []string) error {
		pipe := c.Pipeline()
		for _, k := range keys {
			pipe.HDel(ctx, k, "pos")
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("cache: resetting checkpoints: %w", err)
	}
	return nil
}

// scan calls fn with every page of keys matching pattern, on every master of
// a cluster or on the one server.
func (p *Projector) scan(ctx context.Context, pattern string, fn func(c redis.Cmdable, keys []string) error) error {
	one := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(c, keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := p.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return one(ctx, c) })
	}
	return one(ctx, p.rdb)
}

// globEscape escapes the glob metacharacters of a SCAN pattern.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
