package cache

import (
	"context"
	"fmt"
	"strings"

	"github.com/mpim/mpim/internal/keyscan"
	"github.com/redis/go-redis/v9"
)

// Reset deletes the model (every key under cachekeys' namespace) and the
// quarantine stream, and moves every partition's checkpoint back to zero,
// keeping the fencing tokens. Running the projector from zero afterwards
// rebuilds the same model. On Redis Cluster it scans every master. See the
// package comment for running owners.
func (p *Projector) Reset(ctx context.Context) error {
	esc := globEscape(p.cfg.Prefix)
	err := keyscan.Each(ctx, p.rdb, esc+"cache:*", func(c redis.Cmdable, keys []string) error {
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
	err = keyscan.Each(ctx, p.rdb, p.ckpt.KeyPattern(), func(c redis.Cmdable, keys []string) error {
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
