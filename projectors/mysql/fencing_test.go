package mysql

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// oneOwnerLog writes a small scenario into a one-partition log and returns
// its entries.
func oneOwnerLog(t *testing.T) []eventstore.Recorded {
	t.Helper()
	ctx := context.Background()
	env := newLogEnv(t, 1)
	sc := newScenario(ctx, t, env.svc, 4, 1)
	sc.run(ctx, t, 1, 60, 3)
	recs, err := env.store.ReadPartition(ctx, 0, eventstore.Position{}, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 20 {
		t.Fatalf("only %d events", len(recs))
	}
	return recs
}

func batchOf(token uint64, after eventstore.Position, recs []eventstore.Recorded) *projectors.Batch {
	return &projectors.Batch{Partition: 0, Token: token, After: after, To: recs[len(recs)-1].Position, Events: recs}
}

// fencingSuite checks the checkpoint discipline of a projector: p must be
// fresh, digest returns the state of everything it writes.
func fencingSuite(t *testing.T, recs []eventstore.Recorded, newProj func() projectors.Projector, digest func() string) {
	ctx := context.Background()
	zero := eventstore.Position{}
	half := len(recs) / 2
	p := newProj()
	// refused applies b, wants the error want and no table changed.
	refused := func(t *testing.T, what string, b *projectors.Batch, want error) {
		t.Helper()
		before := digest()
		if err := p.Apply(ctx, b); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
		if digest() != before {
			t.Errorf("%s changed tables", what)
		}
	}

	t.Run("claim returns the zero position first", func(t *testing.T) {
		pos, err := p.Claim(ctx, 0, 10)
		if err != nil || !pos.IsZero() {
			t.Fatalf("Claim = %v, %v", pos, err)
		}
	})
	t.Run("a stale owner cannot commit after a newer claim", func(t *testing.T) {
		if _, err := p.Claim(ctx, 0, 20); err != nil {
			t.Fatal(err)
		}
		refused(t, "Apply with the old token", batchOf(10, zero, recs[:half]), projectors.ErrFenced)
	})
	t.Run("a claim with an older token is fenced", func(t *testing.T) {
		if _, err := p.Claim(ctx, 0, 15); !errors.Is(err, projectors.ErrFenced) {
			t.Fatalf("Claim(15) after Claim(20): %v, want ErrFenced", err)
		}
	})
	t.Run("the owner applies", func(t *testing.T) {
		if err := p.Apply(ctx, batchOf(20, zero, recs[:half])); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a batch with a stale After applies nothing", func(t *testing.T) {
		for _, after := range []eventstore.Position{zero, recs[half/2].Position, recs[half].Position} {
			refused(t, "Apply after "+after.String(), batchOf(20, after, recs[half:]), projectors.ErrCheckpointMoved)
		}
	})
	t.Run("a retried batch whose commit went through gets ErrCheckpointMoved", func(t *testing.T) {
		refused(t, "re-Apply", batchOf(20, zero, recs[:half]), projectors.ErrCheckpointMoved)
	})
	t.Run("a token never claimed here must claim first", func(t *testing.T) {
		after := recs[half-1].Position
		if err := p.Apply(ctx, batchOf(30, after, recs[half:])); !errors.Is(err, projectors.ErrCheckpointMoved) {
			t.Fatalf("Apply with an unclaimed token: %v, want ErrCheckpointMoved", err)
		}
		pos, err := p.Claim(ctx, 0, 30)
		if err != nil || pos != after {
			t.Fatalf("Claim(30) = %v, %v, want %v", pos, err, after)
		}
		if err := p.Apply(ctx, batchOf(30, after, recs[half:])); err != nil {
			t.Fatal(err)
		}
		if err := p.Apply(ctx, batchOf(20, recs[len(recs)-1].Position, recs[half:])); !errors.Is(err, projectors.ErrFenced) {
			t.Fatalf("the previous owner: %v, want ErrFenced", err)
		}
	})
}

func TestReadModelFencing(t *testing.T) {
	recs := oneOwnerLog(t)
	db := openTestDB(t)
	fencingSuite(t, recs, func() projectors.Projector { return testReadModel(t, db, Config{}) },
		func() string {
			d := modelDigest(t, db)
			var all []string
			for _, tbl := range slices.Sorted(maps.Keys(d)) {
				all = append(all, tbl, hash(d[tbl]))
			}
			return hash(all)
		})
}

func TestArchiverFencing(t *testing.T) {
	recs := oneOwnerLog(t)
	db := openTestDB(t)
	fencingSuite(t, recs, func() projectors.Projector { return testArchiver(t, db, ArchiverConfig{}) },
		func() string {
			return hash(append(dumpTable(t, db, "event_archive", ""), dumpTable(t, db, "event_archive_segments", "")...))
		})
}
