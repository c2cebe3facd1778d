package eventstore_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// keysMatching lists the keys under prefix whose rest matches pattern.
func keysMatching(tb testing.TB, rdb *redis.Client, prefix, pattern string) []string {
	tb.Helper()
	var all []string
	iter := rdb.Scan(context.Background(), 0, prefix+pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		all = append(all, strings.TrimPrefix(iter.Val(), prefix))
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	return all
}

// TestHeadsLiveInOneHashPerPartition: appends keep every head in its
// partition's hash ("v" for an aggregate without message seqs, "v:s" for a
// conversation) and write no per-aggregate head key.
func TestHeadsLiveInOneHashPerPartition(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	const conv, group = "c/H1", "g/H1"
	for i := range 3 {
		if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, fmt.Sprint(i)), renameEvent(conv, "n")}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: group, Expected: eventstore.NoStream, KeepHistory: true, Events: []*mpimv1.Event{renameEvent(group, "g")}}}}); err != nil {
		t.Fatal(err)
	}
	heads, err := h.rdb.HGetAll(ctx, h.prefix+"{p0}:h").Result()
	if err != nil || heads[conv] != "6:3" || heads[group] != "1" || len(heads) != 2 {
		t.Fatalf("heads hash: %v, %v; want %s 6:3 and %s 1", heads, err, conv, group)
	}
	if old := keysMatching(t, h.rdb, h.prefix, "{p0}:h:*"); len(old) != 0 {
		t.Fatalf("per-aggregate head keys written: %v", old)
	}
}

// TestIdempotencyRecordOnlyWithKey: an append without an idempotency key
// writes no record; with one it writes one, and the retry returns the
// original result (ids included) and appends nothing.
func TestIdempotencyRecordOnlyWithKey(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	const conv = "d/I.K"
	send := func(key eventstore.IdempotencyKey) eventstore.AppendResult {
		t.Helper()
		res, err := h.store.Append(ctx, eventstore.AppendRequest{IdempotencyKey: key, Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "m")}, Cells: []*eventstore.Cell{{Value: []byte("c")}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	send("")
	if recs := keysMatching(t, h.rdb, h.prefix, "{p0}:i:*"); len(recs) != 0 {
		t.Fatalf("a send without a client message id wrote idempotency records %v", recs)
	}
	first := send("send:u/a:1")
	if recs := keysMatching(t, h.rdb, h.prefix, "{p0}:i:*"); len(recs) != 1 {
		t.Fatalf("idempotency records after a keyed send: %v; want one", recs)
	}
	before := h.logLen(t)
	again := send("send:u/a:1")
	if !again.Duplicate || fmt.Sprint(again.Events) != fmt.Sprint(first.Events) || h.logLen(t) != before {
		t.Fatalf("retry: %+v (log %d -> %d); want the original %+v and nothing appended", again, before, h.logLen(t), first)
	}
}

// TestResultCarriesRequestIDs: the script no longer echoes event ids for a
// new append; the result maps each event, across streams, to its own id.
func TestResultCarriesRequestIDs(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	a, b := []*mpimv1.Event{renameEvent("g/R1", "x"), renameEvent("g/R1", "y")}, []*mpimv1.Event{messageEvent("c/R1", "z")}
	res, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{
		{Aggregate: "g/R1", Expected: eventstore.NoStream, Events: a}, {Aggregate: "c/R1", Expected: eventstore.Any, Events: b}}})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]*mpimv1.Event{}, a...), b...)
	if len(res.Events) != len(want) {
		t.Fatalf("%d results for %d events", len(res.Events), len(want))
	}
	for i, ev := range res.Events {
		if !bytes.Equal(ev.ID[:], want[i].GetId()) {
			t.Errorf("result %d has id %x, want %x", i, ev.ID, want[i].GetId())
		}
	}
	if res.Events[1].Version != 2 || res.Events[2].Version != 1 || res.Events[2].Seq != 1 {
		t.Errorf("results %+v", res.Events)
	}
}

