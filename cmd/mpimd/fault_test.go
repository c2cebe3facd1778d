package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	pmysql "github.com/mpim/mpim/projectors/mysql"
	"github.com/redis/go-redis/v9"
)

// The fault tests: real mpimd processes under client traffic (the e2e
// harness's devices: client message ids, retries with the same id across
// reconnects, de-duplication by event id), while a dependency or a process
// is killed with SIGKILL and restarted. Throughout, every few sends drop
// their connection right after being written and are retried with the same
// client message id on the next connection, so the idempotent-retry path
// runs in every test (faultTraffic.wantIdempotentRetries). Each ends with
// an audit: every acknowledged send is in the log once (gapless seqs per
// conversation), in the read model, and shown exactly once, in order, on
// every device of every member and on no other, with no push the delivery
// contract forbids and no ack error (deliveryAudit). Bounded in time and
// messages; no timing is asserted.
//
//	go test -race -count=1 -run Fault -v ./cmd/mpimd

// faultRedis is a private redis-server on a loopback port of its own, with
// AOF (appendfsync always or everysec) in a temporary directory; it can be killed and
// restarted on the same port and directory. The shared Redis is not touched.
type faultRedis struct {
	t      *testing.T
	addr   string
	port   string
	dir    string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
	fsync  string // appendfsync: always or everysec
}

func startFaultRedis(t *testing.T, fsync string) *faultRedis {
	t.Helper()
	return startFaultRedisIn(t, fsync, t.TempDir())
}

// startFaultRedisIn is startFaultRedis with the AOF in dir (its log
// elsewhere).
func startFaultRedisIn(t *testing.T, fsync, dir string) *faultRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (scripts/services.sh installs it): %v", err)
	}
	addr := testsvc.FreeAddr(t)
	r := &faultRedis{t: t, addr: addr, port: addr[strings.LastIndex(addr, ":")+1:], dir: dir, fsync: fsync}
	r.log = filepath.Join(t.TempDir(), "redis.log")
	r.start()
	t.Cleanup(func() {
		if r.alive() {
			r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(r.log)
			if len(out) > 8<<10 {
				out = out[len(out)-8<<10:]
			}
			t.Logf("redis-server log:\n%s", out)
		}
	})
	return r
}

// start runs redis-server on r's port and directory and waits until it
// answers PING (after loading its AOF).
func (r *faultRedis) start() {
	r.t.Helper()
	r.starts++
	r.cmd = exec.Command("redis-server", "--port", r.port, "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", r.fsync, "--save", "", "--daemonize", "no",
		"--logfile", r.log, "--protected-mode", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	r.exited = make(chan struct{})
	cmd, exited := r.cmd, r.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	c := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	waitUntil(r.t, fmt.Sprintf("redis-server on %s (start %d)", r.addr, r.starts), func() bool {
		if !r.alive() {
			r.t.Fatalf("redis-server exited at start-up (start %d), see %s", r.starts, r.log)
		}
		return c.Ping(context.Background()).Err() == nil
	})
}

func (r *faultRedis) alive() bool {
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// kill ends redis-server with SIGKILL and waits for it to be gone.
func (r *faultRedis) kill() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatalf("kill -9 redis-server: %v", err)
	}
	<-r.exited
}

// faultCluster is an e2e cluster whose processes the test may kill and
// restart: one projector and the given gateways.
type faultCluster struct {
	*e2eCluster
	bin, logDir string
	common      []string
	redisAddr   string
	prefix      string
	dsn         string
	partitions  int
	trims       bool // --trim-interval is not 0
}

