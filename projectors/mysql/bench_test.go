package mysql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
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

// BenchmarkProjectMessages applies b.N MessageSent events to the read model
// in batches of 500, four partitions at once (the way the runner drives
// it), and reports events/s. The log is generated in memory beforehand, so
// this measures the projector and MariaDB only.
//
//	go test -run '^$' -bench ProjectMessages -benchtime 200000x ./projectors/mysql/
func BenchmarkProjectMessages(b *testing.B) {
	for _, tc := range []struct {
		name                     string
		directs, groups, percent int
	}{
		{"direct", 20_000, 0, 0},
		{"mixed_10pct_groups_of_20", 20_000, 200, 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const partitions, batch = 4, 500
			w := newMsgWorkload(func(k string) int { return eventstore.HashFNV1aFmix32.Of(k, partitions) }, 10_000, tc.directs, tc.groups, 20, tc.percent)
			logs := make([][]eventstore.Recorded, partitions)
			add := func(e genEvent) {
				l := logs[e.partition]
				logs[e.partition] = append(l, eventstore.Recorded{Partition: e.partition, Position: eventstore.Position{Ms: uint64(len(l) + 1)}, Event: e.env})
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
			rm := testReadModel(b, db, Config{})
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
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range partitions {
				wg.Go(func() { apply(p, logs[p][setup[p]:], after[p]) })
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
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
