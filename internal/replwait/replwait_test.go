package replwait_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/replwait"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// A barrier key hashes to the slot of the key it stands beside, with or
// without a hash tag; a key with braces but no tag has none.
func TestBarrierKeyIsInTheKeysSlot(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	ctx := context.Background()
	for _, k := range []string{"plain", "t:x:{p3}:log", "{u:1}inbox", "a{b}{}c"} {
		want := rdb.ClusterKeySlot(ctx, k).Val()
		bk, ok := replwait.BarrierKey(k)
		if got := rdb.ClusterKeySlot(ctx, bk).Val(); !ok || got != want {
			t.Errorf("BarrierKey(%q) = %q, %v in slot %d, want slot %d", k, bk, ok, got, want)
		}
	}
	for _, k := range []string{"a{}b", "x{y", "x}y"} {
		if bk, ok := replwait.BarrierKey(k); ok {
			t.Errorf("BarrierKey(%q) = %q for a key with braces but no tag", k, bk)
		}
	}
}

// On a cluster with one replica per master, Wait for 1 replica sends one
// WAIT to each master holding one of the keys and to no other; asking for
// 2 fails naming the count; n 0 sends nothing.
func TestWaitRunsOnEachMasterOfTheKeys(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys := map[string]string{} // master -> a key on it
	for i := 0; len(keys) < len(ct.Masters(t)) && i < 1000; i++ {
		k := ct.Prefix + "k" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
		node, err := rdb.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		keys[node.Options().Addr] = k
	}
	var one string
	var all []string
	for addr, k := range keys {
		if one == "" {
			one = addr
		}
		all = append(all, k)
	}
	before := ct.CommandCalls(t, "wait")
	if err := replwait.Wait(ctx, rdb, []string{keys[one]}, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	after := ct.CommandCalls(t, "wait")
	for addr := range keys {
		want := int64(0)
		if addr == one {
			want = 1
		}
		if d := after[addr] - before[addr]; d != want {
			t.Errorf("master %s ran %d WAIT, want %d", addr, d, want)
		}
	}
	if err := replwait.Wait(ctx, rdb, all, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	last := ct.CommandCalls(t, "wait")
	for addr := range keys {
		if d := last[addr] - after[addr]; d != 1 {
			t.Errorf("master %s ran %d WAIT for the keys of every master, want 1", addr, d)
		}
	}
	err := replwait.Wait(ctx, rdb, all, 2, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "on 1 of 2 replicas") {
		t.Errorf("asking 2 replicas of masters with one: %v", err)
	}
	if err := replwait.Wait(ctx, rdb, all, 0, time.Second); err != nil {
		t.Errorf("n 0: %v", err)
	}
	if d := ct.CommandCalls(t, "wait"); d[one] != last[one]+1 {
		t.Errorf("n 0 or the failed wait: master %s ran %d WAIT, want one (the failed one's)", one, d[one]-last[one])
	}
}

// After a resharding moved a key's slot to another master, cluster
// clients that have not learnt it yet send the SET and WAIT to the old
// master, which answers MOVED: OnMaster and Wait both end on the new
// master, with a WAIT there for its own replica.
func TestBarriersFollowAMovedSlot(t *testing.T) {
	ct := testsvc.StartRedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := ct.Prefix + "{moving}:r"
	// Two clients that learn the slot map before the move.
	clients := make([]*redis.ClusterClient, 2)
	for i := range clients {
		clients[i] = redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
		defer clients[i].Close()
		if _, err := replwait.OnMaster(ctx, clients[i], key, "1", 0, 1, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	src, err := clients[0].MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var dst *redis.Client
	for _, a := range ct.Masters(t) {
		if a != src.Options().Addr {
			dst = redis.NewClient(&redis.Options{Addr: a})
			defer dst.Close()
			break
		}
	}
	moveSlot(t, src, dst, int(src.ClusterKeySlot(ctx, key).Val()))

	before := ct.CommandCalls(t, "wait")
	n, err := replwait.OnMaster(ctx, clients[0], key, "2", 0, 1, time.Second)
	if err != nil || n != 1 {
		t.Fatalf("OnMaster after the slot moved: %d replicas, %v; want 1, nil", n, err)
	}
	if v := dst.Get(ctx, key).Val(); v != "2" {
		t.Errorf("the new master holds %q, want 2", v)
	}
	if err := replwait.Wait(ctx, clients[1], []string{key}, 1, time.Second); err != nil {
		t.Errorf("Wait after the slot moved: %v", err)
	}
	after := ct.CommandCalls(t, "wait")
	if d := after[dst.Options().Addr] - before[dst.Options().Addr]; d != 2 {
		t.Errorf("the new master ran %d WAIT, want 2 (OnMaster's and Wait's)", d)
	}
}

// moveSlot moves slot from src to dst with its keys, as a resharding does,
// and tells every master.
func moveSlot(t *testing.T, src, dst *redis.Client, slot int) {
	t.Helper()
	ctx := context.Background()
	id := func(c *redis.Client) string { return c.Do(ctx, "CLUSTER", "MYID").Val().(string) }
	srcID, dstID := id(src), id(dst)
	must := func(c *redis.Client, args ...any) {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", args, c.Options().Addr, err)
		}
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	must(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(dst.Options().Addr, ":")
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	if len(keys) > 0 {
		must(src, args...)
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	must(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	slots, err := src.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range slots {
		if a := r.Nodes[0].Addr; a != src.Options().Addr && a != dst.Options().Addr {
			other := redis.NewClient(&redis.Options{Addr: a})
			must(other, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
			other.Close()
			break
		}
	}
}
