package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// msgWorkload generates a message log: direct conversations among users,
// and groups (created first) whose messages fan out to every member.
type msgWorkload struct {
	partitionOf func(key string) int
	users       []domain.UserID
	directs     []domain.ConversationID
	groups      []domain.GroupID
	groupShare  int // percent of messages sent to groups
	groupSize   int
	rng         *rand.Rand
	version     map[string]uint64
	seq         map[string]uint64
	start       time.Time
}

func newMsgWorkload(partitionOf func(string) int, users, directs, groups, groupSize, groupShare int) *msgWorkload {
	w := &msgWorkload{partitionOf: partitionOf, groupShare: groupShare, groupSize: groupSize,
		rng: rand.New(rand.NewPCG(1, 2)), version: map[string]uint64{}, seq: map[string]uint64{}, start: time.Now().UTC()}
	for range users {
		w.users = append(w.users, domain.UserID("u/"+ulid.Make().String()))
	}
	for range directs {
		a := w.users[w.rng.IntN(len(w.users))]
		b := w.users[w.rng.IntN(len(w.users))]
		if directs*2 == users { // disjoint pairs, as mpim-bench's pairs scenario
			a, b = w.users[2*len(w.directs)], w.users[2*len(w.directs)+1]
		}
		if a != b {
			w.directs = append(w.directs, domain.DirectConversation(a, b))
		}
	}
	for range groups {
		w.groups = append(w.groups, domain.GroupID("g/"+ulid.Make().String()))
	}
	return w
}

// event is one generated event with its partition.
type genEvent struct {
	partition int
	env       *mpimv1.Event
}

func (w *msgWorkload) envelope(agg string, e domain.Event, actor domain.UserID) *mpimv1.Event {
	env, err := codec.Envelope(codec.Meta{ID: ulid.Make(), Aggregate: agg, OccurredAt: w.start, ActorUser: actor}, e)
	if err != nil {
		panic(err)
	}
	w.version[agg]++
	env.Version = w.version[agg]
	return env
}

// setup returns the GroupCreated events.
func (w *msgWorkload) setup() []genEvent {
	var out []genEvent
	for _, g := range w.groups {
		owner := w.users[w.rng.IntN(len(w.users))]
		var members []domain.UserID
		for range w.groupSize - 1 {
			members = append(members, w.users[w.rng.IntN(len(w.users))])
		}
		env := w.envelope(string(g), domain.GroupCreated{Group: g, Name: "bench", Owner: owner, Members: members}, owner)
		out = append(out, genEvent{w.partitionOf(string(g)), env})
	}
	return out
}

// message returns the next MessageSent.
func (w *msgWorkload) message() genEvent {
	var conv domain.ConversationID
	var sender domain.UserID
	if len(w.groups) > 0 && w.rng.IntN(100) < w.groupShare {
		conv = domain.GroupConversation(w.groups[w.rng.IntN(len(w.groups))])
		sender = w.users[w.rng.IntN(len(w.users))] // may not be a member: delivered all the same
	} else {
		conv = w.directs[w.rng.IntN(len(w.directs))]
		a, b, _ := conv.Members()
		sender = []domain.UserID{a, b}[w.rng.IntN(2)]
	}
	agg := string(conv)
	w.seq[agg]++
	env := w.envelope(agg, domain.MessageSent{Conversation: conv, Sender: sender, Device: "phone", Kind: domain.KindText,
		Text: "the quick brown fox jumps over the lazy dog " + strconv.Itoa(w.rng.IntN(1e6)), SentAt: w.start}, sender)
	env.Seq = w.seq[agg]
	return genEvent{w.partitionOf(conv.PartitionKey()), env}
}

