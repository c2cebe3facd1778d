// Package replwait holds a batch's checkpoint until its writes are on
// replicas: WAIT counts the replicas that have the writes of the connection
// it is sent on, and replication is in order, so a short-lived barrier key
// written on each master the batch wrote to, followed by WAIT on the same
// connection, proves every earlier write of that master is on them too.
// A projector that moves its checkpoint only after Wait loses no write
// below the checkpoint in a failover, whatever master the checkpoint is on.
package replwait

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// BarrierTTL is how long a barrier key lives: long enough for its WAIT,
// short enough that the keys of past batches do not pile up.
const BarrierTTL = 10 * time.Second

// Wait returns nil once n replicas of every master holding one of keys
// have that master's writes so far (at once when n <= 0 or keys is
// empty). It fails, naming the master and the count, when a WAIT counts
// fewer within timeout or a master cannot be reached. On one server keys
// only need to be non-empty.
func Wait(ctx context.Context, rdb redis.UniversalClient, keys []string, n int, timeout time.Duration) error {
	if n <= 0 || len(keys) == 0 {
		return nil
	}
	barriers := map[redis.Cmdable]string{} // master -> a key it holds
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		for _, k := range keys {
			node, err := cc.MasterForKey(ctx, k)
			if err != nil {
				return fmt.Errorf("master of %s: %w", k, err)
			}
			if _, ok := barriers[node]; !ok {
				barriers[node] = k
			}
		}
	} else {
		barriers[rdb] = keys[0]
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(barriers))
	for node, k := range barriers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- barrier(ctx, node, k, n, timeout)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// barrier writes the barrier key of k's slot on node and WAITs there.
func barrier(ctx context.Context, node redis.Cmdable, k string, n int, timeout time.Duration) error {
	bk, ok := BarrierKey(k)
	if !ok {
		return fmt.Errorf("no barrier key beside %q: it has braces but no hash tag", k)
	}
	var wait *redis.Cmd
	_, err := node.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, bk, "1", BarrierTTL)
		wait = pipe.Do(ctx, "WAIT", n, timeout.Milliseconds())
		return nil
	})
	if err != nil {
		return fmt.Errorf("replication barrier beside %s: %w", k, err)
	}
	if got, _ := wait.Int64(); got < int64(n) {
		return fmt.Errorf("the writes beside %s are on %d of %d replicas within %s", k, got, n, timeout)
	}
	return nil
}

// BarrierKey returns a key in k's hash slot: k's own hash tag when it has
// one, else k itself as the tag. ok is false for a key with braces but no
// hash tag ("a{}b", "x}y"), which no key of this project is.
func BarrierKey(k string) (key string, ok bool) {
	if i := strings.IndexByte(k, '{'); i >= 0 {
		if j := strings.IndexByte(k[i+1:], '}'); j > 0 {
			return k + ":w", true
		}
	}
	if strings.ContainsAny(k, "{}") {
		return "", false
	}
	return "{" + k + "}:w", true
}
