package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// The fault tests: real mpimd processes under client traffic (the e2e
// harness's devices: client message ids, retries with the same id across
// reconnects, de-duplication by event id), while a dependency or a process
// is killed with SIGKILL and restarted. Each ends with an audit: every
// acknowledged send is in the log (gapless seqs per conversation), in the
// read model, and shown exactly once, in order, on every device of every
// member. Bounded in time and messages; no timing is asserted.
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
	fc := &faultCluster{bin: buildBinary(t), logDir: t.TempDir(), redisAddr: redisAddr, prefix: prefix, dsn: dsn}
	if _, err := fmt.Sscan(e2ePartitions, &fc.partitions); err != nil {
		t.Fatal(err)
	}
	fc.common = append([]string{"--redis-addr", redisAddr, "--prefix", prefix, "--mysql", dsn, "--batch-size", "100",
		"--log-level", "warn", "--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
		"--partitions", e2ePartitions, "--trim-interval", "0"}, extra...)
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

// faultSender is a device and the conversations it writes to in turn.
type faultSender struct {
	d      *e2eDevice
	routes []faultRoute
}

type faultRoute struct {
	to      *e2eUser // nil: the group
	members []*e2eUser
}

// faultTraffic runs senders continuously until stopped.
type faultTraffic struct {
	t       *testing.T
	sent    ledger
	st      sendStats
	mu      sync.Mutex
	acked   []int
	stop    chan struct{}
	errs    chan error
	abort   context.CancelFunc
	n       int
	stopped bool
}

// setupUsers registers four users with a phone each (and a laptop for the
// first), split over the gateways, a group of all four, and returns the
// senders: direct conversations and the group.
func (fc *faultCluster) setupUsers(t *testing.T) ([]*e2eDevice, []faultSender, string) {
	t.Helper()
	var users []*e2eUser
	var devs []*e2eDevice
	for i, name := range []string{"fay", "finn", "gus", "gia"} {
		gw := fc.gateways[i%len(fc.gateways)]
		enc := []frame.Encoding{frame.Proto, frame.JSON}[i%2]
		u := fc.register(t, gw, name)
		users = append(users, u)
		devs = append(devs, fc.login(t, u, "phone", gw, enc))
	}
	devs = append(devs, fc.login(t, users[0], "laptop", fc.gateways[len(fc.gateways)-1], frame.JSON))
	var ids []string
	for _, u := range users[1:] {
		ids = append(ids, u.id)
	}
	g := devs[0].call(t, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "fault", MemberIds: ids}}).GetCreateGroup()
	waitUntil(t, "every device acknowledged the group's creation", func() bool {
		for _, d := range devs {
			if !d.allAcked() {
				return false
			}
		}
		return true
	})
	direct := func(a, b *e2eUser) faultRoute { return faultRoute{to: b, members: []*e2eUser{a, b}} }
	group := faultRoute{members: users}
	fay, finn, gus, gia := users[0], users[1], users[2], users[3]
	return devs, []faultSender{
		{devs[0], []faultRoute{direct(fay, gus), direct(fay, finn), group}},
		{devs[1], []faultRoute{direct(finn, gia), direct(finn, fay), group}},
		{devs[2], []faultRoute{direct(gus, fay), group}},
		{devs[3], []faultRoute{direct(gia, finn), group}},
		{devs[4], []faultRoute{direct(fay, gia)}}, // fay's laptop
	}, g.GetGroupId()
}

func startFaultTraffic(t *testing.T, ctx context.Context, senders []faultSender, gid string) *faultTraffic {
	ctx, abort := context.WithCancel(ctx)
	tr := &faultTraffic{t: t, acked: make([]int, len(senders)), stop: make(chan struct{}), errs: make(chan error, len(senders)), abort: abort, n: len(senders)}
	for i, s := range senders {
		go func() {
			for n := 0; ; n++ {
				select {
				case <-tr.stop:
					tr.errs <- nil
					return
				default:
				}
				r := s.routes[n%len(s.routes)]
				id := fmt.Sprintf("%s-%s-%d", s.d.user.name, s.d.id, n)
				req := toGroup(gid, id)
				if r.to != nil {
					req = toUser(r.to, id)
				}
				m, err := s.d.send(ctx, req, r.members, &tr.st)
				if err != nil {
					tr.errs <- err
					return
				}
				tr.sent.add(m)
				tr.mu.Lock()
				tr.acked[i]++
				tr.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() {
		if !tr.stopped {
			tr.finish(true)
		}
	})
	return tr
}

// snapshot returns each sender's acknowledged sends so far.
func (tr *faultTraffic) snapshot() []int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]int(nil), tr.acked...)
}

// waitEach waits until every sender has at least base[i]+n sends acked.
func (tr *faultTraffic) waitEach(what string, base []int, n int) {
	tr.t.Helper()
	waitUntil(tr.t, what, func() bool {
		now := tr.snapshot()
		for i := range now {
			if now[i] < base[i]+n {
				return false
			}
		}
		return true
	})
}

// finish stops the senders: each finishes the send it is in (retrying until
// acknowledged) unless failing.
func (tr *faultTraffic) finish(failing bool) {
	tr.stopped = true
	close(tr.stop)
	if failing {
		tr.abort()
	}
	for range tr.n {
		if err := <-tr.errs; err != nil && !failing {
			tr.t.Error(err)
		}
	}
	tr.abort()
}

// logAudit reads every partition of the log and checks it against the
// acknowledged sends: each conversation's MessageSent events carry seqs
// 1..n in log order, every acknowledged send is there once with the event
// id and seq it was acknowledged with, and no client message id appears
// twice.
type logAudit struct {
	events, messages, conversations int
	missing, mismatched, dupClient  int
	seqProblems                     int
	details                         []string
	lost                            []sentMsg // the acked sends missing
}

