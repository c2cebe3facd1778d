package mysql

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/projectors"
)

var errInjected = errors.New("injected failure")

// TestKilledProjectorMatchesCleanRebuild runs the read model under runners
// that are cancelled at random moments, with failures and cancellations
// injected between the statements of a batch and after its commit (the
// outcome the caller cannot see), sometimes two owners at once, while
// writes continue; it restarts them over and over, then compares every
// table with a clean rebuild from zero into another database.
func TestKilledProjectorMatchesCleanRebuild(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 8)
	sc := newScenario(ctx, t, env.svc, 24, 4)
	db := openTestDB(t)

	var writing atomic.Bool
	writing.Store(true)
	writesDone := make(chan struct{})
	go func() {
		defer close(writesDone)
		defer writing.Store(false)
		sc.run(ctx, t, 4, 250, 7)
	}()

	rng := rand.New(rand.NewPCG(42, 0))
	// Every Run gets a newer fencing token than the one before, also within
	// one second (the static coordinator's tokens are seconds).
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	coord := &projectors.Static{Now: func() time.Time { return time.Unix(clock.Add(1), 0) }}
	var mu sync.Mutex // guards hookRng and stats
	hookRng := rand.New(rand.NewPCG(43, 0))
	stats := map[string]int{}
	var watchers []*watched
	round := func() {
		runCtx, cancel := context.WithTimeout(ctx, time.Duration(5+rng.IntN(150))*time.Millisecond)
		defer cancel()
		owners := 1
		if rng.IntN(4) == 0 {
			owners = 2 // a second owner fences the first one mid-flight
		}
		var wg sync.WaitGroup
		var models []*ReadModel
		defer func() {
			for _, rm := range models {
				rm.Close()
			}
		}()
		for range owners {
			rm := testReadModel(t, db, Config{})
			models = append(models, rm)
			rm.hook = func(hctx context.Context, stage string) error {
				mu.Lock()
				x := hookRng.IntN(25)
				if stage == "committed" && x > 1 && x < 5 {
					x = 1 // a commit whose outcome the caller does not learn, often
				}
				switch x {
				case 0:
					stats["cancel at "+stage]++
				case 1:
					stats["fail at "+stage]++
				}
				mu.Unlock()
				switch x {
				case 0:
					cancel()
					return context.Canceled
				case 1:
					return errInjected
				}
				return nil
			}
			w := &watched{Projector: rm}
			watchers = append(watchers, w)
			r, err := projectors.NewRunner(env.store, coord, w, projectors.RunnerConfig{
				BatchSize: 1 + rng.IntN(120), Block: 5 * time.Millisecond, RetryBackoff: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				if err := r.Run(runCtx); err != nil {
					t.Errorf("runner: %v", err)
				}
			})
		}
		wg.Wait()
	}
	rounds := 0
	for writing.Load() || rounds < 60 {
		round()
		rounds++
	}
	<-writesDone
	rm := testReadModel(t, db, Config{})
	final := &watched{Projector: rm}
	// The rounds' clock ran ahead of the wall clock: the final owner takes
	// the next token from it, or it would be fenced.
	r := startRunnerWith(t, env.store, coord, final, 200)
	waitCaughtUp(t, env.store, rm.Checkpoints)
	r.stop(t)
	final.check(t)
	fenced, moved := 0, 0
	for _, w := range watchers {
		w.check(t)
		fenced, moved = fenced+w.fenced, moved+w.moved
	}
	t.Logf("%d rounds; injected: %v; batches refused: %d fenced, %d checkpoint moved", rounds, stats, fenced, moved)
	if n := count(t, db, tQuarantine, ""); n != 0 {
		t.Errorf("%d events quarantined from a clean log", n)
	}

	clean := openTestDB(t)
	if err := Rebuild(ctx, clean, env.store, RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	sameModel(t, db, clean)
}
