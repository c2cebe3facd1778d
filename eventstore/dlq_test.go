package eventstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// deadLetterAll appends n events to partition 0 and has two consumers of
// a group with MaxDeliveries 1 fail them, so all n are dead-lettered. It
// returns consumer b and the entries' positions.
func deadLetterAll(t *testing.T, h *harness, n int) (*eventstore.Tap, []eventstore.Position) {
	t.Helper()
	ctx := context.Background()
	var positions []eventstore.Position
	for i := range n {
		res, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: "d/t.q", Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent("d/t.q", string(rune('a'+i)))}}}})
		if err != nil {
			t.Fatal(err)
		}
		positions = append(positions, res.Events[0].Position)
	}
	cfg := eventstore.TapConfig{Group: "g", Consumer: "a", MinIdle: 20 * time.Millisecond, MaxDeliveries: 1}
	a, err := h.store.NewTap(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Consumer = "b"
	b, err := h.store.NewTap(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Read(ctx, 0, int64(n), time.Millisecond); err != nil || len(got) != n {
		t.Fatalf("a read %d, %v", len(got), err)
	}
	// a fails: once its entries are idle longer than MinIdle (a sleep of
	// twice MinIdle; a slower run leaves them idler), b's claim is their
	// second delivery, over the limit.
	time.Sleep(40 * time.Millisecond)
	if got, err := b.Read(ctx, 0, int64(n), time.Millisecond); err != nil || len(got) != 0 {
		t.Fatalf("b read %d, %v; want every entry dead-lettered", len(got), err)
	}
	return b, positions
}

func TestDeadLettersRequeueDeliversAgainAndFailsBackToTheDeadLetters(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	b, positions := deadLetterAll(t, h, 3)
	dls, err := h.store.DeadLetters(ctx, "g", 0, eventstore.Position{}, 10)
	if err != nil || len(dls) != 3 {
		t.Fatalf("dead letters %d, %v", len(dls), err)
	}
	for i, d := range dls {
		if d.Position != positions[i] || d.Deliveries != 1 || d.Err != nil || d.Event.GetMessageSent().GetText() != string(rune('a'+i)) {
			t.Fatalf("dead letter %d: %+v (want position %s, 1 delivery)", i, d, positions[i])
		}
	}
	if _, err := h.store.DeadLetters(ctx, "nope", 0, eventstore.Position{}, 10); err == nil || !strings.Contains(err.Error(), `no tap group "nope"`) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := h.store.RequeueDeadLetters(ctx, "g", 1, eventstore.Position{}); err == nil {
		t.Fatal("requeue on a partition out of range accepted")
	}
	if n, err := h.store.RequeueDeadLetters(ctx, "g", 0, dls[1].ID); err != nil || n != 2 {
		t.Fatalf("requeue up to the second: %d, %v", n, err)
	}
	// The requeued entries come first, under their log positions.
	got, err := b.Read(ctx, 0, 10, time.Millisecond)
	if err != nil || len(got) != 2 || got[0].Position != positions[0] || got[1].Position != positions[1] || got[0].Retry.IsZero() {
		t.Fatalf("read after requeue: %+v, %v", got, err)
	}
	if err := b.AckEntries(ctx, 0, got[0]); err != nil {
		t.Fatal(err)
	}
	// got[1] fails again: it goes back to the dead letters, once idle.
	time.Sleep(40 * time.Millisecond)
	if again, err := b.Read(ctx, 0, 10, time.Millisecond); err != nil || len(again) != 0 {
		t.Fatalf("read of the failed retry: %+v, %v", again, err)
	}
	dls, err = h.store.DeadLetters(ctx, "g", 0, eventstore.Position{}, 10)
	if err != nil || len(dls) != 2 || dls[0].Position != positions[2] || dls[1].Position != positions[1] {
		t.Fatalf("dead letters after the retry failed: %v, %v; want %s then %s", dlPositions(dls), err, positions[2], positions[1])
	}
	if n, _ := h.rdb.XLen(ctx, h.prefix+"{p0}:retry:g").Result(); n != 0 {
		t.Fatalf("retry stream keeps %d entries after they were acknowledged or dead-lettered", n)
	}
	if n, err := h.store.PurgeDeadLetters(ctx, "g", 0, dls[1].ID); err != nil || n != 1 {
		t.Fatalf("purge before the second: %d, %v", n, err)
	}
	if n, err := h.store.PurgeDeadLetters(ctx, "g", 0, eventstore.Position{}); err != nil || n != 1 {
		t.Fatalf("purge all: %d, %v", n, err)
	}
}

func TestTrimDeadLettersRemovesOnlyOldOnes(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	// One dead letter from long ago (its id carries the time).
	if err := h.rdb.XAdd(ctx, &redis.XAddArgs{Stream: h.prefix + "{p0}:dlq:g", ID: "1000-0", Values: map[string]any{"from": "1-0"}}).Err(); err != nil {
		t.Fatal(err)
	}
	b, _ := deadLetterAll(t, h, 2)
	if n, err := h.store.TrimDeadLetters(ctx, time.Hour); err != nil || n != 1 {
		t.Fatalf("trim removed %d, %v; want the old one", n, err)
	}
	if n, _ := h.rdb.XLen(ctx, b.DeadLetterKey(0)).Result(); n != 2 {
		t.Fatalf("%d dead letters left, want the 2 recent ones", n)
	}
	if _, err := h.store.TrimDeadLetters(ctx, 0); err == nil {
		t.Fatal("zero max age accepted")
	}
	// A partition nobody has written to yet has no stream: nothing to trim,
	// no error (XINFO GROUPS answers "no such key").
	fresh := newHarness(t, eventstore.Config{Partitions: 2})
	if n, err := fresh.store.TrimDeadLetters(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("trim of a deployment without streams removed %d, %v; want 0, nil", n, err)
	}
	if _, err := fresh.store.DeadLetters(ctx, "g", 1, eventstore.Position{}, 10); err == nil || !strings.Contains(err.Error(), `no tap group "g" on partition 1`) {
		t.Fatalf("dead letters of a group on a partition without a stream: %v, want no tap group", err)
	}
}

// dlPositions lists the log positions of dead letters.
func dlPositions(dls []eventstore.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, d := range dls {
		out[i] = d.Position.String()
	}
	return out
}
