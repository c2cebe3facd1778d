package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// buildBinary builds mpimd once per test into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	return testsvc.BuildBinary(t, "mpimd")
}

// Three projector processes with real ZooKeeper split the partitions; one is
// killed with SIGKILL under traffic; the survivors take its partitions over
// and every event is applied exactly once.
func TestProjectorProcessesShareAndSurviveKill(t *testing.T) {
	d := newDeployment(t)
	servers, root := testsvc.ZooKeeper(t)
	bin := buildBinary(t)
	logDir := t.TempDir()
	start := func(i int) *exec.Cmd {
		logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("p%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, append([]string{"projector"}, d.args("--zookeeper", servers[0], "--zk-root", root,
			"--zk-session-timeout", "4s", "--trim-interval", testTrimInterval, "--member-id", fmt.Sprintf("p%d", i), "--partitions", "8")...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("process %d log:\n%s", i, b)
			}
		})
		return cmd
	}
	procs := []*exec.Cmd{start(0), start(1), start(2)}

	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: d.redisAddr, PoolSize: 16})
	defer rdb.Close()
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: d.prefix, Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc, _ := command.New(store, command.Config{})
	var users []domain.UserID
	for i := range 8 {
		u, err := svc.Register(ctx, fmt.Sprintf("user%d", i), "$h", "U", "")
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	// Traffic: 8 senders, each to its own conversation, for the whole test:
	// until stopped after the takeover, bounded by a count and a time far
	// beyond what the test needs (a bound that ends the traffic before the
	// takeover would fail the wait for traffic after it).
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	trafficEnds := time.Now().Add(5 * time.Minute)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conv := domain.DirectConversation(users[i], users[(i+1)%8])
			for n := 0; n < 50000 && time.Now().Before(trafficEnds); n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := svc.Send(ctx, command.Actor{User: users[i]}, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "m"}); err != nil {
					t.Error(err)
					return
				}
				sent.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	db, err := connect.MySQL(ctx, d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int64 {
		var n int64
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Logf("%s: %v", q, err) // counted as 0: waitUntil asks again
		}
		return n
	}
	waitUntil(t, "projection under way", func() bool { return count("SELECT COUNT(*) FROM messages") > 200 })
	if err := procs[1].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procs[1].Wait()
	// Traffic goes on until the survivors own every partition (p1's
	// session expired) and a while after.
	waitOwners(t, servers[0], root, "p0 and p2 own every partition", func(o ownership) bool {
		return o.ownedBy(projectorNames, 8, "p0", "p2")
	})
	atTakeover := sent.Load()
	waitUntil(t, "traffic after the takeover", func() bool { return sent.Load() >= atTakeover+100 })
	close(stop)
	wg.Wait()
	total := sent.Load()
	// Survivors take over the dead member's partitions after its session expires.
	waitUntil(t, "every message projected", func() bool { return count("SELECT COUNT(*) FROM messages") == total })
	events := total + 16 // 8 registrations of two events each
	waitUntil(t, "every event archived", func() bool {
		return count("SELECT (SELECT COUNT(*) FROM event_archive) + (SELECT COALESCE(SUM(events), 0) FROM event_archive_segments)") == events
	})
	// The three processes trim (every testTrimInterval) below every checkpoint.
	t.Logf("%v", waitTrimmed(t, d.redisAddr, d.prefix, 8))
	// Exactly once: each conversation holds seqs 1..n without gaps, up to
	// the seq the log assigned last.
	rows, err := db.QueryContext(ctx, "SELECT conversation_id, COUNT(*), MIN(seq), MAX(seq) FROM messages GROUP BY conversation_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		var n, lo, hi int64
		if err := rows.Scan(&conv, &n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if lo != 1 || hi != n {
			t.Errorf("%s: %d messages with seqs %d..%d", conv, n, lo, hi)
		}
		_, seq, _ := store.Version(ctx, domain.ConversationID(conv).PartitionKey(), conv)
		if uint64(hi) != seq {
			t.Errorf("%s: projected up to seq %d, log at %d", conv, hi, seq)
		}
	}
	t.Logf("%d messages projected exactly once across the kill", total)
}

