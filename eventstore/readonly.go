package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrNoDeployment is returned by a read-only Open (and by NewTap) when no
// deployment exists at the configured prefix: nothing ever recorded its
// partition count there. A wrong prefix, Redis address or database number
// shows up as this error.
var ErrNoDeployment = errors.New("eventstore: no mpim deployment")

// ErrReadOnly is returned by the writes of a store opened with
// Config.ReadOnly.
var ErrReadOnly = errors.New("eventstore: store opened read-only")

// recordedPartitions reads the deployment's partition count without
// recording one; a missing meta hash is ErrNoDeployment.
func (s *Store) recordedPartitions(ctx context.Context) (int, error) {
	key := s.keys.meta()
	got, err := s.rdb.HGet(ctx, key, "partitions").Int()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("%w at prefix %q on redis %s (key %q is missing)", ErrNoDeployment, s.cfg.Prefix, redisAddr(s.rdb), key)
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: reading partition count: %w", err)
	}
	return got, nil
}

// writable fails on a store opened read-only.
func (s *Store) writable() error {
	if s.cfg.ReadOnly {
		return ErrReadOnly
	}
	return nil
}

// redisAddr names the server of rdb for error messages.
func redisAddr(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return fmt.Sprintf("%s db %d", c.Options().Addr, c.Options().DB)
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return "(unknown address)"
}