// TestManyHeadsInOneCall: a call naming more aggregates than the script
// reads or writes in one command (it chunks them) keeps every head.
func TestManyHeadsInOneCall(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1, MaxEventsPerAppend: 1200, MaxBatchEvents: 1200})
	ctx := context.Background()
	var streams []eventstore.StreamAppend
	for i := range 1100 {
		agg := fmt.Sprintf("g/M%d", i)
		streams = append(streams, eventstore.StreamAppend{Aggregate: agg, Expected: eventstore.NoStream, Events: []*mpimv1.Event{renameEvent(agg, "n")}})
	}
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: streams}); err != nil {
		t.Fatal(err)
	}
	if n, err := h.rdb.HLen(ctx, h.prefix+"{p0}:h").Result(); err != nil || n != 1100 {
		t.Fatalf("heads hash has %d fields, %v; want 1100", n, err)
	}
	for _, i := range []int{0, 499, 500, 501, 999, 1000, 1099} {
		if v, _, err := h.store.Version(ctx, "any", fmt.Sprintf("g/M%d", i)); err != nil || v != 1 {
			t.Fatalf("g/M%d at version %d, %v; want 1", i, v, err)
		}
	}
}

// TestLayout1DeploymentMigratesOnOpen: a deployment whose heads are one
// hash per aggregate (no "layout" in its meta hash) is read as it is by a
// read-only store, and a writable Open moves its heads into the partition
// hashes, records layout 2 and continues every aggregate where it was.
func TestLayout1DeploymentMigratesOnOpen(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.HSet(ctx, metaKey(rt.Prefix), "partitions", 4, "hash", string(eventstore.HashFNV1aFmix32)).Err(); err != nil {
		t.Fatal(err)
	}
	ro, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 4, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	// 30 conversations at version 3, seq 2, and a group at version 5 (its
	// old head has no s field, as old scripts wrote for appends before it).
	const group = "g/L1"
	convs := make([]string, 30)
	for i := range convs {
		convs[i] = fmt.Sprintf("c/L%d", i)
		key := fmt.Sprintf("%s{p%d}:h:%s", rt.Prefix, ro.PartitionOf(convs[i]), convs[i])
		if err := rdb.HSet(ctx, key, "v", 3, "s", 2).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.HSet(ctx, fmt.Sprintf("%s{p%d}:h:%s", rt.Prefix, ro.PartitionOf(group), group), "v", 5).Err(); err != nil {
		t.Fatal(err)
	}
	if v, s, err := ro.Version(ctx, convs[0], convs[0]); err != nil || v != 3 || s != 2 {
		t.Fatalf("read-only store on layout 1: %d/%d, %v; want 3/2", v, s, err)
	}
	for range 2 { // a second open finds nothing to move
		w, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	if old := keysMatching(t, rdb, rt.Prefix, "{p*}:h:*"); len(old) != 0 {
		t.Fatalf("layout-1 head keys left after the migration: %v", old)
	}
	if l, err := rdb.HGet(ctx, metaKey(rt.Prefix), "layout").Result(); err != nil || l != eventstore.LayoutHeadsHash {
		t.Fatalf("recorded layout %q, %v", l, err)
	}
	w, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, c := range convs {
		res, err := w.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: c, Expected: eventstore.Exact(3), Events: []*mpimv1.Event{messageEvent(c, "after")}}}})
		if err != nil || res.Events[0].Version != 4 || res.Events[0].Seq != 3 {
			t.Fatalf("append to %s after the migration: %+v, %v; want version 4, seq 3", c, res, err)
		}
	}
	if _, err := w.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: group, Expected: eventstore.Exact(5), Events: []*mpimv1.Event{renameEvent(group, "x")}}}}); err != nil {
		t.Fatalf("group after the migration: %v", err)
	}
	// The read-only store opened before the migration reads the new layout.
	if v, s, err := ro.Version(ctx, convs[0], convs[0]); err != nil || v != 4 || s != 3 {
		t.Fatalf("read-only store after the migration: %d/%d, %v; want 4/3", v, s, err)
	}
}

// TestUnknownLayoutRefused: a layout this version does not know stops
// every open.
func TestUnknownLayoutRefused(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.HSet(ctx, metaKey(rt.Prefix), "partitions", 16, "layout", "9").Err(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		s, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 16, ReadOnly: ro})
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), `key layout "9"`) {
			t.Errorf("read-only %v: open with layout 9: %v", ro, err)
		}
	}
}