// Every projector with two live owners at once. Projector p1 reaches
// ZooKeeper through a proxy; under traffic it is paused with SIGSTOP (and
// the proxy frozen) until ZooKeeper expires its session and p0 owns every
// partition of every projector; traffic goes on; then p1 is resumed with
// SIGCONT while the proxy stays frozen. p1 does not know yet that it lost
// its partitions: it goes on applying batches with its old fencing tokens
// until its coordinator presumes the session lost (a third of the session
// timeout later). Fencing must refuse every one of those writes: p1's log
// shows a fenced batch of each of the four projectors. Then the proxy
// thaws, p1 rejoins, traffic stops, and the log, deep read-model (mysql,
// archive, quarantine, cache, inbox) and delivery audits are clean.
func TestProjectorPausedPastItsSessionIsFenced(t *testing.T) {
	began := time.Now()
	rt := testsvc.Redis(t)
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a", "gw-b"})
	zkAddr, root := flagValue(fc.common, "--zookeeper"), flagValue(fc.common, "--zk-root")
	proxy := startFreezeProxy(t, zkAddr)
	p1 := fc.startProjectorVia(t, "p1", proxy.addr)
	fc.waitReady(t, p1)
	shared := sharedByP0AndP1(fc.partitions)
	own := waitOwners(t, zkAddr, root, "p0 and p1 share every projector", shared)
	devs, senders, gid := fc.setupUsers(t)
	fc.trafficInto(t, own, "p1", senders, gid)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)
	tr.waitEach("traffic before the pause", make([]int, len(senders)), 10)
	// The inbox projector taking over p1's partitions appends again what
	// p1 had fanned out past its last checkpoint (at least once).
	fc.faults.refanout.Store(true)

	// The pause: p1 stops, and when it wakes its ZooKeeper connection is
	// open but silent.
	atPause := sum(tr.snapshot())
	proxy.freeze()
	t.Cleanup(func() { p1.cmd.Process.Signal(syscall.SIGCONT) }) // before the harness kills it
	if err := p1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	waitOwners(t, zkAddr, root, "p0 owns every partition (p1's session expired)", func(o ownership) bool {
		return o.ownedBy(projectorNames, fc.partitions, "p0")
	})
	takeover := time.Since(paused)
	tr.waitEach("traffic while p1 is paused, after the takeover", tr.snapshot(), 10)
	logged, err := os.Stat(p1.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	// p1 works as an owner until its coordinator presumes the session lost;
	// each projector must have had a batch refused by then.
	var fenced map[string]int
	lost := false
	waitUntil(t, "p1's log shows it presumed its session lost after SIGCONT", func() bool {
		fenced, lost = fencedSince(t, p1.log, logged.Size())
		return lost
	})
	stale := time.Since(resumed)
	proxy.thaw()
	waitOwners(t, zkAddr, root, "p1 rejoined: p0 and p1 share every projector again", shared)
	tr.waitEach("traffic after p1 rejoined", tr.snapshot(), 10)
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, append([]*mpimdProc{fc.projector, p1}, fc.gateways...)...)

	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	t.Logf("p1 owned %v of each projector; paused after %d sends acked; p0 owned everything %.1fs after SIGSTOP; "+
		"after SIGCONT p1 worked on for %.1fs, until it presumed its session lost, and its batches were refused as fenced (per projector: %v)",
		own.partitionsOf("archive", "p1"), atPause, takeover.Seconds(), stale.Seconds(), fenced)
	logFaultAudit(t, &tr.st, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)
	// Checked last, so that a failure here comes with the audits' verdict.
	for _, name := range projectorNames {
		if fenced[name] == 0 {
			t.Errorf("projector %s of p1: no batch refused as fenced after SIGCONT (refusals per projector: %v)", name, fenced)
		}
	}
}

// fencedSince reads the log file of a projector process after offset: the
// refusals of a fenced owner per projector, and whether the process's
// coordinator has since noticed its ZooKeeper session ended.
func fencedSince(t *testing.T, log string, offset int64) (fenced map[string]int, lost bool) {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	fenced = map[string]int{}
	for _, line := range strings.Split(string(b[min(offset, int64(len(b))):]), "\n") {
		switch {
		case strings.Contains(line, "zookeeper session presumed lost"), strings.Contains(line, "zookeeper session expired"):
			lost = true
		case strings.Contains(line, "partition fenced by a newer owner"):
			if _, rest, ok := strings.Cut(line, " projector="); ok {
				name, _, _ := strings.Cut(rest, " ")
				fenced[name]++
			}
		}
	}
	return fenced, lost
}
