package projectors_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/redis/go-redis/v9"
)

// xreads is a go-redis hook counting XREAD calls and the entries they return.
type xreads struct{ calls, entries atomic.Int64 }

func (h *xreads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *xreads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if x, ok := cmd.(*redis.XStreamSliceCmd); ok && cmd.Name() == "xread" {
			h.calls.Add(1)
			for _, s := range x.Val() {
				h.entries.Add(int64(len(s.Messages)))
			}
		}
		return err
	}
}

func (h *xreads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

var _ redis.Hook = (*xreads)(nil)

// openHookedStore is openStore with XREADs counted.
func openHookedStore(tb testing.TB, partitions int) (*eventstore.Store, *redis.Client, string, *xreads) {
	tb.Helper()
	rt := testsvc.Redis(tb)
	hook := &xreads{}
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	rdb.AddHook(hook)
	tb.Cleanup(func() { rdb.Close() })
	s, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: partitions})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, rdb, rt.Prefix, hook
}

func newShared(tb testing.TB, log projectors.Log, cfg projectors.SharedLogConfig) *projectors.SharedLog {
	tb.Helper()
	s, err := projectors.NewSharedLog(log, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// positions returns the positions of partition 0's entries.
func positions(tb testing.TB, store *eventstore.Store) []eventstore.Position {
	tb.Helper()
	recs, err := store.ReadPartition(context.Background(), 0, eventstore.Position{}, 10_000)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]eventstore.Position, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

// tail reads through log after after, failing the test on an error.
func tail(tb testing.TB, log projectors.Log, after eventstore.Position, limit int) []eventstore.Position {
	tb.Helper()
	recs, err := log.Tail(context.Background(), 0, after, limit, 10*time.Millisecond)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]eventstore.Position, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

func samePositions(tb testing.TB, what string, got, want []eventstore.Position) {
	tb.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		tb.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// domainMem is a memProjector that decodes every event to the domain, as
// the real projectors do, so that runners share the decode under -race.
type domainMem struct{ *memProjector }

func (d domainMem) Apply(ctx context.Context, b *projectors.Batch) error {
	for i := range b.Events {
		if _, ev, err := b.Events[i].Domain(); err != nil {
			return err
		} else if _, ok := ev.(domain.MessageSent); !ok {
			return fmt.Errorf("decoded %T, want a MessageSent", ev)
		}
	}
	return d.memProjector.Apply(ctx, b)
}

func TestSharedLogReadsEachEntryOnceForFourRunners(t *testing.T) {
	const n = 300
	for _, tc := range []struct {
		name   string
		shared bool
		reads  int64 // entries read from Redis per appended entry
	}{{"four runners on a shared log read each entry once", true, 1}, {"four runners on the store read each entry four times", false, 4}} {
		t.Run(tc.name, func(t *testing.T) {
			store, _, _, hook := openHookedStore(t, 1)
			var log projectors.Log = store
			if tc.shared {
				log = newShared(t, store, projectors.SharedLogConfig{})
			}
			mems := make([]*memProjector, 4)
			var dones []<-chan error
			var cancels []context.CancelFunc
			for i := range mems {
				mems[i] = newMem()
				r, err := projectors.NewRunner(log, &projectors.Static{}, domainMem{mems[i]}, projectors.RunnerConfig{BatchSize: 16, Block: 500 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				_, cancel, done := start(r)
				cancels, dones = append(cancels, cancel), append(dones, done)
			}
			for _, c := range []string{"d/a.b", "d/c.d", "d/e.f"} {
				appendMessages(t, store, c, n/3)
			}
			waitFor(t, "every runner applied every event", func() bool {
				for _, m := range mems {
					if m.count() != n {
						return false
					}
				}
				return true
			})
			for i := range mems {
				cancels[i]()
				if err := <-dones[i]; err != nil {
					t.Fatalf("run: %v", err)
				}
			}
			want := positions(t, store)
			for i, m := range mems {
				got := make([]eventstore.Position, 0, n)
				for _, r := range m.applied[0] {
					got = append(got, r.Position)
				}
				samePositions(t, fmt.Sprintf("runner %d applied", i), got, want)
			}
			if got := hook.entries.Load(); got != tc.reads*n {
				t.Fatalf("XREADs returned %d entries for %d appended, want %d", got, n, tc.reads*n)
			}
			t.Logf("%d XREAD calls for %d entries", hook.calls.Load(), n)
		})
	}
}

func TestSharedLogCaughtUpRunnersWaitOnOneRead(t *testing.T) {
	store, _, _, hook := openHookedStore(t, 1)
	appendMessages(t, store, "d/a.b", 3)
	log := newShared(t, store, projectors.SharedLogConfig{})
	head := tail(t, log, eventstore.Position{}, 100)[2]
	calls := hook.calls.Load()
	var wg sync.WaitGroup
	got := make([][]eventstore.Recorded, 4)
	errs := make([]error, 4)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = log.Tail(context.Background(), 0, head, 100, 20*time.Second) })
	}
	time.Sleep(100 * time.Millisecond) // most likely all waiting; the count below holds either way
	appendMessages(t, store, "d/a.b", 1)
	wg.Wait()
	for i := range got {
		if errs[i] != nil || len(got[i]) != 1 || got[i][0].Position.Compare(head) <= 0 {
			t.Fatalf("waiter %d: %v, %v", i, got[i], errs[i])
		}
	}
	if n := hook.calls.Load() - calls; n != 1 {
		t.Fatalf("four caught-up waiters made %d XREADs, want 1", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := log.Tail(ctx, 0, got[0][0].Position, 100, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("tail with a cancelled context: %v", err)
	}
}

func TestSharedLogServesARunnerBehindTheRingFromRedis(t *testing.T) {
	store, _, _, hook := openHookedStore(t, 1)
	appendMessages(t, store, "d/a.b", 40)
	all := positions(t, store)
	log := newShared(t, store, projectors.SharedLogConfig{MaxEntries: 8})
	samePositions(t, "first read", tail(t, log, eventstore.Position{}, 100), all)
	if n, _, base, head := projectors.Ring(log, 0); n != 8 || base != all[31] || head != all[39] {
		t.Fatalf("ring of %d entries covering (%s, %s], want 8 covering (%s, %s]", n, base, head, all[31], all[39])
	}
	calls := hook.calls.Load()
	// A slow runner from zero, 5 at a time: every entry, in order; the
	// reads that start behind the ring's base go to Redis, the others not.
	var got []eventstore.Position
	for pos := (eventstore.Position{}); len(got) < len(all); pos = got[len(got)-1] {
		got = append(got, tail(t, log, pos, 5)...)
	}
	samePositions(t, "slow runner", got, all)
	if n := hook.calls.Load() - calls; n != 7 {
		t.Fatalf("slow runner made %d XREADs, want 7 (its reads after positions behind the ring)", n)
	}

	t.Run("a runner restarting from an old checkpoint gets every entry after it", func(t *testing.T) {
		for _, from := range []int{33, 10} { // in the ring, behind it
			mem := newMem()
			mem.pos[0] = all[from]
			r, err := projectors.NewRunner(log, &projectors.Static{}, mem, projectors.RunnerConfig{BatchSize: 4, Block: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			_, cancel, done := start(r)
			waitFor(t, "runner caught up", func() bool { return mem.count() == len(all)-from-1 })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			var applied []eventstore.Position
			for _, r := range mem.applied[0] {
				applied = append(applied, r.Position)
			}
			samePositions(t, fmt.Sprintf("restart after entry %d", from), applied, all[from+1:])
		}
	})

	t.Run("the byte bound holds", func(t *testing.T) {
		small := newShared(t, store, projectors.SharedLogConfig{MaxBytes: 1 << 10})
		samePositions(t, "first read", tail(t, small, eventstore.Position{}, 100), all)
		n, bytes, base, _ := projectors.Ring(small, 0)
		if bytes > 1<<10 || n == 0 || n == len(all) || base != all[len(all)-n-1] {
			t.Fatalf("ring of %d entries, %d bytes, base %s", n, bytes, base)
		}
	})
}

func TestSharedLogNeverServesAGap(t *testing.T) {
	t.Run("a reader behind an evicted entry reads Redis", func(t *testing.T) {
		store, _, _, _ := openHookedStore(t, 1)
		appendMessages(t, store, "d/a.b", 10)
		all := positions(t, store)
		log := newShared(t, store, projectors.SharedLogConfig{MaxEntries: 3}) // keeps (all[6], all[9]]
		tail(t, log, eventstore.Position{}, 100)
		samePositions(t, "after entry 4", tail(t, log, all[4], 100), all[5:])
		samePositions(t, "after entry 6", tail(t, log, all[6], 100), all[7:])
	})
	t.Run("a reader behind a trim gets what Redis holds", func(t *testing.T) {
		store, rdb, prefix, _ := openHookedStore(t, 1)
		appendMessages(t, store, "d/a.b", 10)
		all := positions(t, store)
		log := newShared(t, store, projectors.SharedLogConfig{})
		samePositions(t, "after entry 4", tail(t, log, all[4], 100), all[5:]) // the ring covers (all[4], all[9]]
		if err := rdb.XTrimMinID(context.Background(), prefix+"{p0}:log", all[7].String()).Err(); err != nil {
			t.Fatal(err)
		}
		samePositions(t, "after entry 2, trimmed to 7", tail(t, log, all[2], 100), all[7:])
		samePositions(t, "after entry 4, read before the trim", tail(t, log, all[4], 100), all[5:])
	})
	t.Run("an undecodable entry ends a read from the ring as from Redis", func(t *testing.T) {
		store, rdb, prefix, hook := openHookedStore(t, 1)
		appendMessages(t, store, "d/a.b", 3)
		bad, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: prefix + "{p0}:log", Values: []string{"v", "1", "s", "0", "d", "garbage"}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		appendMessages(t, store, "d/a.b", 2)
		log := newShared(t, store, projectors.SharedLogConfig{})
		for i := range 2 { // from Redis, then from the ring
			recs, err := log.Tail(context.Background(), 0, eventstore.Position{}, 100, time.Millisecond)
			var de *eventstore.DecodeError
			if len(recs) != 3 || !errors.As(err, &de) || de.Position.String() != bad {
				t.Fatalf("read %d: %d entries, %v; want 3 and the entry %s undecodable", i, len(recs), err, bad)
			}
		}
		if n := hook.calls.Load(); n != 1 {
			t.Fatalf("%d XREADs, want 1", n)
		}
		badPos, _ := eventstore.ParsePosition(bad)
		if got := tail(t, log, badPos, 100); len(got) != 2 {
			t.Fatalf("after the undecodable entry: %v", got)
		}
	})
}

func TestSharedLogConfigValidation(t *testing.T) {
	store, _, _ := openStore(t, 1)
	for _, cfg := range []projectors.SharedLogConfig{{MaxEntries: -1}, {MaxEntries: 2_000_000}, {MaxBytes: 10}, {MaxBytes: 2 << 30}} {
		if _, err := projectors.NewSharedLog(store, cfg); err == nil || !strings.Contains(err.Error(), "shared log") {
			t.Fatalf("%+v: %v", cfg, err)
		}
	}
	if _, err := projectors.NewSharedLog(nil, projectors.SharedLogConfig{}); err == nil {
		t.Fatal("a shared log without a log")
	}
}
