package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
)

// redisClusterAddr is the --redis-addr of a deployment on ct: every node.
func redisClusterAddr(ct *testsvc.RedisClusterTarget) string { return strings.Join(ct.Addrs, ",") }

// startOnRedisCluster starts one `mpimd all` on the test services' Redis
// Cluster (three masters and their replicas, every node a seed address),
// real MySQL and static coordination, with log level info. The one process
// is the deployment's projector and both its "gateways", like the embedded
// one, so the end-to-end tests run unchanged against it. Its log must hold
// no MOVED, ASK or CROSSSLOT (startMpimd).
func startOnRedisCluster(t *testing.T, ct *testsvc.RedisClusterTarget) *e2eCluster {
	t.Helper()
	bin := buildBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	cl := &e2eCluster{t: t, ctx: ctx}
	t.Cleanup(func() { cl.stopDevices(cancel) })
	p := startMpimd(t, bin, t.TempDir(), "gw-cluster", "all", "--gateway-id", "gw-cluster", "--listen", testsvc.FreeAddr(t),
		"--redis-addr", redisClusterAddr(ct), "--prefix", ct.Prefix, "--mysql", testsvc.MySQL(t),
		"--partitions", e2ePartitions, "--log-level", "info")
	waitUntil(t, "mpimd on the Redis Cluster ready", func() bool {
		if !p.alive() {
			t.Fatalf("mpimd on the Redis Cluster exited at start-up: %v", p.err)
		}
		return httpGet(p.ops, "/readyz") == http.StatusOK && httpGet(p.addr, "/dispatch") == http.StatusOK
	})
	cl.projector, cl.gateways = p, []*mpimdProc{p, p}
	return cl
}

// The chat of TestE2EChatReachesEveryDeviceOnBothGateways (register, 1:1
// and group messages, delivery to every device with the delivery audit, a
// resume) against `mpimd all` on a Redis Cluster of three masters, with
// sharded pub/sub (wantShardedPubSub).
func TestRedisClusterE2EChat(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	cl := startOnRedisCluster(t, ct)
	wantShardedPubSub(t, ct, cl, func() { testE2EChat(t, cl) })
}

// The kills of TestFaultProjectorAndGatewayKill (the projector cut off
// mid-batch, then the projector and gateway A at once, under the fault
// traffic) on a deployment on the Redis Cluster: there the inbox
// projector's per-inbox script calls of a batch end independently, so a
// kill leaves more of a batch's entries written, and fanned out again by
// the next projector, than on one server.
func TestRedisClusterFaultProjectorAndGatewayKill(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	testFaultProjectorAndGatewayKill(t, redisClusterAddr(ct), ct.Prefix)
}

// The chat of TestE2EChatReachesEveryDeviceOnBothGateways, then the
// offline catch-up of TestE2EOfflineDevicesCatchUpInOrder (1,000 messages
// to offline devices, then live ones), on a Redis Cluster of three masters
// and one deployment: gateways gw-a and gw-b, projector processes p0 and p1
// sharing every projector's partitions under ZooKeeper, trimming every
// testTrimInterval, with sharded pub/sub (wantShardedPubSub). Then every
// send either acknowledged is audited in the log, read across the trims
// (the archive, then the streams), in every read model, and on every
// device. No process logs MOVED, ASK or CROSSSLOT (startMpimd).
func TestRedisClusterE2EAudited(t *testing.T) {
	began := time.Now()
	ct := testsvc.RedisCluster(t)
	fc := startFaultCluster(t, redisClusterAddr(ct), ct.Prefix, []string{"gw-a", "gw-b"}, "--log-level", "info")
	p1 := fc.startProjector(t, "p1")
	fc.waitReady(t, p1)
	own := waitOwners(t, flagValue(fc.common, "--zookeeper"), flagValue(fc.common, "--zk-root"), "p0 and p1 share every projector",
		sharedByP0AndP1(fc.partitions))
	var sent []sentMsg
	wantShardedPubSub(t, ct, fc.e2eCluster, func() {
		sent = append(testE2EChat(t, fc.e2eCluster), testE2EOfflineCatchUp(t, fc.e2eCluster)...)
	})
	checkAlive(t, append([]*mpimdProc{fc.projector, p1}, fc.gateways...)...)

	fc.mu.Lock()
	devs := slices.Clone(fc.devices)
	fc.mu.Unlock()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	t.Logf("p1 owned partitions %v of each projector", own.partitionsOf("archive", "p1"))
	logAudits(t, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)
}

// wantShardedPubSub runs chat on cl, a deployment on ct, and checks that
// its notifications went by sharded pub/sub: the masters ran SPUBLISH and
// no PUBLISH meanwhile, and every gateway, subscribed through its cluster
// client, received notifications.
func wantShardedPubSub(t *testing.T, ct *testsvc.RedisClusterTarget, cl *e2eCluster, chat func()) {
	t.Helper()
	publish, spublish := ct.CommandCalls(t, "publish"), ct.CommandCalls(t, "spublish")
	chat()
	var sharded int64
	for m, n := range ct.CommandCalls(t, "publish") {
		if n != publish[m] {
			t.Errorf("master %s ran %d PUBLISH during the chat, want 0", m, n-publish[m])
		}
	}
	for m, n := range ct.CommandCalls(t, "spublish") {
		sharded += n - spublish[m]
	}
	if sharded == 0 {
		t.Error("no master ran SPUBLISH during the chat")
	}
	for _, g := range cl.gateways {
		if n := scrapeCounter(t, g.ops, "mpim_gateway_notifications_received_total"); n == 0 {
			t.Errorf("gateway %s on the cluster received no notification", g.name)
		}
	}
}

// scrapeCounter reads the value of an unlabelled metric from /metrics.
func scrapeCounter(t *testing.T, ops, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return n
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
