package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// The failover tests: the deployment runs on a Redis Cluster of three
// masters with one replica each (no persistence: a replica's copy is all
// that survives a master), under the fault traffic of fault_test.go. The
// master holding most of the traffic's conversations first cuts its
// replica off (stallReplication), which makes the window a failover loses
// certain instead of a race on loopback, where a replica is never more
// than a moment behind; then it is killed with SIGKILL. The cluster itself
// promotes the replica (cluster-node-timeout lowered to failoverNodeTimeout
// so that it happens within seconds); the killed node is started again and
// rejoins as the new master's replica, as a supervisor would restart it.
// The gateways and the projector reconnect by themselves and the clients
// retry with the same client message ids.
//
//	go test -race -count=1 -run FaultRedisClusterFailover -v ./cmd/mpimd

// failoverNodeTimeout is the test cluster's cluster-node-timeout (ms): a
// master unreachable that long is marked failing and its replica elected.
const failoverNodeTimeout = "1000"

// lagSends is how many sends the stalled replication must hold back before
// the kill: acknowledged ones without --wait-replicas, refused ones with
// it.
const lagSends = 5

// With --wait-replicas 1 an append is acknowledged only once the replica
// of its master has it: while the replica lags, the appends on its master
// are answered unavailable (and retried), so the promoted replica holds
// every acknowledged send and nothing is lost, duplicated or reordered in
// the log, the read models or on any device. Until the killed node is back
// as a replica, the new master has none, and its appends are refused too.
func TestFaultRedisClusterFailoverWithWaitReplicas(t *testing.T) {
	ft := runFailover(t, true, "--wait-replicas", "1")
	la := ft.fc.auditLog(t, ft.sent)
	rows := ft.fc.auditReadModels(t, ft.sent)
	final := waitDelivered(t, "every acknowledged send", ft.sent, ft.devs)
	logFaultAudit(t, &ft.tr.st, la, rows, final, ft.began)
	wantAuditsOK(t, la, len(ft.sent), final)
}

// Without --wait-replicas an append is acknowledged once its master has
// it, and what the cut-off replica had not received when the master died
// is lost. The test reports what was lost, requires the log that survived
// to be consistent (gapless seqs, heads matching, no client id twice,
// nothing unlike what was acknowledged) and the service to take sends
// again. The projectors had applied some of the lost events: the read
// models, the archive and the devices may hold them, and the MySQL read
// model sets aside (quarantines) the later events that reuse their
// conversation seqs (docs/deployment.md), so they are reported, not
// audited. Without trimming: the audit is of the log Redis kept, as in
// TestFaultRedisPowerLossWithFsyncEverysec.
func TestFaultRedisClusterFailoverWithoutWait(t *testing.T) {
	ft := runFailover(t, false, "--trim-interval", "0")
	la := ft.fc.auditLog(t, ft.sent)
	if la.mismatched != 0 || la.dupClient != 0 || la.seqProblems != 0 || la.messages != len(ft.sent)-la.missing {
		t.Errorf("the log after the failover is not a consistent prefix plus later sends: %v", la)
	}
	var lost []string
	for _, m := range la.lost {
		lost = append(lost, m.key.clientMsgID)
	}
	t.Logf("%v", la)
	t.Logf("without --wait-replicas the failover lost %d of %d acknowledged sends %v; the projector quarantined %d events; %.1fs in all",
		la.missing, len(ft.sent), lost, loggedCount(t, ft.fc.projector, `msg="event quarantined"`), time.Since(ft.began).Seconds())
}

// failoverTest is a fault cluster on a Redis Cluster after the failover,
// its traffic stopped.
type failoverTest struct {
	ct    *testsvc.RedisClusterTarget
	fc    *faultCluster
	devs  []*e2eDevice
	tr    *faultTraffic
	sent  []sentMsg
	began time.Time
}