func (a *logAudit) detail(format string, args ...any) {
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

func (a logAudit) ok(acked int) bool {
	return a.missing == 0 && a.mismatched == 0 && a.dupClient == 0 && a.seqProblems == 0 && a.messages == acked
}

func (a logAudit) String() string {
	return fmt.Sprintf("log: %d events, %d messages in %d conversations; %d acked sends missing, %d unlike acked, %d client ids twice, %d seq problems%s",
		a.events, a.messages, a.conversations, a.missing, a.mismatched, a.dupClient, a.seqProblems, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

func auditLog(t *testing.T, redisAddr, prefix string, partitions int, sent []sentMsg) logAudit {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: prefix, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	type logged struct {
		conv string
		seq  uint64
	}
	var a logAudit
	byEvent := map[string]logged{}
	byClient := map[msgKey]bool{}
	lastSeq := map[string]uint64{}
	for p := range partitions {
		var after eventstore.Position
		for {
			recs, err := store.ReadPartition(ctx, p, after, 1000)
			if err != nil {
				t.Fatalf("reading partition %d: %v", p, err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				after = r.Position
				a.events++
				m := r.Event.GetMessageSent()
				if m == nil {
					continue
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
			}
		}
	}
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

// auditReadModel waits until the messages table holds as many rows as
// sends were acknowledged and checks each conversation's seqs are 1..n.
func auditReadModel(t *testing.T, dsn string, acked int) (rows int64) {
	t.Helper()
	ctx := context.Background()
	db, err := connect.MySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() int64 {
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages").Scan(&n); err != nil {
			return -1
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for rows = count(); rows != int64(acked); rows = count() {
		if time.Now().After(deadline) {
			t.Fatalf("read model: messages table holds %d rows, %d sends acked (waited 60s)", rows, acked)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rs, err := db.QueryContext(ctx, "SELECT conversation_id, COUNT(*), MIN(seq), MAX(seq) FROM messages GROUP BY conversation_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var conv string
		var n, lo, hi int64
		if err := rs.Scan(&conv, &n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if lo != 1 || hi != n {
			t.Errorf("read model: %s holds %d messages with seqs %d..%d", conv, n, lo, hi)
		}
	}
	return rows
}

// Redis, configured with AOF and appendfsync always, is killed with SIGKILL
// under traffic and restarted on the same port and directory. The projector
// and the gateway (both with --fsync-always) reconnect by themselves, the
// clients retry their sends with the same client message ids, and nothing
// acknowledged is lost, duplicated or reordered: not in the log, not in the
// read model, not on any device. A SIGKILL keeps the page cache, so this
// shows a process crash only; fault_power_test.go simulates a machine crash.
func TestFaultRedisRestartWithFsyncAlways(t *testing.T) {
	testFaultRedisRestart(t, "always", "--fsync-always")
}

// The same with appendfsync everysec: Redis writes the AOF before it
// replies, so a killed Redis process (not a crashed machine) loses nothing
// acknowledged either. docs/deployment.md states what everysec does not
// promise.
func TestFaultRedisRestartWithFsyncEverysec(t *testing.T) { testFaultRedisRestart(t, "everysec") }

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
	rs.kill()
	killed := time.Now()
	// The outage: longer than go-redis's own retries (3 attempts, backoff
	// up to 512ms), shorter than the clients' 15s send timeout.
	time.Sleep(5 * time.Second)
	duringOutage := sum(tr.snapshot()) - sum(atKill) // replies in flight at the kill only
	rs.start()
	outage := time.Since(killed)
	restarted := time.Now()
	tr.waitEach("every sender acked again after the Redis restart", atKill, each)
	recovered := time.Since(restarted)
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, fc.projector, fc.gateways[0])

	sent := tr.sent.all()
	la := auditLog(t, rs.addr, prefix, fc.partitions, sent)
	rows := auditReadModel(t, fc.dsn, len(sent))
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	var st sendStats
	tr.st.count(func(s *sendStats) {
		st.acked, st.retries, st.failed, st.duplicates, st.rateLimited = s.acked, s.retries, s.failed, s.duplicates, s.rateLimited
	})
	t.Logf("%d sends acked while Redis was down (replies of appends made before the kill)", duringOutage)
	t.Logf("Redis killed after %d sends acked; down %.1fs (kill to PING after restart, AOF reloaded); every sender acked again %.1fs after the restart; "+
		"%d sends acked in all, %d attempts retried during the outage and after (%d answered unavailable/conflict, %d unanswered; before the kill %d retries), %d answered as duplicates, %d rate limited",
		sum(atKill), outage.Seconds(), recovered.Seconds(), st.acked, st.retries-st0.retries, st.failed-st0.failed, (st.retries-st.failed)-(st0.retries-st0.failed), st0.retries, st.duplicates, st.rateLimited)
	logAudits(t, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)
}

// The projector is killed with SIGKILL under traffic and a new one is
// started; then the projector and a gateway are killed at once and both
// restarted (the gateway on the same address). Nothing acknowledged is lost,
// the read model converges to exactly the acknowledged sends, and no device
// shows a message twice or out of order.
func TestFaultProjectorAndGatewayKill(t *testing.T) {
	began := time.Now()
	rt := testsvc.Redis(t)
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a", "gw-b"})
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)

	const each = 20
	tr.waitEach("traffic before the projector kill", make([]int, len(senders)), each)
	at1 := tr.snapshot()
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
	la := auditLog(t, rt.Addr, rt.Prefix, fc.partitions, sent)
	rows := auditReadModel(t, fc.dsn, len(sent))
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
