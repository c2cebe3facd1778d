// Package pipeline sends many single-key commands in few round trips: the
// one chunked pipeline of the batch reads of the read side (query) and of
// the push projector, on one server or on a cluster.
package pipeline

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// MaxCommands bounds the commands of one pipeline: more take a round trip
// per MaxCommands of them.
const MaxCommands = 4096

// Chunked sends queue(p, i) for every i of 0..n-1, MaxCommands commands
// per pipeline, and returns the commands in order: n commands in
// ceil(n/MaxCommands) round trips, none for n = 0. A command's own failure
// (redis.Nil of a missing key among them) is left for the caller to read
// from it; the error returned is that of the first command that failed
// otherwise, or of the connection. On a Redis Cluster, go-redis splits
// each pipeline by node, so the keys may lie in any slots (one round trip
// per node then).
func Chunked[C redis.Cmder](ctx context.Context, rdb redis.UniversalClient, n int, queue func(p redis.Pipeliner, i int) C) ([]C, error) {
	cmds := make([]C, n)
	for lo := 0; lo < n; lo += MaxCommands {
		pipe := rdb.Pipeline()
		for i := lo; i < min(n, lo+MaxCommands); i++ {
			cmds[i] = queue(pipe, i)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for _, c := range cmds[lo:min(n, lo+MaxCommands)] {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, err
			}
		}
	}
	return cmds, nil
}
