package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster the memory guard goes by the fullest master: with one
// master filled past the limit and the others nearly empty, every check
// refuses new content and the warning names that master. A guard reading
// one node (a random master, as a cluster client sends INFO) would flip
// between verdicts.
func TestMemoryGuardOnClusterWatchesTheFullestMaster(t *testing.T) {
	ct := testsvc.StartRedisCluster(t, "--maxmemory", "32mb", "--maxmemory-policy", "noeviction")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	var logs bytes.Buffer
	g := &memoryGuard{rdb: rdb, fraction: 0.5, interval: 10 * time.Millisecond,
		log: slog.New(slog.NewTextHandler(&logs, nil)), ratio: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ratio"})}

	if !g.check(ctx) || g.over.Load() {
		t.Fatalf("empty cluster: guard refuses (ratio %.2f)", metricValue(t, g.ratio))
	}

	// Fill one master to 60% of its maxmemory with keys of one hash tag
	// that it holds.
	masters := ct.Masters(t)
	full := masters[len(masters)-1]
	tag := ""
	for i := 0; tag == ""; i++ {
		if i == 1000 {
			t.Fatalf("no hash tag of master %s among 1000", full)
		}
		node, err := rdb.MasterForKey(ctx, fmt.Sprintf("{fill%d}", i))
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr == full {
			tag = fmt.Sprintf("{fill%d}", i)
		}
	}
	node := redis.NewClient(&redis.Options{Addr: full})
	defer node.Close()
	filler := strings.Repeat("x", 256<<10)
	for i := 0; ; i++ {
		m, err := fullestNode(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		if m.used >= m.limit*6/10 {
			break
		}
		if i == 200 {
			t.Fatalf("used_memory %d of %d on %s after %d filler keys", m.used, m.limit, full, i)
		}
		if err := rdb.Set(ctx, fmt.Sprintf("%s%s:%d", ct.Prefix, tag, i), filler, 0).Err(); err != nil {
			t.Fatalf("filling: %v", err)
		}
	}

	for i := range 3 * len(masters) {
		if !g.check(ctx) || !g.over.Load() {
			t.Fatalf("check %d: master %s at 60%% of maxmemory, guard does not refuse (ratio %.2f)", i, full, metricValue(t, g.ratio))
		}
	}
	if r := metricValue(t, g.ratio); r < 0.5 {
		t.Fatalf("ratio %.2f, want that of the fullest master (>= 0.6)", r)
	}
	if !strings.Contains(logs.String(), "node="+full) {
		t.Fatalf("the warning does not name master %s:\n%s", full, logs.String())
	}
}
