package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mpim/mpim/internal/testsvc"
)

// The dependency crashes of the fault tests (fault_test.go): MariaDB and
// ZooKeeper, each a private server of the test (the shared ones other tests
// use stay up) run with production durability, are killed with SIGKILL under
// traffic and started again on the same port and data directory once the
// test has seen what it must see while they are down (conditions, not
// times). Each test ends with fault_test.go's audit: every acknowledged send
// is in the log once, with gapless seqs, in the MySQL read model once the
// projector has caught up, and shown exactly once, in order, on every device
// of every member.
//
//	go test -race -count=1 -run 'Fault(MariaDB|ZooKeeper)' -v ./cmd/mpimd

// outageSends is how many sends each sender must have acknowledged before a
// crash, while the server is down and after its restart.
const outageSends = 20

// MariaDB (redo log and binary log flushed at every commit) is killed with
// SIGKILL while a read-model batch is in the middle of its transaction, under
// traffic, and restarted on the same data directory: InnoDB recovers and
// rolls the interrupted transactions back (its log says so). While it is down
// sends go on being acknowledged and delivered (the log and the inboxes are
// Redis; nothing on the send and delivery path reads MySQL): the test waits,
// without a time bound of its own, until every sender has outageSends more
// sends acknowledged and every device shows them, and only then restarts
// MariaDB, checking first that it still does not answer. The projectors retry
// their batches and catch up: the read model holds every acknowledged
// message, and the read model's and the archive's checkpoints describe
// their rows exactly (no gap, no double). No login or registration is
// attempted during the outage (they need MySQL and fail).
func TestFaultMariaDBOutage(t *testing.T) {
	began := time.Now()
	db := startFaultMariaDB(t)
	// testsvc.MySQL creates the test's database on the private server.
	t.Setenv("MPIM_TEST_MYSQL", db.dsn)
	rt := testsvc.Redis(t)
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a", "gw-b"})
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)
	tr.waitEach("traffic before the MariaDB kill", make([]int, len(senders)), outageSends)
	tr.pauseDrops() // a dropped device resumes with its token, which MySQL holds

	blockReadModelBatch(t, fc.dsn)
	atKill := tr.snapshot()
	var duringOutage []int
	var inOutage deliveryAudit
	trimFailures, trimRefused := loggedCount(t, fc.projector, "trim failed"), false
	down := db.crash(func() {
		// Sends are acknowledged while MariaDB is down...
		tr.waitEach("sends acked while MariaDB is down", atKill, outageSends)
		// ...and delivered before it is back.
		sent := tr.sent.all()
		waitUntil(t, "every acked send delivered while MariaDB is down", func() bool {
			inOutage = audit(sent, devs)
			return inOutage.missing == 0
		})
		if db.running() || db.ping() == nil {
			t.Fatal("MariaDB answered during its outage")
		}
		now := tr.snapshot()
		for i := range now {
			duringOutage = append(duringOutage, now[i]-atKill[i])
		}
		// The trim loop runs while the MySQL projectors lag (the Redis ones
		// delivered the outage's sends): it cannot read their checkpoints,
		// so it must trim nothing. The audits below find any entry a trim
		// below a lagging checkpoint removed before it was projected.
		trimRefused = seenWithin(time.Minute, func() bool {
			return loggedCount(t, fc.projector, "trim failed") > trimFailures
		})
	})
	restarted := time.Now()
	atRestart := streamTrimNow(t, rt.Addr, rt.Prefix, fc.partitions)
	recovery := db.lastStartLog()
	for _, want := range []string{"Starting crash recovery", "Rolled back recovered transaction"} {
		if !strings.Contains(recovery, want) {
			t.Errorf("MariaDB's log of its restart does not say %q: no crash recovery of an interrupted transaction", want)
		}
	}
	tr.dropping.Store(true)
	tr.waitEach("every sender acked again after MariaDB's restart", tr.snapshot(), outageSends)
	// Still under traffic: the MySQL projectors catch up on the outage's
	// entries and the trim follows them, removing everything appended up
	// to the restart; the audits below show none of it went missing.
	t.Logf("at MariaDB's restart: %v; then %v", atRestart, waitTrimmedThrough(t, rt.Addr, rt.Prefix, fc.partitions, atRestart))
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, append([]*mpimdProc{fc.projector}, fc.gateways...)...)

	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	drained := time.Since(restarted)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	t.Logf("MariaDB killed mid-batch after %d sends acked, down %.1fs (SIGKILL to serving again, crash recovery included: %d transactions rolled back); "+
		"%v sends acked per sender while down; %d (recipient device) deliveries checked while down: %d missing, %d twice",
		sum(atKill), down.Seconds(), strings.Count(recovery, "Rolled back recovered transaction"), duringOutage,
		inOutage.checked, inOutage.missing, inOutage.twice)
	logFaultAudit(t, &tr.st, la, rows, final, began)
	t.Logf("read model: %d rows, all acked sends, %.1fs after MariaDB's restart", rows, drained.Seconds())
	if inOutage.twice > 0 || inOutage.mismatched > 0 {
		t.Errorf("delivery while MariaDB was down: %v", inOutage)
	}
	if !trimRefused {
		t.Errorf("no \"trim failed\" in the projector's log while MariaDB was down (in a minute): the trim must refuse when it cannot read a checkpoint")
	}
	wantAuditsOK(t, la, len(sent), final)
}

