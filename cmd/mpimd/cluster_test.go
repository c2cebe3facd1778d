package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	return buildRace(t, "mpimd", ".")
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
	// Traffic: 8 senders, each to its own conversation, for the whole test.
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conv := domain.DirectConversation(users[i], users[(i+1)%8])
			for n := 0; n < 2000; n++ {
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
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	total := sent.Load()
	// Survivors take over the dead member's partitions after its session expires.
	waitUntil(t, "every message projected", func() bool { return count("SELECT COUNT(*) FROM messages") == total })
	events := total + 16 // 8 registrations of two events each
	waitUntil(t, "every event archived", func() bool { return count("SELECT COUNT(*) FROM event_archive") == events })
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
