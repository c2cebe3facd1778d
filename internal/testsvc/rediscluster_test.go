package testsvc

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// setFollowingMoved sets key through any node, following one MOVED reply,
// and returns the address of the node that took it.
func setFollowingMoved(t *testing.T, addr, key string) string {
	t.Helper()
	for range 2 {
		c, err := dialRESP(addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.do("SET", key, "v")
		c.Close()
		if err == nil {
			return addr
		}
		f := strings.Fields(err.Error())
		if len(f) != 3 || f[0] != "MOVED" {
			t.Fatalf("SET %s on %s: %v", key, addr, err)
		}
		addr = f[2]
	}
	t.Fatalf("SET %s: moved twice", key)
	return ""
}

// The shared cluster has three masters; a test's keys spread over all of
// them and are deleted from every master when the test ends.
func TestRedisClusterSpreadsAndCleansKeys(t *testing.T) {
	var prefix string
	var masters []string
	t.Run("inner", func(t *testing.T) {
		ct := RedisCluster(t)
		prefix = ct.Prefix
		if len(ct.Addrs) != 6 {
			t.Fatalf("%d nodes, want 6", len(ct.Addrs))
		}
		masters = ct.Masters(t)
		if len(masters) != 3 {
			t.Fatalf("masters %v, want 3", masters)
		}
		took := map[string]int{}
		for i := range 30 {
			took[setFollowingMoved(t, masters[0], fmt.Sprintf("%s{p%d}:k", ct.Prefix, i))]++
		}
		if len(took) != 3 {
			t.Fatalf("30 keys landed on %v, want all 3 masters", took)
		}
	})
	if again := RedisCluster(t); len(again.Masters(t)) != 3 || again.Prefix == prefix {
		t.Fatalf("second call: masters %v prefix %q", again.Masters(t), again.Prefix)
	}
	for _, m := range masters {
		c, err := dialRESP(m)
		if err != nil {
			t.Fatal(err)
		}
		err = scanPrefix(c, prefix, func(keys []any) error { return fmt.Errorf("%d keys left", len(keys)) })
		c.Close()
		if err != nil {
			t.Errorf("master %s: %v", m, err)
		}
	}
}

// A private cluster takes extra server arguments on every node.
func TestStartRedisClusterAppliesArguments(t *testing.T) {
	ct := StartRedisCluster(t, "--maxmemory", "64mb")
	for _, a := range ct.Addrs {
		c, err := dialRESP(a)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.do("CONFIG", "GET", "maxmemory")
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(r); got != fmt.Sprint([]any{"maxmemory", fmt.Sprint(64 << 20)}) {
			t.Errorf("node %s: CONFIG GET maxmemory = %s", a, got)
		}
	}
}

// A master of a private cluster killed with KillNode is replaced by its
// replica (Ready once it took over); RestartNode brings the killed node
// back as a replica, and Masters never lists a node that is down.
func TestRedisClusterNodeKillAndRestart(t *testing.T) {
	ct := StartRedisCluster(t, "--cluster-node-timeout", "1000")
	victim := ct.Masters(t)[0]
	replica := ct.ReplicaOf(t, victim)
	ct.KillNode(t, victim)
	if slices.Contains(ct.Masters(t), victim) {
		t.Fatalf("Masters lists the killed node %s", victim)
	}
	Eventually(t, 30*time.Second, "the replica took over", func() bool {
		return ct.Ready() == nil && slices.Contains(ct.Masters(t), replica)
	})
	ct.RestartNode(t, victim)
	Eventually(t, 30*time.Second, "the killed node back as a replica", func() bool {
		return ct.Ready() == nil && len(ct.running()) == 6 && !slices.Contains(ct.Masters(t), victim)
	})
	var got string
	Eventually(t, 30*time.Second, "the new master lists the killed node as its replica", func() bool {
		got, _ = replicaOf(replica)
		return got == victim
	})
}
