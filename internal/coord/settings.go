package coord

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"
)

// EnsureSetting records an immutable deployment setting: it creates the
// persistent node <root>/settings/<key> holding value if there is none, and
// returns what is stored, the value of whoever created it first. A stored
// value different from value is not an error here: the caller decides (a
// different partition count, for one, must stop the process from starting).
func (z *ZooKeeper) EnsureSetting(ctx context.Context, key, value string) (stored string, err error) {
	if err := validSegment("setting key", key); err != nil {
		return "", err
	}
	if err := z.begin(); err != nil {
		return "", err
	}
	defer z.end()
	ctx, cancel := z.scope(ctx)
	defer cancel()
	node := z.path("settings", key)
	if err := z.ensurePath(ctx, z.path("settings")); err != nil {
		return "", fmt.Errorf("coord: setting %s: %w", key, err)
	}
	err = z.retry(ctx, "ensure setting "+key, func(*session) error {
		// A create whose answer was lost is seen as "exists" on retry, with
		// the value it wrote.
		_, err := z.conn.Create(node, []byte(value), zk.FlagPersistent, z.acl)
		if err == nil {
			stored = value
			return nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
		data, _, err := z.conn.Get(node)
		stored = string(data)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("coord: setting %s: %w", key, err)
	}
	return stored, nil
}
