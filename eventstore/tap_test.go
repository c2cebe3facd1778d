package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

func TestTapCompetingConsumersClaimAndDeadLetter(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	for i := range 6 {
		if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: "d/t.a", Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent("d/t.a", string(rune('a'+i)))}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// While a and b both run, neither claims the other's entries: their
	// MinIdle is far longer than the test, so how slowly the machine runs
	// cannot turn a's fresh pending entries into b's claim.
	cfg := eventstore.TapConfig{Group: "analytics", MinIdle: time.Hour, MaxDeliveries: 2}
	cfg.Consumer = "a"
	a, err := h.store.NewTap(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Consumer = "b"
	b, err := h.store.NewTap(ctx, cfg) // the group exists already: no error
	if err != nil {
		t.Fatal(err)
	}
	gotA, err := a.Read(ctx, 0, 3, 10*time.Millisecond)
	if err != nil || len(gotA) != 3 {
		t.Fatalf("a read %d, %v", len(gotA), err)
	}
	gotB, err := b.Read(ctx, 0, 10, 10*time.Millisecond)
	if err != nil || len(gotB) != 3 || gotB[0].Position.Compare(gotA[2].Position) <= 0 {
		t.Fatalf("b read %d entries, %v; want the 3 after a's", len(gotB), err)
	}
	var posB []eventstore.Position
	for _, e := range gotB {
		posB = append(posB, e.Position)
	}
	if err := b.Ack(ctx, 0, posB...); err != nil {
		t.Fatal(err)
	}
	// a dies without acking: b (restarted with a short MinIdle) claims a's
	// entries once they are idle. The test waits until Redis itself reports
	// them idle for MinIdle, rather than sleeping and hoping.
	cfg.MinIdle = 20 * time.Millisecond
	cfg.Consumer = "a"
	if a, err = h.store.NewTap(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Consumer = "b"
	if b, err = h.store.NewTap(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitPendingIdle(t, h, "analytics", "a", 3, cfg.MinIdle)
	claimed, err := b.Read(ctx, 0, 10, 10*time.Millisecond)
	if err != nil || len(claimed) != 3 || claimed[0].Position != gotA[0].Position || claimed[0].Deliveries != 2 {
		t.Fatalf("claimed %+v, %v", claimed, err)
	}
	// b fails too: the next claim exceeds MaxDeliveries and dead-letters
	// (once the entries are idle again).
	waitPendingIdle(t, h, "analytics", "b", 3, cfg.MinIdle)
	again, err := a.Read(ctx, 0, 10, 10*time.Millisecond)
	if err != nil || len(again) != 0 {
		t.Fatalf("after max deliveries read %d entries, %v", len(again), err)
	}
	dlq, err := h.rdb.XLen(ctx, a.DeadLetterKey(0)).Result()
	if err != nil || dlq != 3 {
		t.Fatalf("dead-letter stream has %d entries, %v", dlq, err)
	}
	pending, err := h.rdb.XPending(ctx, h.prefix+"{p0}:log", "analytics").Result()
	if err != nil || pending.Count != 0 {
		t.Fatalf("pending %+v, %v", pending, err)
	}
	if _, err := h.store.NewTap(ctx, eventstore.TapConfig{}); err == nil {
		t.Fatal("tap without group and consumer accepted")
	}
}

// waitPendingIdle waits (bounded) until consumer holds n pending entries of
// partition 0 that Redis reports idle for at least minIdle.
func waitPendingIdle(t *testing.T, h *harness, group, consumer string, n int, minIdle time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, err := h.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: h.prefix + "{p0}:log", Group: group, Consumer: consumer, Start: "-", End: "+", Count: int64(n) + 1,
		}).Result()
		if err != nil {
			t.Fatal(err)
		}
		idle := len(pending) == n
		for _, p := range pending {
			idle = idle && p.Idle >= minIdle
		}
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's pending entries %+v are not %d idle for %v", consumer, pending, n, minIdle)
		}
		time.Sleep(minIdle / 4)
	}
}

func TestTrimBeforeKeepsTheMinimum(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	var positions []eventstore.Position
	for i := range 10 {
		res, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: "d/t.b", Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent("d/t.b", string(rune('a'+i)))}}}})
		if err != nil {
			t.Fatal(err)
		}
		positions = append(positions, res.Events[0].Position)
	}
	if n, err := h.store.TrimBefore(ctx, 0, eventstore.Position{}); err != nil || n != 0 {
		t.Fatalf("zero trim removed %d, %v", n, err)
	}
	n, err := h.store.TrimBefore(ctx, 0, positions[4])
	if err != nil || n != 4 {
		t.Fatalf("trim removed %d, %v; want 4", n, err)
	}
	info, _ := h.store.Info(ctx, 0)
	if info.First != positions[4] || info.Length != 6 {
		t.Fatalf("after trim: %+v", info)
	}
}