// ZooKeeper (forceSync=yes: every transaction fsynced before it is
// acknowledged) is killed with SIGKILL under traffic, with two projector
// members sharing the partitions, and stays down until every mpimd process
// has presumed its session lost (no connection for a third of the 4s session
// timeout) and every sender has outageSends more sends acknowledged (they
// need only Redis). It restarts on the same data directory; the members
// rejoin, every partition of every projector gets exactly one owner again,
// both gateways are registered, and everything acknowledged is delivered
// once and projected.
func TestFaultZooKeeperOutage(t *testing.T) {
	began := time.Now()
	zks := startFaultZooKeeper(t)
	// testsvc.ZooKeeper hands out the private server.
	t.Setenv("MPIM_TEST_ZK", zks.addr)
	rt := testsvc.Redis(t)
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a", "gw-b"})
	p1 := fc.startProjector(t, "p1")
	fc.waitReady(t, p1)
	procs := append([]*mpimdProc{fc.projector, p1}, fc.gateways...)
	root := flagValue(fc.common, "--zk-root")
	_, before := waitOwnership(t, zks.addr, root, fc.partitions, 2, []string{"gw-a", "gw-b"}, nil)
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)
	tr.waitEach("traffic before the ZooKeeper kill", make([]int, len(senders)), outageSends)
	fc.faults.refanout.Store(true) // an inbox projector that lost its session may append a batch again

	const presumedLost = "session presumed lost"
	lostBefore := make([]int, len(procs))
	for i, p := range procs {
		lostBefore[i] = loggedCount(t, p, presumedLost)
	}
	atKill := tr.snapshot()
	var duringOutage []int
	down := zks.crash(func() {
		tr.waitEach("sends acked while ZooKeeper is down", atKill, outageSends)
		waitUntil(t, "every mpimd process to presume its ZooKeeper session lost", func() bool {
			for i, p := range procs {
				if loggedCount(t, p, presumedLost) == lostBefore[i] {
					return false
				}
			}
			return true
		})
		now := tr.snapshot()
		for i := range now {
			duringOutage = append(duringOutage, now[i]-atKill[i])
		}
	})
	restarted := time.Now()
	// The members presumed their sessions lost: they rejoin with new nodes.
	settled, _ := waitOwnership(t, zks.addr, root, fc.partitions, 2, []string{"gw-a", "gw-b"}, before)
	tr.waitEach("every sender acked again after ZooKeeper's restart", tr.snapshot(), outageSends)
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, procs...)
	for _, gw := range fc.gateways {
		if _, err := dispatch(gw.addr); err != nil {
			t.Errorf("%s does not dispatch after ZooKeeper's restart: %v", gw.name, err)
		}
	}

	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	drained := time.Since(restarted)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	t.Logf("ZooKeeper killed after %d sends acked, down %.1fs (SIGKILL to serving again); %v sends acked per sender while down; "+
		"ownership settled (2 rejoined members per projector, every partition owned by one of them, both gateways registered) %.1fs after the restart",
		sum(atKill), down.Seconds(), duringOutage, settled.Seconds())
	logFaultAudit(t, &tr.st, la, rows, final, began)
	t.Logf("read model: %d rows, all acked sends, %.1fs after ZooKeeper's restart", rows, drained.Seconds())
	wantAuditsOK(t, la, len(sent), final)
}

