package projectors_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// memProjector keeps its checkpoint and effects in memory with the contract's
// compare-and-set, and records every event it applied.
type memProjector struct {
	mu      sync.Mutex
	token   map[int]uint64
	pos     map[int]eventstore.Position
	applied map[int][]eventstore.Recorded
	skipped map[int][]eventstore.Position
	batches int
}

func newMem() *memProjector {
	return &memProjector{token: map[int]uint64{}, pos: map[int]eventstore.Position{}, applied: map[int][]eventstore.Recorded{}, skipped: map[int][]eventstore.Position{}}
}

func (m *memProjector) Name() string { return "mem" }

func (m *memProjector) Claim(_ context.Context, p int, token uint64) (eventstore.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if token < m.token[p] {
		return eventstore.Position{}, projectors.ErrFenced
	}
	m.token[p] = token
	return m.pos[p], nil
}

// refuse returns ErrFenced for a batch with a stale token,
// ErrCheckpointMoved for one whose After is not the checkpoint, and nil
// otherwise. m.mu is held.
func (m *memProjector) refuse(b *projectors.Batch) error {
	switch {
	case b.Token < m.token[b.Partition]:
		return projectors.ErrFenced
	case b.After != m.pos[b.Partition]:
		return projectors.ErrCheckpointMoved
	}
	return nil
}

func (m *memProjector) Apply(_ context.Context, b *projectors.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refuse(b); err != nil {
		return err
	}
	m.batches++
	m.applied[b.Partition] = append(m.applied[b.Partition], b.Events...)
	for _, s := range b.Skipped {
		m.skipped[b.Partition] = append(m.skipped[b.Partition], s.Position)
	}
	m.pos[b.Partition] = b.To
	return nil
}

func (m *memProjector) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, a := range m.applied {
		n += len(a)
	}
	return n
}

// startRunner starts a runner of p on store; the caller cancels it and
// reads its end from done.
func startRunner(t *testing.T, store *eventstore.Store, p projectors.Projector, cfg projectors.RunnerConfig) (ctx context.Context, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	r, err := projectors.NewRunner(store, &projectors.Static{}, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return start(r)
}

// start runs r in a goroutine until cancel; done then holds Run's error.
func start(r *projectors.Runner) (context.Context, context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return ctx, cancel, done
}

func openStore(tb testing.TB, partitions int) (*eventstore.Store, *redis.Client, string) {
	tb.Helper()
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	tb.Cleanup(func() { rdb.Close() })
	s, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: partitions})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, rdb, rt.Prefix
}

func appendMessages(tb testing.TB, s *eventstore.Store, conv string, n int) {
	tb.Helper()
	for range n {
		id := ulid.MustNew(ulid.Now(), rand.Reader)
		ev := &mpimv1.Event{Id: id[:], Aggregate: conv, OccurredAtMs: time.Now().UnixMilli(),
			Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: conv, Text: "x"}}}
		if _, err := s.Append(context.Background(), eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{ev}}}}); err != nil {
			tb.Fatal(err)
		}
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testsvc.Eventually(tb, 30*time.Second, what, cond)
}

