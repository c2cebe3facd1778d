package pipeline_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/mpim/mpim/internal/pipeline"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// tripCounter is a go-redis hook that counts round trips: one per command
// sent alone, one per pipeline.
type tripCounter struct{ n atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// check sets every even key of n under prefix, reads all n with Chunked
// and fails tb unless each answers in order, the odd ones redis.Nil.
func check(ctx context.Context, tb testing.TB, rdb redis.UniversalClient, prefix string, n int) {
	tb.Helper()
	key := func(i int) string { return prefix + "k" + strconv.Itoa(i) }
	for i := 0; i < n; i += 2 {
		if err := rdb.Set(ctx, key(i), i, 0).Err(); err != nil {
			tb.Fatal(err)
		}
	}
	cmds, err := pipeline.Chunked(ctx, rdb, n, func(p redis.Pipeliner, i int) *redis.StringCmd { return p.Get(ctx, key(i)) })
	if err != nil || len(cmds) != n {
		tb.Fatalf("Chunked: %d commands, %v; want %d", len(cmds), err, n)
	}
	for i, c := range cmds {
		v, err := c.Result()
		if i%2 == 1 && !errors.Is(err, redis.Nil) || i%2 == 0 && (err != nil || v != strconv.Itoa(i)) {
			tb.Fatalf("key %d: %q, %v", i, v, err)
		}
	}
}

// TestChunkedReadsInOrderInFewRoundTrips: n reads take ceil(n/MaxCommands)
// round trips, none for none, and answer in order, a missing key with
// redis.Nil and not as a failure.
func TestChunkedReadsInOrderInFewRoundTrips(t *testing.T) {
	ctx := t.Context()
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	defer rdb.Close()
	var trips tripCounter
	rdb.AddHook(&trips)
	for _, c := range []struct{ n, trips int }{{0, 0}, {1, 1}, {50, 1}, {pipeline.MaxCommands, 1}, {pipeline.MaxCommands + 1, 2}} {
		check(ctx, t, rdb, rt.Prefix+strconv.Itoa(c.n)+":", c.n)
		trips.n.Store(0)
		if _, err := pipeline.Chunked(ctx, rdb, c.n, func(p redis.Pipeliner, i int) *redis.StringCmd { return p.Get(ctx, rt.Prefix+"x") }); err != nil {
			t.Fatal(err)
		}
		if got := trips.n.Load(); got != int64(c.trips) {
			t.Errorf("%d reads took %d round trips, want %d", c.n, got, c.trips)
		}
	}
	t.Run("a failing command fails the call", func(t *testing.T) {
		if err := rdb.HSet(ctx, rt.Prefix+"hash", "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		_, err := pipeline.Chunked(ctx, rdb, 2, func(p redis.Pipeliner, i int) *redis.StringCmd {
			return p.Get(ctx, rt.Prefix+[]string{"missing", "hash"}[i])
		})
		if err == nil || errors.Is(err, redis.Nil) {
			t.Errorf("GET of a hash after a missing key: %v, want WRONGTYPE", err)
		}
	})
}

// TestChunkedOnACluster: keys in many slots are read in order.
func TestChunkedOnACluster(t *testing.T) {
	ctx := t.Context()
	ct := testsvc.RedisCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	check(ctx, t, rdb, ct.Prefix, 200)
}