// BenchmarkProjectMessages applies b.N MessageSent events to a projector
// in batches, four partitions at once (the way the runner drives it), and
// reports events/s and the server's statements (round trips) and rows
// written per event: the growth of MariaDB's global Questions and
// Handler_write + Handler_update counters over the timed part, exact only
// on a server nobody else uses. With MPIM_BENCH_MYSQLD_PID set to that
// server's process id it also reports the server's CPU (utime + stime from
// /proc) per event over the timed part. The log is generated in memory
// beforehand, so this measures the projector and MariaDB only. "pairs" is
// mpim-bench's pairs scenario (1,000 users in 500 pairs) in batches of 40,
// about what a partition gathers in DefaultLinger at 3,000 msg/s. Each
// workload runs the read model ("mysql") and the archiver ("archive")
// apart, so their shares of the server's work show.
//
//	go test -run '^$' -bench ProjectMessages -benchtime 200000x ./projectors/mysql/
func BenchmarkProjectMessages(b *testing.B) {
	for _, proj := range []string{"mysql", "archive"} {
		b.Run(proj, func(b *testing.B) { benchmarkProjectMessages(b, proj) })
	}
}

func benchmarkProjectMessages(b *testing.B, proj string) {
	for _, tc := range []struct {
		name                   string
		users, directs         int
		groups, percent, batch int
	}{
		{"direct", 10_000, 20_000, 0, 0, 500},
		{"mixed_10pct_groups_of_20", 10_000, 20_000, 200, 10, 500},
		{"pairs", 1000, 500, 0, 0, 40},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const partitions = 4
			batch := tc.batch
			w := newMsgWorkload(func(k string) int { return eventstore.HashFNV1aFmix32.Of(k, partitions) }, tc.users, tc.directs, tc.groups, 20, tc.percent)
			logs := make([][]eventstore.Recorded, partitions)
			add := func(e genEvent) {
				l := logs[e.partition]
				raw, err := proto.Marshal(&mpimv1.Event{Id: e.env.Id, Aggregate: e.env.Aggregate, OccurredAtMs: e.env.OccurredAtMs,
					Actor: e.env.Actor, Payload: e.env.Payload})
				if err != nil {
					b.Fatal(err)
				}
				logs[e.partition] = append(l, eventstore.Recorded{Partition: e.partition, Position: eventstore.Position{Ms: uint64(len(l) + 1)}, Event: e.env, Raw: raw})
			}
			for _, e := range w.setup() {
				add(e)
			}
			setup := make([]int, partitions)
			for p := range logs {
				setup[p] = len(logs[p])
			}
			for range b.N {
				add(w.message())
			}
			db := openTestDB(b)
			var rm interface {
				Claim(ctx context.Context, p int, token uint64) (eventstore.Position, error)
				Apply(ctx context.Context, b *projectors.Batch) error
			}
			if proj == "archive" {
				rm = testArchiver(b, db, ArchiverConfig{})
			} else {
				rm = testReadModel(b, db, Config{})
			}
			ctx := context.Background()
			apply := func(p int, recs []eventstore.Recorded, after eventstore.Position) eventstore.Position {
				for lo := 0; lo < len(recs); lo += batch {
					evs := recs[lo:min(lo+batch, len(recs))]
					to := evs[len(evs)-1].Position
					if err := rm.Apply(ctx, &projectors.Batch{Partition: p, Token: 1, After: after, To: to, Events: evs}); err != nil {
						b.Error(err)
						return after
					}
					after = to
				}
				return after
			}
			after := make([]eventstore.Position, partitions)
			for p := range partitions {
				if _, err := rm.Claim(ctx, p, 1); err != nil {
					b.Fatal(err)
				}
				after[p] = apply(p, logs[p][:setup[p]], eventstore.Position{})
			}
			q0, w0, cpu0 := questions(b, db), rowsWritten(b, db), serverCPU(b)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range partitions {
				wg.Go(func() { apply(p, logs[p][setup[p]:], after[p]) })
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			b.ReportMetric(float64(questions(b, db)-q0-2)/float64(b.N), "stmts/event")
			b.ReportMetric(float64(rowsWritten(b, db)-w0)/float64(b.N), "rows/event")
			if cpu0 >= 0 {
				b.ReportMetric(float64(serverCPU(b)-cpu0)/float64(b.N)/1000, "server-us/event")
			}
		})
	}
}