func TestRunnerAppliesEveryEventOnceInOrder(t *testing.T) {
	store, rdb, prefix := openStore(t, 4)
	mem := newMem()
	reg := prometheus.NewRegistry()
	ctx, cancel, done := startRunner(t, store, mem, projectors.RunnerConfig{BatchSize: 7, Block: 50 * time.Millisecond, Registerer: reg})

	convs := []string{"d/a.b", "d/c.d", "d/e.f", "d/g.h", "d/i.j"}
	for _, c := range convs {
		appendMessages(t, store, c, 30)
	}
	// An undecodable entry is skipped (quarantined), not a wedge.
	p := store.PartitionOf(convs[0])
	bad, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "{p" + string(rune('0'+p)) + "}:log", Values: []string{"v", "1", "s", "0", "d", "garbage"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	appendMessages(t, store, convs[0], 5)
	waitFor(t, "all events applied", func() bool { return mem.count() == len(convs)*30+5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	mem.mu.Lock()
	defer mem.mu.Unlock()
	for part, recs := range mem.applied {
		for i := 1; i < len(recs); i++ {
			if recs[i].Position.Compare(recs[i-1].Position) <= 0 {
				t.Fatalf("partition %d applied out of order at %d", part, i)
			}
		}
	}
	if got := mem.skipped[p]; len(got) != 1 || got[0].String() != bad {
		t.Fatalf("skipped %v, want [%s]", got, bad)
	}
	seqs := map[string]uint64{}
	for _, recs := range mem.applied {
		for _, r := range recs {
			agg := r.Event.GetAggregate()
			if r.Event.GetSeq() != seqs[agg]+1 {
				t.Fatalf("%s: seq %d after %d", agg, r.Event.GetSeq(), seqs[agg])
			}
			seqs[agg] = r.Event.GetSeq()
		}
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) == 0 {
		t.Fatalf("metrics: %d families, %v", len(mfs), err)
	}
}

func TestRunnerStopsWhenFenced(t *testing.T) {
	store, _, _ := openStore(t, 1)
	mem := newMem()
	mem.token[0] = uint64(time.Now().Add(time.Hour).UnixNano()) // a newer owner holds the partition
	r, err := projectors.NewRunner(store, &projectors.Static{}, mem, projectors.RunnerConfig{Block: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	appendMessages(t, store, "d/x.y", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("runner kept running while fenced")
	}
	if mem.count() != 0 {
		t.Fatalf("fenced runner applied %d events", mem.count())
	}
}

func TestRunnerReclaimsWhenCheckpointMoves(t *testing.T) {
	store, _, _ := openStore(t, 1)
	mem := newMem()
	ctx, cancel, done := startRunner(t, store, mem, projectors.RunnerConfig{Block: 20 * time.Millisecond})
	appendMessages(t, store, "d/x.y", 10)
	waitFor(t, "first events", func() bool { return mem.count() == 10 })
	// A replay swaps in a model that is at the head already and empty of
	// effects: the runner must continue from the new checkpoint.
	mem.mu.Lock()
	mem.applied = map[int][]eventstore.Recorded{}
	mem.mu.Unlock()
	appendMessages(t, store, "d/x.y", 1)
	waitFor(t, "event after the first swap", func() bool { return mem.count() == 1 })
	mem.mu.Lock()
	info, _ := store.Info(ctx, 0)
	mem.pos[0] = info.Last
	mem.applied = map[int][]eventstore.Recorded{}
	mem.mu.Unlock()
	appendMessages(t, store, "d/x.y", 4)
	waitFor(t, "events after the moved checkpoint", func() bool { return mem.count() == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// lingerMem is a memProjector that asks the runner to linger.
type lingerMem struct {
	*memProjector
	linger time.Duration
}

func (l lingerMem) Linger() time.Duration { return l.linger }

// A batch smaller than BatchSize is followed by a linger, and what is
// appended meanwhile is read as one batch. The linger runs on a clock that
// stands still and ends when the test releases it, so the batches do not
// depend on how fast the machine is.
func TestRunnerLingersAfterSmallBatches(t *testing.T) {
	store, _, _ := openStore(t, 1)
	mem := newMem()
	r, err := projectors.NewRunner(store, &projectors.Static{}, lingerMem{mem, 2 * time.Second}, projectors.RunnerConfig{Block: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	lingers := make(chan time.Duration) // the length of each linger, as it starts
	release := make(chan struct{})
	projectors.SetLinger(r, func() time.Time { return stopped }, func(ctx context.Context, d time.Duration) {
		select {
		case lingers <- d:
		case <-ctx.Done():
			return
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	_, cancel, done := start(r)
	appendMessages(t, store, "d/x.y", 1)
	if d := nextLinger(t, lingers); d != 2*time.Second {
		t.Fatalf("lingered %s after the first batch, want the projector's 2s", d)
	}
	if n := mem.count(); n != 1 {
		t.Fatalf("%d events applied before the first linger, want 1", n)
	}
	// Appended while the runner lingers after the first batch: one batch.
	appendMessages(t, store, "d/x.y", 5)
	release <- struct{}{}
	nextLinger(t, lingers)
	mem.mu.Lock()
	batches := mem.batches
	mem.mu.Unlock()
	if n := mem.count(); n != 6 || batches != 2 {
		t.Fatalf("%d events in %d batches for 1 event and then 5, want 6 in 2", n, batches)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// nextLinger returns the length of the runner's next linger. Its timeout
// only ends a hung test: it is no bound on the runner's speed.
func nextLinger(t *testing.T, lingers <-chan time.Duration) time.Duration {
	t.Helper()
	select {
	case d := <-lingers:
		return d
	case <-time.After(time.Minute):
		t.Fatal("the runner did not linger")
		return 0
	}
}

func TestRunnerDoesNotLingerCatchingUp(t *testing.T) {
	store, _, _ := openStore(t, 1)
	mem := newMem()
	appendMessages(t, store, "d/x.y", 50)
	// Full batches follow each other at once; the last, partial one is
	// applied as soon as it is read; cancelling ends a linger.
	_, cancel, done := startRunner(t, store, lingerMem{mem, time.Minute}, projectors.RunnerConfig{BatchSize: 7, Block: 20 * time.Millisecond})
	waitFor(t, "every event", func() bool { return mem.count() == 50 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runner kept lingering after its context ended")
	}
	// A negative RunnerConfig.Linger overrides the projector's.
	if _, err := projectors.NewRunner(store, &projectors.Static{}, lingerMem{newMem(), time.Hour}, projectors.RunnerConfig{}); err == nil {
		t.Fatal("a linger of an hour accepted")
	}
	if _, err := projectors.NewRunner(store, &projectors.Static{}, lingerMem{newMem(), time.Hour}, projectors.RunnerConfig{Linger: -1}); err != nil {
		t.Fatalf("a negative linger overriding the projector's: %v", err)
	}
}

func TestRunnerConfigValidation(t *testing.T) {
	store, _, _ := openStore(t, 1)
	if _, err := projectors.NewRunner(store, &projectors.Static{}, newMem(), projectors.RunnerConfig{BatchSize: -1, Block: time.Nanosecond}); err == nil {
		t.Fatal("invalid config accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := projectors.NewRunner(store, &projectors.Static{}, newMem(), projectors.RunnerConfig{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := projectors.NewRunner(store, &projectors.Static{}, newMem(), projectors.RunnerConfig{Registerer: reg}); err == nil {
		t.Fatal("second runner of one projector on one registry accepted")
	}
}

func (m *memProjector) Checkpoint(_ context.Context, p int) (eventstore.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pos[p], nil
}

func TestTrimNeverRemovesUnprocessedEvents(t *testing.T) {
	store, _, _ := openStore(t, 2)
	fast, slow, idle := newMem(), newMem(), newMem()
	appendMessages(t, store, "d/a.b", 20)
	p := store.PartitionOf("d/a.b")
	recs, err := store.ReadPartition(context.Background(), p, eventstore.Position{}, 100)
	if err != nil || len(recs) != 20 {
		t.Fatalf("read %d, %v", len(recs), err)
	}
	fast.pos[p], slow.pos[p] = recs[15].Position, recs[5].Position
	// idle has not started partition p: nothing may be trimmed.
	n, err := projectors.TrimLog(context.Background(), store, []projectors.Checkpointer{fast, slow, idle})
	if err != nil || n != 0 {
		t.Fatalf("trim with an idle projector removed %d, %v", n, err)
	}
	n, err = projectors.TrimLog(context.Background(), store, []projectors.Checkpointer{fast, slow})
	if err != nil || n != 5 {
		t.Fatalf("trim removed %d, %v; want the 5 before the slowest checkpoint", n, err)
	}
	left, _ := store.ReadPartition(context.Background(), p, eventstore.Position{}, 100)
	if len(left) != 15 || left[0].Position != recs[5].Position {
		t.Fatalf("left %d entries from %v", len(left), left[0].Position)
	}
	if _, err := projectors.TrimLog(context.Background(), store, nil); err == nil {
		t.Fatal("trim without projectors accepted")
	}
}
