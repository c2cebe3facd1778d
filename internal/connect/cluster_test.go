package connect_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Bad address lists and settings are refused before any connection, each
// with a message that names the problem.
func TestBadRedisAddressesAreRefused(t *testing.T) {
	for list, want := range map[string]string{
		"":                                   "empty",
		"  ":                                 "empty",
		"127.0.0.1:7000,":                    "element 2 is empty",
		",127.0.0.1:7000":                    "element 1 is empty",
		"127.0.0.1:7000,,127.0.0.1:1":        "element 2 is empty",
		"127.0.0.1":                          "missing port",
		"127.0.0.1:0":                        "port must be 1..65535",
		"127.0.0.1:65536":                    "port must be 1..65535",
		"127.0.0.1:x":                        "port must be 1..65535",
		":7000":                              "no host",
		"127.0.0.1:7000:7001":                "too many colons",
		strings.Repeat("h:1,", 1000) + "h:1": "at most 1000",
	} {
		if _, err := connect.ParseRedisAddrs(list); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRedisAddrs(%.40q): %v, want an error saying %q", list, err, want)
		}
	}
	got, err := connect.ParseRedisAddrs(" 127.0.0.1:7000, [::1]:7001 ")
	if err != nil || len(got) != 2 || got[0] != "127.0.0.1:7000" || got[1] != "[::1]:7001" {
		t.Errorf("a good list: %q, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for name, cfg := range map[string]connect.RedisConfig{
		"database on a cluster":   {Addrs: []string{"127.0.0.1:7000"}, Cluster: true, DB: 1},
		"database on many seeds":  {Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, DB: 2},
		"database out of range":   {Addrs: []string{"127.0.0.1:7000"}, DB: 16},
		"negative pool":           {Addrs: []string{"127.0.0.1:7000"}, PoolSize: -1},
		"bad address in the list": {Addrs: []string{"127.0.0.1:7000", "nowhere"}},
	} {
		if _, err := connect.Redis(ctx, cfg); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// More than one address, or Cluster, gives a cluster client that reaches
// every master; its round-trip counters count on the node connections: a
// pipeline over keys of three masters is three round trips.
func TestRedisClusterClientCountsRoundTripsPerNode(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	rdb, err := connect.Redis(ctx, connect.RedisConfig{Addrs: ct.Addrs[:2], Registerer: reg, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("two addresses gave a %T, want a cluster client", rdb)
	}
	one, err := connect.Redis(ctx, connect.RedisConfig{Addrs: ct.Addrs[:1], Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if _, ok := one.(*redis.ClusterClient); !ok {
		t.Fatalf("one address with Cluster gave a %T, want a cluster client", one)
	}
	// Three keys whose hash tags sit on three different masters.
	var keys []string
	owners := map[string]bool{}
	for i := 0; len(keys) < 3 && i < 1000; i++ {
		k := ct.Prefix + "{" + strings.Repeat("x", i) + "}"
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !owners[m.Options().Addr] {
			owners[m.Options().Addr] = true
			keys = append(keys, k)
		}
	}
	if len(keys) != 3 {
		t.Fatalf("found keys on %d masters, want 3", len(keys))
	}
	// Warm up: every node connection's handshake is counted too.
	for range 2 {
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Incr(ctx, k)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	before := counters(t, reg)
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Incr(ctx, k)
			p.Incr(ctx, k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	after := counters(t, reg)
	if d := after[0] - before[0]; d != 3 {
		t.Errorf("a pipeline over 3 masters: %v round trips, want 3", d)
	}
	if d := after[1] - before[1]; d != 6 {
		t.Errorf("a pipeline of 6 commands: %v commands, want 6", d)
	}
}

// counters returns mpim_redis_roundtrips_total and
// mpim_redis_commands_sent_total of reg.
func counters(t *testing.T, reg *prometheus.Registry) [2]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out [2]float64
	for _, mf := range mfs {
		for i, name := range []string{"mpim_redis_roundtrips_total", "mpim_redis_commands_sent_total"} {
			if mf.GetName() == name {
				out[i] = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
	}
	return out
}