// rowsWritten returns the server's count of rows inserted and updated
// (Handler_write + Handler_update).
func rowsWritten(tb testing.TB, db *sql.DB) int64 {
	tb.Helper()
	var n int64
	if err := db.QueryRow("SELECT CAST(SUM(VARIABLE_VALUE) AS UNSIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE')").Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// serverCPU returns the CPU time (utime + stime) in nanoseconds of the
// process MPIM_BENCH_MYSQLD_PID names, or -1 when it is not set.
func serverCPU(tb testing.TB) int64 {
	tb.Helper()
	pid := os.Getenv("MPIM_BENCH_MYSQLD_PID")
	if pid == "" {
		return -1
	}
	if _, err := strconv.ParseUint(pid, 10, 31); err != nil {
		tb.Fatalf("MPIM_BENCH_MYSQLD_PID=%q is not a process id", pid)
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14 and stime 15, in clock ticks of 10 ms.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%s/stat: %q", pid, stat)
	}
	return (utime + stime) * int64(10*time.Millisecond)
}

// questions returns the server's count of statements received.
func questions(tb testing.TB, db *sql.DB) int64 {
	tb.Helper()
	var name string
	var n int64
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Questions'").Scan(&name, &n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestRebuildMillionMessages writes 1,000,000 MessageSent events (90% in
// direct conversations, 10% in groups of 20) straight into the streams of a
// 16-partition store, then times Rebuild from zero. It takes minutes, so it
// runs only with MPIM_BENCH_REBUILD=1 (MPIM_BENCH_REBUILD_EVENTS changes the
// count, MPIM_BENCH_REBUILD_BATCH and MPIM_BENCH_REBUILD_PARALLELISM the
// rebuild's options):
//
//	MPIM_BENCH_REBUILD=1 go test -run RebuildMillion -v -timeout 30m ./projectors/mysql/
func TestRebuildMillionMessages(t *testing.T) {
	if os.Getenv("MPIM_BENCH_REBUILD") != "1" {
		t.Skip("set MPIM_BENCH_REBUILD=1 to time a rebuild of 1,000,000 message events")
	}
	n := 1_000_000
	if s := os.Getenv("MPIM_BENCH_REBUILD_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	env := newLogEnv(t, 16)
	w := newMsgWorkload(env.store.PartitionOf, 20_000, 50_000, 500, 20, 10)
	pipe := env.rdb.Pipeline()
	queued := 0
	xadd := func(e genEvent) {
		raw, err := proto.Marshal(&mpimv1.Event{Id: e.env.Id, Aggregate: e.env.Aggregate, OccurredAtMs: e.env.OccurredAtMs,
			Actor: e.env.Actor, Payload: e.env.Payload})
		if err != nil {
			t.Fatal(err)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: env.streamKey(e.partition),
			Values: []any{"v", e.env.Version, "s", e.env.Seq, "d", raw}})
		if queued++; queued == 2000 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			queued = 0
		}
	}
	start := time.Now()
	for _, e := range w.setup() {
		xadd(e)
	}
	for range n {
		xadd(w.message())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d events to the streams in %s", n, time.Since(start).Round(time.Millisecond))

	db := openTestDB(t)
	var last time.Time
	start = time.Now()
	par, _ := strconv.Atoi(os.Getenv("MPIM_BENCH_REBUILD_PARALLELISM"))
	batch, _ := strconv.Atoi(os.Getenv("MPIM_BENCH_REBUILD_BATCH"))
	err := Rebuild(ctx, db, env.store, RebuildOptions{
		Parallelism: par, BatchSize: batch,
		Progress: func(p RebuildProgress) {
			if time.Since(last) > 5*time.Second || p.Partition == -1 {
				last = time.Now()
				t.Logf("%-5s %8d events %6.1fs", p.Phase, p.Events, p.Elapsed.Seconds())
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	msgs := count(t, db, readmodel.Messages, "")
	t.Logf("rebuilt %d messages (%d events with the group creations) in %s: %.0f events/s",
		msgs, n+len(w.groups), d.Round(time.Millisecond), float64(n)/d.Seconds())
	if msgs != n {
		t.Errorf("%d messages in the rebuilt model, want %d", msgs, n)
	}
	if q := count(t, db, tQuarantine, ""); q != 0 {
		t.Errorf("%d events quarantined", q)
	}
	fmt.Fprintf(os.Stderr, "REBUILD %d events in %s (%.0f events/s)\n", n, d.Round(time.Millisecond), float64(n)/d.Seconds())
}