// runFailover runs the failover under traffic with mpimd's flags (waits:
// they include --wait-replicas) and stops the traffic once every sender
// has outageSends acked after the kill.
func runFailover(t *testing.T, waits bool, flags ...string) *failoverTest {
	t.Helper()
	ft := &failoverTest{began: time.Now()}
	expectFailoverRedirects(t)
	ft.ct = testsvc.StartRedisCluster(t, append([]string{"--cluster-node-timeout", failoverNodeTimeout}, replicationUser...)...)
	ft.fc = startFaultCluster(t, strings.Join(ft.ct.Addrs, ","), ft.ct.Prefix, []string{"gw-a", "gw-b"}, flags...)
	devs, senders, gid := ft.fc.setupUsers(t)
	ft.devs = devs
	ft.tr = startFaultTraffic(t, ft.fc.ctx, senders, gid)
	ft.tr.waitEach("traffic before the replication stall", make([]int, len(senders)), outageSends)

	victim, convs := ft.busiestMaster(t)
	replica := ft.ct.ReplicaOf(t, victim)
	// From the stall until every sender is acked again, unavailable
	// answers are expected; the inbox projector may be cut off mid-batch.
	ft.fc.faults.outage.Store(true)
	ft.fc.faults.refanout.Store(true)
	atStall := ft.tr.snapshot()
	refused := func() int {
		var n int
		ft.tr.st.count(func(s *sendStats) { n = s.outage })
		return n
	}
	refusedAtStall := refused()
	stallReplication(t, victim)
	if waits {
		waitUntil(t, fmt.Sprintf("%d sends refused while the replica lags", lagSends), func() bool { return refused() >= refusedAtStall+lagSends })
	} else {
		ft.tr.waitEach("sends acked while the replica lags", atStall, lagSends)
	}
	lag := replOffset(t, victim) - replOffset(t, replica)
	if lag <= 0 {
		t.Fatalf("the replica %s is not behind its master %s after the stall (%d bytes)", replica, victim, lag)
	}
	atKill := ft.tr.snapshot()
	ft.ct.KillNode(t, victim)
	killed := time.Now()
	testsvc.Eventually(t, 30*time.Second, "the replica "+replica+" of the killed master "+victim+" took over", func() bool {
		return ft.ct.Ready() == nil && slices.Contains(ft.ct.Masters(t), replica)
	})
	failedOver := time.Since(killed)
	if !waits { // the new master needs no replica to take sends
		ft.tr.waitEach("every sender acked once after the failover", ft.tr.snapshot(), 1)
	}
	resumed := time.Since(killed)
	ft.ct.RestartNode(t, victim)
	testsvc.Eventually(t, 30*time.Second, "the killed master "+victim+" back as a replica", func() bool {
		return ft.ct.Ready() == nil && !slices.Contains(ft.ct.Masters(t), victim)
	})
	rejoined := time.Since(killed)
	if waits {
		ft.tr.waitEach("every sender acked once after the failover", ft.tr.snapshot(), 1)
		resumed = time.Since(killed)
	}
	ft.fc.faults.outage.Store(false)
	ft.tr.waitEach("every sender acked again after the failover", atKill, outageSends)
	ft.tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, append([]*mpimdProc{ft.fc.projector}, ft.fc.gateways...)...)
	ft.sent = ft.tr.sent.all()
	var failed int
	ft.tr.st.count(func(s *sendStats) { failed = s.failed })
	t.Logf("master %s (%d of the traffic's conversations) stopped replicating after %d sends acked and was killed after %d, its replica %d bytes behind; "+
		"replica %s took over %.1fs after the kill; every sender acked again %.1fs after it; the killed node was back as a replica %.1fs after it; "+
		"%d sends answered unavailable/conflict from the stall until every sender was acked again, %d outside that",
		victim, convs, sum(atStall), sum(atKill), lag, replica, failedOver.Seconds(), resumed.Seconds(), rejoined.Seconds(), refused()-refusedAtStall, failed)
	return ft
}

// busiestMaster returns the master whose partitions hold most of the
// conversations of the sends acked so far, and how many.
func (ft *failoverTest) busiestMaster(t *testing.T) (string, int) {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ft.ct.Addrs})
	defer rdb.Close()
	store := openLog(t, ft.fc.redisAddr, ft.fc.prefix, ft.fc.partitions)
	byMaster := map[string]int{}
	seen := map[string]bool{}
	for _, m := range ft.tr.sent.all() {
		if seen[m.key.conv] {
			continue
		}
		seen[m.key.conv] = true
		key := logKey(ft.fc.prefix, store.PartitionOf(domain.ConversationID(m.key.conv).PartitionKey()))
		node, err := rdb.MasterForKey(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		byMaster[node.Options().Addr]++
	}
	var busiest string
	for a, n := range byMaster {
		if busiest == "" || n > byMaster[busiest] {
			busiest = a
		}
	}
	if busiest == "" {
		t.Fatal("no acked send before the replication stall")
	}
	return busiest, byMaster[busiest]
}

// replicationUser is the ACL user replicas authenticate as on their
// master (every node has it: any node may become a master); clients use
// the default user.
var replicationUser = []string{"--user", "repl", "on", ">repl", "~*", "&*", "+@all", "--masteruser", "repl", "--masterauth", "repl"}

// stallReplication cuts the replica of the master at addr off: the master
// disables the user replicas authenticate as and drops their links, so the
// replica's reconnects are refused and it falls behind (its data stays
// recent enough to be promoted: cluster-node-timeout times the validity
// factor, 10s here).
func stallReplication(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	err := c.Do(ctx, "ACL", "SETUSER", "repl", "off").Err()
	if err == nil {
		err = c.Do(ctx, "CLIENT", "KILL", "USER", "repl").Err()
	}
	if err != nil {
		t.Fatalf("stalling the replication of %s: %v", addr, err)
	}
}

// replOffset returns the replication offset of the node at addr (INFO
// replication master_repl_offset: what a master wrote, what a replica
// applied).
func replOffset(t *testing.T, addr string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication of %s: %v", addr, err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "master_repl_offset:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO replication of %s: %q: %v", addr, line, err)
			}
			return n
		}
	}
	t.Fatalf("INFO replication of %s has no master_repl_offset", addr)
	return 0
}
