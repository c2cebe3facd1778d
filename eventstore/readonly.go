package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// recordedMeta reads the deployment's partition count, partition hash and
// key layout ("" when a field is absent) without writing anything.
func (s *Store) recordedMeta(ctx context.Context) (partitions int, hash, layout string, err error) {
	key := s.keys.meta()
	vals, err := s.rdb.HMGet(ctx, key, "partitions", metaHash, metaLayout).Result()
	if err != nil {
		return 0, "", "", fmt.Errorf("eventstore: reading partition count: %w", err)
	}
	if vals[0] == nil {
		return 0, "", "", fmt.Errorf("%w at prefix %q on redis %s (key %q is missing)", ErrNoDeployment, s.cfg.Prefix, redisAddr(s.rdb), key)
	}
	raw, _ := vals[0].(string)
	got, err := strconv.Atoi(raw)
	if err != nil {
		return 0, "", "", fmt.Errorf("eventstore: reading partition count: field partitions of %q is %q, not a number", key, raw)
	}
	hash, _ = vals[1].(string)
	layout, _ = vals[2].(string)
	return got, hash, layout, nil
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