// logFaultAudit logs the send counts and the audits' results.
func logFaultAudit(t *testing.T, sst *sendStats, la logAudit, rows int64, final deliveryAudit, began time.Time) {
	t.Helper()
	var st sendStats
	sst.count(func(s *sendStats) {
		st.acked, st.retries, st.failed, st.duplicates, st.rateLimited = s.acked, s.retries, s.failed, s.duplicates, s.rateLimited
	})
	t.Logf("%d sends acked, %d retried (%d answered unavailable/conflict), %d answered as duplicates, %d rate limited",
		st.acked, st.retries, st.failed, st.duplicates, st.rateLimited)
	logAudits(t, la, rows, final, began)
}

// logAudits logs the log, read model and delivery audits of a fault test
// that began at began.
func logAudits(t *testing.T, la logAudit, rows int64, final deliveryAudit, began time.Time) {
	t.Helper()
	t.Logf("%v", la)
	t.Logf("read model: %d messages rows", rows)
	t.Logf("devices: %v; %.1fs in all", final, time.Since(began).Seconds())
}

// wantAuditsOK fails t unless the log holds the acked sends, each once,
// and every device got every one of them.
func wantAuditsOK(t *testing.T, la logAudit, acked int, final deliveryAudit) {
	t.Helper()
	if !la.ok(acked) {
		t.Errorf("log audit: %d acked, %v", acked, la)
	}
	if !final.ok() {
		t.Errorf("delivery audit: %v", final)
	}
}

// waitOwnership waits until, in the ZooKeeper tree under root, every
// projector has members member nodes, none of them in stale, and one owner
// node per partition held by one of them, and exactly gateways are
// registered. It returns how long that took and the member nodes.
func waitOwnership(t *testing.T, server, root string, partitions, members int, gateways []string, stale map[string]bool) (time.Duration, map[string]bool) {
	t.Helper()
	start := time.Now()
	c, _, err := zk.Connect([]string{server}, 5*time.Second, zk.WithLogger(zkQuiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last string
	current := map[string]bool{}
	check := func() error {
		clear(current)
		gws, _, err := c.Children(root + "/gateways")
		if err != nil {
			return err
		}
		slices.Sort(gws)
		if !slices.Equal(gws, gateways) {
			return fmt.Errorf("gateways registered: %v", gws)
		}
		names, _, err := c.Children(root + "/projectors")
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return errors.New("no projectors")
		}
		var problems []string
		for _, name := range names {
			dir := root + "/projectors/" + name
			ms, _, err := c.Children(dir + "/members")
			if err != nil {
				return err
			}
			old := 0
			for _, m := range ms {
				current[m] = true
				if stale[m] {
					old++
				}
			}
			owners, _, err := c.Children(dir + "/owners")
			if err != nil {
				return err
			}
			foreign := 0
			for _, p := range owners {
				data, _, err := c.Get(dir + "/owners/" + p)
				if err != nil {
					return err
				}
				var o struct{ Node string }
				if json.Unmarshal(data, &o) != nil || !slices.Contains(ms, o.Node) {
					foreign++
				}
			}
			if len(ms) != members || old > 0 || len(owners) != partitions || foreign > 0 {
				problems = append(problems, fmt.Sprintf("%s: %d members (%d from before), %d of %d partitions owned (%d by no member)",
					name, len(ms), old, len(owners), partitions, foreign))
			}
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		return nil
	}
	waitUntil(t, "ZooKeeper ownership to settle", func() bool {
		err := check()
		if err != nil && err.Error() != last {
			last = err.Error()
			t.Logf("ownership after %.1fs: %v", time.Since(start).Seconds(), err)
		}
		return err == nil
	})
	return time.Since(start), maps.Clone(current)
}
