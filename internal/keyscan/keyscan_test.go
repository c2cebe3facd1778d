package keyscan

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

func TestEachVisitsEveryMatchingKeyOncePageByPage(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	defer rdb.Close()
	ctx := context.Background()
	const n = 2*PageSize + 500
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.Set(ctx, fmt.Sprintf("%sin:%d", rt.Prefix, i), "x", 0)
	}
	pipe.Set(ctx, rt.Prefix+"out:1", "x", 0)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	pages := 0
	err := Each(ctx, rdb, rt.Prefix+"in:*", func(c redis.Cmdable, keys []string) error {
		if c == nil || len(keys) == 0 {
			t.Fatalf("page with client %v and %d keys", c, len(keys))
		}
		pages++
		for _, k := range keys {
			seen[k]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n || seen[rt.Prefix+"out:1"] != 0 || pages < 2 {
		t.Fatalf("saw %d keys in %d pages (out:1 %d times), want %d in several", len(seen), pages, seen[rt.Prefix+"out:1"], n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s seen %d times", k, c)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err = Each(ctx, rdb, rt.Prefix+"in:*", func(redis.Cmdable, []string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("a failing page: %v after %d calls, want stop after 1", err, calls)
	}
	if err := Each(ctx, rdb, rt.Prefix+"none:*", func(redis.Cmdable, []string) error {
		t.Fatal("page called with no matching key")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// On a Redis Cluster the walk covers every master: keys spread over the
// three masters by their hash tags are all seen, once each, each page with
// the client of the master that holds its keys.
func TestEachCoversEveryMasterOfACluster(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	ctx := context.Background()
	const n = 300
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("%sin:{p%d}", ct.Prefix, i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	servers := map[string]int{}
	err := Each(ctx, rdb, ct.Prefix+"in:*", func(c redis.Cmdable, keys []string) error {
		node, ok := c.(*redis.Client)
		if !ok {
			t.Fatalf("page client %T, want a master's *redis.Client", c)
		}
		for _, k := range keys {
			seen[k]++
			// The key is on the page's server: a MOVED reply would fail.
			if err := node.Exists(ctx, k).Err(); err != nil {
				t.Fatalf("key %s on %s: %v", k, node.Options().Addr, err)
			}
		}
		servers[node.Options().Addr] += len(keys)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n || len(servers) != 3 {
		t.Fatalf("saw %d of %d keys on servers %v, want all on 3 masters", len(seen), n, servers)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s seen %d times", k, c)
		}
	}
}
