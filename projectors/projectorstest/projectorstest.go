// Package projectorstest runs projectors in tests the way a deployment does:
// with the real runner and the static coordinator. It is imported by tests
// only.
package projectorstest

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// RunToHead runs proj over store with the real runner (batches of at most
// batchSize events) until cp's checkpoint of every partition is the
// partition's last entry, then stops the runner. It fails tb if the runner
// stops on its own or the projector is still behind after two minutes (a
// safety net, not a timing assertion).
func RunToHead(tb testing.TB, store *eventstore.Store, proj projectors.Projector, cp projectors.Checkpointer, batchSize int) {
	tb.Helper()
	r, err := projectors.NewRunner(store, &projectors.Static{}, proj, projectors.RunnerConfig{Block: 20 * time.Millisecond, BatchSize: batchSize})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("runner: %v", err)
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		behind := -1
		for p := range store.Partitions() {
			info, err := store.Info(ctx, p)
			if err != nil {
				tb.Fatal(err)
			}
			pos, err := cp.Checkpoint(ctx, p)
			if err != nil {
				tb.Fatal(err)
			}
			if info.Last.Compare(pos) > 0 {
				behind = p
				break
			}
		}
		if behind < 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("projector still behind on partition %d", behind)
		}
		select {
		case err := <-done:
			tb.Fatalf("runner stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Heads returns the last position of every partition of store (the zero
// Position for an empty one). It fails tb if the store cannot be read.
func Heads(ctx context.Context, tb testing.TB, store *eventstore.Store) []eventstore.Position {
	tb.Helper()
	out := make([]eventstore.Position, store.Partitions())
	for p := range out {
		info, err := store.Info(ctx, p)
		if err != nil {
			tb.Fatal(err)
		}
		out[p] = info.Last
	}
	return out
}