// startFaultCluster starts one projector and a gateway per id on the Redis
// at redisAddr (prefix), a fresh MySQL database and a ZooKeeper root of the
// test's own; extra are flags of every process (e.g. --fsync-always).
func startFaultCluster(t *testing.T, redisAddr, prefix string, gatewayIDs []string, extra ...string) *faultCluster {
	t.Helper()
	dsn := testsvc.MySQL(t)
	servers, root := testsvc.ZooKeeper(t)
	t.Cleanup(func() {
		if err := testsvc.DeleteZooKeeperTree(servers, root); err != nil {
			t.Logf("deleting ZooKeeper %s: %v", root, err)
		}
	})
	fc := &faultCluster{bin: buildBinary(t), logDir: t.TempDir(), redisAddr: redisAddr, prefix: prefix, dsn: dsn,
		trims: flagValue(extra, "--trim-interval") != "0"}
	if _, err := fmt.Sscan(e2ePartitions, &fc.partitions); err != nil {
		t.Fatal(err)
	}
	fc.common = append([]string{"--redis-addr", redisAddr, "--prefix", prefix, "--mysql", dsn, "--batch-size", "100",
		"--log-level", "warn", "--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
		"--partitions", e2ePartitions, "--trim-interval", testTrimInterval}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	fc.e2eCluster = &e2eCluster{t: t, ctx: ctx}
	t.Cleanup(func() { fc.stopDevices(cancel) })
	fc.projector = fc.startProjector(t, "p0")
	for _, id := range gatewayIDs {
		fc.gateways = append(fc.gateways, fc.startGateway(t, id, testsvc.FreeAddr(t)))
	}
	for _, p := range append([]*mpimdProc{fc.projector}, fc.gateways...) {
		fc.waitReady(t, p)
	}
	return fc
}

func (fc *faultCluster) startProjector(t *testing.T, member string) *mpimdProc {
	t.Helper()
	return startMpimd(t, fc.bin, fc.logDir, "projector-"+member, append(append([]string{"projector"}, fc.common...), "--member-id", member)...)
}

func (fc *faultCluster) startGateway(t *testing.T, id, listen string) *mpimdProc {
	t.Helper()
	return startMpimd(t, fc.bin, fc.logDir, id, append(append([]string{"gateway"}, fc.common...), "--gateway-id", id, "--listen", listen)...)
}

func (fc *faultCluster) waitReady(t *testing.T, p *mpimdProc) {
	t.Helper()
	waitUntil(t, p.name+" ready", func() bool {
		if !p.alive() {
			t.Fatalf("%s exited: %v", p.name, p.err)
		}
		return httpGet(p.ops, "/readyz") == http.StatusOK && (p.addr == "" || httpGet(p.addr, "/dispatch") == http.StatusOK)
	})
}

// checkAlive fails the test if one of procs has exited.
func checkAlive(t *testing.T, procs ...*mpimdProc) {
	t.Helper()
	for _, p := range procs {
		if !p.alive() {
			t.Errorf("%s exited: %v (it must survive the fault and reconnect by itself)", p.name, p.err)
		}
	}
}

// logAudit reads every partition of the log (the archived entries the trim
// removed, then the stream) and checks it against the acknowledged sends: each
// conversation's MessageSent events carry seqs 1..n in log order, every
// acknowledged send is there once with the event id and seq it was
// acknowledged with, and no client message id appears twice. The stream
// must have been trimmed: the deployments trim every testTrimInterval.
type logAudit struct {
	events, messages, conversations int
	missing, mismatched, dupClient  int
	seqProblems                     int
	trim                            streamTrim
	details                         []string
	lost                            []sentMsg // the acked sends missing
}

func (a *logAudit) detail(format string, args ...any) {
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

// ok reports whether the log holds exactly the acked sends and was trimmed
// (a deployment's audit reads across the trim).
func (a logAudit) ok(acked int) bool { return a.clean(acked) && a.trim.trimmed() > 0 }

// clean reports whether the log holds exactly the acked sends, each once,
// with gapless seqs.
func (a logAudit) clean(acked int) bool {
	return a.missing == 0 && a.mismatched == 0 && a.dupClient == 0 && a.seqProblems == 0 && a.messages == acked
}

func (a logAudit) String() string {
	return fmt.Sprintf("log: %d events, %d messages in %d conversations; %d acked sends missing, %d unlike acked, %d client ids twice, %d seq problems; %v%s",
		a.events, a.messages, a.conversations, a.missing, a.mismatched, a.dupClient, a.seqProblems, a.trim, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

// auditRedis returns a client of the Redis at redisAddr for the audits,
// closed when the test ends. redisAddr is a deployment's --redis-addr: one
// server, or a comma-separated list of a Redis Cluster's nodes, for which
// the client is a cluster client as the deployment's own.
func auditRedis(t *testing.T, redisAddr string) redis.UniversalClient {
	t.Helper()
	addrs, err := connect.ParseRedisAddrs(redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb, err := connect.Redis(ctx, connect.RedisConfig{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// openLog opens the log of prefix on the Redis at redisAddr (see
// auditRedis) for an audit; it is closed when the test ends.
func openLog(t *testing.T, redisAddr, prefix string, partitions int) *eventstore.Store {
	t.Helper()
	store, err := eventstore.Open(context.Background(), auditRedis(t, redisAddr), eventstore.Config{Prefix: prefix, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// eachEntry calls f with every entry of the log's streams, partition by
// partition, in log order.
func eachEntry(t *testing.T, store *eventstore.Store, partitions int, f func(p int, r eventstore.Recorded)) {
	t.Helper()
	eachRead(t, partitions, store.ReadPartition, f)
}

// eachRead calls f with every entry read, partition by partition, in log
// order.
func eachRead(t *testing.T, partitions int, read func(ctx context.Context, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, error),
	f func(p int, r eventstore.Recorded)) {
	t.Helper()
	for p := range partitions {
		var after eventstore.Position
		for {
			recs, err := read(context.Background(), p, after, 1000)
			if err != nil {
				t.Fatalf("reading partition %d: %v", p, err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				after = r.Position
				f(p, r)
			}
		}
	}
}

// auditLog audits sent against the log of fc, which trims: it waits until
// the streams were trimmed and reads each partition across the trim (the
// archive, then the stream).
func (fc *faultCluster) auditLog(t *testing.T, sent []sentMsg) logAudit {
	t.Helper()
	ctx := context.Background()
	redisAddr, prefix, partitions := fc.redisAddr, fc.prefix, fc.partitions
	store := openLog(t, redisAddr, prefix, partitions)
	archive, err := connect.MySQL(ctx, fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer archive.Close()
	// Every projector catches up first, so the log audited is the whole
	// log. A trim may still run while the audit reads: readTrimmedPartition
	// reads again when one moved the stream's first entry during its read
	// (a trim between two pages of the stream read once made the audit
	// skip 890 entries the log held), and a second read below tells a
	// transient read from a loss.
	// Trimmed before it is read: the audit then reads across the trim.
	var trim streamTrim
	if fc.trims {
		rmConns{ctx: ctx, rdb: auditRedis(t, redisAddr), store: store, db: archive,
			tg: rmTarget{redisAddr: redisAddr, prefix: prefix, dsn: fc.dsn, partitions: partitions}}.waitCaughtUp(t)
		trim = waitTrimmed(t, redisAddr, prefix, partitions)
	}
	// Each partition as Redis had it: what the trim removed (archived),
	// then the stream.
	curP, cur := -1, []eventstore.Recorded(nil)
	read := func(ctx context.Context, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
		if p != curP {
			var err error
			if cur, err = readTrimmedPartition(ctx, archive, store, p); err != nil {
				return nil, err
			}
			curP = p
		}
		i := 0
		for i < len(cur) && cur[i].Position.Compare(after) <= 0 {
			i++
		}
		return cur[i:min(i+limit, len(cur))], nil
	}
	a := checkLog(t, store, partitions, read, sent, logAudit{trim: trim})
	if len(a.lost) > 0 {
		a.details = append(a.details, "read again: "+rereadLost(t, archive, store, partitions, a.lost))
	}
	return a
}

// rereadLost reads the log across the trim once more and says how many of
// the acked sends a first read missed it finds, and where they are.
func rereadLost(t *testing.T, archive *sql.DB, store *eventstore.Store, partitions int, lost []sentMsg) string {
	t.Helper()
	ctx := context.Background()
	at := map[string]string{}
	for p := range partitions {
		info, err := store.Info(ctx, p)
		if err != nil {
			return err.Error()
		}
		head, err := pmysql.ArchiveHead(ctx, archive, p)
		if err != nil {
			return err.Error()
		}
		recs, err := readTrimmedPartition(ctx, archive, store, p)
		if err != nil {
			return err.Error()
		}
		for _, r := range recs {
			where := "stream"
			if r.Position.Compare(info.First) < 0 {
				where = "archive"
			}
			at[string(r.Event.GetId())] = fmt.Sprintf("p%d %s in the %s (stream from %s, archive head %s)", p, r.Position, where, info.First, head)
		}
	}
	found, first := 0, ""
	for _, m := range lost {
		if w, ok := at[m.eventID]; ok {
			found++
			if first == "" {
				first = w
			}
		}
	}
	return fmt.Sprintf("%d of the %d missing acked sends found; the first at %s", found, len(lost), first)
}

// checkLog audits sent against the log as read returns it, partition by
// partition (see eachRead), and the conversation heads of store.
func checkLog(t *testing.T, store *eventstore.Store, partitions int, read func(ctx context.Context, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, error),
	sent []sentMsg, a logAudit) logAudit {
	t.Helper()
	ctx := context.Background()
	type logged struct {
		conv string
		seq  uint64
	}
	byEvent := map[string]logged{}
	byClient := map[msgKey]bool{}
	lastSeq := map[string]uint64{}
	eachRead(t, partitions, read, func(_ int, r eventstore.Recorded) {
		a.events++
		m := r.Event.GetMessageSent()
		if m == nil {
			return
		}
		a.messages++
		conv, seq := m.GetConversationId(), r.Event.GetSeq()
		if seq != lastSeq[conv]+1 {
			a.seqProblems++
			a.detail("%s: seq %d follows %d in the log", conv, seq, lastSeq[conv])
		}
		lastSeq[conv] = seq
		byEvent[string(r.Event.GetId())] = logged{conv, seq}
		k := msgKey{conv: conv, sender: m.GetSenderId(), clientMsgID: m.GetClientMsgId()}
		if byClient[k] {
			a.dupClient++
			a.detail("%s: client message id %s appended twice", conv, k.clientMsgID)
		}
		byClient[k] = true
	})
	a.conversations = len(lastSeq)
	for _, m := range sent {
		l, ok := byEvent[m.eventID]
		switch {
		case !ok:
			a.missing++
			a.lost = append(a.lost, m)
			a.detail("%s (seq %d) acked but not in the log", m.key.clientMsgID, m.seq)
		case l.conv != m.key.conv || l.seq != m.seq:
			a.mismatched++
			a.detail("%s acked as %s seq %d, logged as %s seq %d", m.key.clientMsgID, m.key.conv, m.seq, l.conv, l.seq)
		}
	}
	for conv, last := range lastSeq {
		if _, seq, err := store.Version(ctx, domain.ConversationID(conv).PartitionKey(), conv); err != nil || seq != last {
			a.seqProblems++
			a.detail("%s: head seq %d (%v), log ends at %d", conv, seq, err, last)
		}
	}
	return a
}

// Redis, configured with AOF and appendfsync always, is killed with SIGKILL
// under traffic and restarted on the same port and directory. The projector
// and the gateway (both with --fsync-always) reconnect by themselves, the
// clients retry their sends with the same client message ids, and nothing
// acknowledged is lost, duplicated or reordered: not in the log, not in the
// read model, not on any device. A SIGKILL keeps the page cache, so this
// shows a process crash only; fault_power_test.go simulates a machine crash.
func TestFaultRedisProcessKillWithFsyncAlways(t *testing.T) {
	testFaultRedisRestart(t, "always", "--fsync-always")
}

// The same with appendfsync everysec: Redis writes the AOF before it
// replies, so a killed Redis process (not a crashed machine) loses nothing
// acknowledged either. docs/deployment.md states what everysec does not
// promise.
func TestFaultRedisProcessKillWithFsyncEverysec(t *testing.T) { testFaultRedisRestart(t, "everysec") }

func testFaultRedisRestart(t *testing.T, fsync string, flags ...string) {
	began := time.Now()
	rs := startFaultRedis(t, fsync)
	prefix := fmt.Sprintf("fault%d", time.Now().UnixNano())
	fc := startFaultCluster(t, rs.addr, prefix, []string{"gw-a"}, flags...)
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)

	const each = 20
	tr.waitEach("traffic before the Redis kill", make([]int, len(senders)), each)
	atKill := tr.snapshot()
	var st0 sendStats
	tr.st.count(func(s *sendStats) { st0.retries, st0.failed = s.retries, s.failed })
	// From the kill until every sender is acked again, unavailable answers
	// are expected; and the inbox projector may be cut off mid-batch.
	fc.faults.outage.Store(true)
	fc.faults.refanout.Store(true)
	rs.kill()
	killed := time.Now()
	// The outage: longer than go-redis's own retries (3 attempts, backoff
	// up to 512ms), shorter than the clients' 15s send timeout.
	time.Sleep(5 * time.Second)
	duringOutage := sum(tr.snapshot()) - sum(atKill) // replies in flight at the kill only
	rs.start()
	outage := time.Since(killed)
	restarted := time.Now()
	tr.waitEach("every sender acked once after the Redis restart", tr.snapshot(), 1)
	fc.faults.outage.Store(false)
	tr.waitEach("every sender acked again after the Redis restart", atKill, each)
	recovered := time.Since(restarted)
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, fc.projector, fc.gateways[0])

	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	var st sendStats
	tr.st.count(func(s *sendStats) {
		st.acked, st.retries, st.failed, st.outage, st.duplicates, st.rateLimited = s.acked, s.retries, s.failed, s.outage, s.duplicates, s.rateLimited
	})
	t.Logf("%d sends acked while Redis was down (replies of appends made before the kill)", duringOutage)
	t.Logf("Redis killed after %d sends acked; down %.1fs (kill to PING after restart, AOF reloaded); every sender acked again %.1fs after the restart; "+
		"%d sends acked in all, %d attempts retried during the outage and after (%d answered unavailable/conflict in the outage, %d after it; before the kill %d retries, %d unavailable/conflict), "+
		"%d answered as duplicates, %d rate limited",
		sum(atKill), outage.Seconds(), recovered.Seconds(), st.acked, st.retries-st0.retries, st.outage, st.failed-st0.failed, st0.retries, st0.failed,
		st.duplicates, st.rateLimited)
	logAudits(t, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)
}

// The projector is killed with SIGKILL under traffic and a new one is
// started; then the projector and a gateway are killed at once and both
// restarted (the gateway on the same address). Nothing acknowledged is lost,
// the read model converges to exactly the acknowledged sends, and no device
// shows a message twice or out of order.
func TestFaultProjectorAndGatewayKill(t *testing.T) {
	rt := testsvc.Redis(t)
	testFaultProjectorAndGatewayKill(t, rt.Addr, rt.Prefix)
}

// testFaultProjectorAndGatewayKill runs the kills on a deployment on the
// Redis at redisAddr (one server, or a Redis Cluster's nodes), under prefix.
func testFaultProjectorAndGatewayKill(t *testing.T, redisAddr, prefix string) {
	began := time.Now()
	fc := startFaultCluster(t, redisAddr, prefix, []string{"gw-a", "gw-b"})
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)

	const each = 20
	tr.waitEach("traffic before the projector kill", make([]int, len(senders)), each)
	at1 := tr.snapshot()
	fc.faults.refanout.Store(true) // the inbox projector is cut off mid-batch
	fc.projector.kill(t)
	// Traffic goes on while no projector runs: sends are acked (the log is
	// written) but nothing is delivered until the new projector catches up.
	tr.waitEach("traffic without a projector", at1, each/2)
	fc.projector = fc.startProjector(t, "p1")
	fc.waitReady(t, fc.projector)
	tr.waitEach("traffic after the projector restart", at1, each)

	// Both at once: the projector and gateway A.
	at2 := tr.snapshot()
	gwA := fc.gateways[0]
	fc.projector.kill(t)
	gwA.kill(t)
	both := time.Now()
	fc.projector = fc.startProjector(t, "p2")
	// On gateway A's address: clients find it where they knew A (the
	// harness's candidates read cl.gateways, which stays as it is).
	gwA2 := fc.startGateway(t, "gw-a2", gwA.addr)
	fc.waitReady(t, fc.projector)
	fc.waitReady(t, gwA2)
	tr.waitEach("traffic after killing projector and gateway", at2, each)
	resumed := time.Since(both)
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, fc.projector, gwA2, fc.gateways[1])

	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	var st sendStats
	tr.st.count(func(s *sendStats) {
		st.acked, st.retries, st.failed, st.duplicates, st.rateLimited = s.acked, s.retries, s.failed, s.duplicates, s.rateLimited
	})
	t.Logf("projector killed after %d sends acked, restarted; projector and gateway killed after %d, every sender acked again %.1fs later; "+
		"%d sends acked, %d retried (%d answered unavailable/conflict), %d answered as duplicates, %d rate limited",
		sum(at1), sum(at2), resumed.Seconds(), st.acked, st.retries, st.failed, st.duplicates, st.rateLimited)
	logAudits(t, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
