package eventstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

func TestReadOnlyOpenRequiresTheDeploymentAndWritesNothing(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	ro := eventstore.Config{Prefix: rt.Prefix, Partitions: 2, ReadOnly: true}

	_, err := eventstore.Open(ctx, rdb, ro)
	want := `no mpim deployment at prefix "` + rt.Prefix + `" on redis ` + rt.Addr + " db 0"
	if !errors.Is(err, eventstore.ErrNoDeployment) || !strings.Contains(err.Error(), want) {
		t.Fatalf("read-only open of a missing deployment: %v; want ErrNoDeployment saying %s", err, want)
	}
	if keys := rt.Keys(t); len(keys) != 0 {
		t.Fatalf("read-only open created %v", keys)
	}

	w, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	req := eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: "d/t.a", Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent("d/t.a", "x")}}}}
	res, err := w.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	bad := ro
	bad.Partitions = 3
	if _, err := eventstore.Open(ctx, rdb, bad); !errors.Is(err, eventstore.ErrPartitionMismatch) {
		t.Fatalf("read-only open with another partition count: %v", err)
	}
	r, err := eventstore.Open(ctx, rdb, ro)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := r.ReadPartition(ctx, res.Partition, eventstore.Position{}, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("read-only read: %d events, %v", len(recs), err)
	}
	before := len(rt.Keys(t))
	ctx, cancel := context.WithTimeout(ctx, time.Minute) // an append waiting for committers that never run is a hang
	defer cancel()
	if _, err := r.Append(ctx, req); !errors.Is(err, eventstore.ErrReadOnly) {
		t.Errorf("read-only append: %v", err)
	}
	if err := r.SaveSnapshot(ctx, "d/t.a", "d/t.a", eventstore.Snapshot{Version: 1}, time.Minute); !errors.Is(err, eventstore.ErrReadOnly) {
		t.Errorf("read-only snapshot save: %v", err)
	}
	if _, err := r.TrimBefore(ctx, res.Partition, recs[0].Position); !errors.Is(err, eventstore.ErrReadOnly) {
		t.Errorf("read-only trim: %v", err)
	}
	if after := len(rt.Keys(t)); after != before {
		t.Errorf("read-only writes changed the key count from %d to %d", before, after)
	}
	if n, err := rdb.XLen(ctx, rt.Prefix+"{p"+strconv.Itoa(res.Partition)+"}:log").Result(); err != nil || n != 1 {
		t.Errorf("the log after read-only writes: %d entries, %v", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewTapCreatesNothingWithoutADeployment(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 2})
	ctx := context.Background()
	// The deployment disappears under an open store (a FLUSHDB, or the
	// wrong database): the tap must not create streams there.
	if err := h.rdb.Del(ctx, h.prefix+"mpim:meta").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := h.store.NewTap(ctx, eventstore.TapConfig{Group: "g", Consumer: "c"})
	if !errors.Is(err, eventstore.ErrNoDeployment) {
		t.Fatalf("tap without a deployment: %v", err)
	}
	if keys := (&testsvc.RedisTarget{Addr: h.rdb.Options().Addr, Prefix: h.prefix}).Keys(t); len(keys) != 0 {
		t.Fatalf("tap without a deployment created %v", keys)
	}
}
