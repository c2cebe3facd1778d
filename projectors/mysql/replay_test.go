package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/projectors"
)

func dbName(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name string
	if err := db.QueryRow("SELECT DATABASE()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestReplayWhileWritesContinue rebuilds the read model while writes keep
// coming, the live projector and the archiver keep running and the streams
// are trimmed below every checkpoint; after the swap the live projector
// carries on, and once it caught up its tables equal a clean rebuild.
func TestReplayWhileWritesContinue(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 8)
	sc := newScenario(ctx, t, env.svc, 20, 4)
	sc.run(ctx, t, 4, 150, 11)

	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	arch := testArchiver(t, db, ArchiverConfig{})
	live := &watched{Projector: rm}
	liveRunner := startRunner(t, env.store, live, 50)
	archRunner := startRunner(t, env.store, arch, 50)
	waitCaughtUp(t, env.store, archiveCheckpoints(db, 8))
	waitCaughtUp(t, env.store, rm.Checkpoints)
	trimmed, err := projectors.TrimLog(ctx, env.store, []projectors.Checkpointer{rm, arch})
	if err != nil {
		t.Fatal(err)
	}
	if trimmed == 0 {
		t.Fatal("nothing trimmed")
	}

	var wg sync.WaitGroup
	wg.Go(func() { sc.run(ctx, t, 3, 200, 12) })
	var mu sync.Mutex
	phases := map[RebuildPhase]int{}
	var events int64
	err = Rebuild(ctx, db, env.store, RebuildOptions{
		BatchSize: 40, Parallelism: 3,
		Progress: func(p RebuildProgress) {
			mu.Lock()
			phases[p.Phase]++
			events = p.Events
			mu.Unlock()
			if p.Partition == -1 && (p.Phase == PhaseChase || p.Phase == PhaseSwap) {
				// Let the live model get ahead of the rebuilt one, so the
				// chase and the catch-up under the pause have work.
				sc.run(ctx, t, 2, 30, uint64(len(p.Phase)))
				waitCaughtUp(t, env.store, rm.Checkpoints)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	waitCaughtUp(t, env.store, rm.Checkpoints)
	waitCaughtUp(t, env.store, archiveCheckpoints(db, 8))
	liveRunner.stop(t)
	archRunner.stop(t)
	live.check(t)
	t.Logf("rebuild: %d events, progress calls by phase %v", events, phases)
	for _, ph := range []RebuildPhase{PhaseBuild, PhaseChase, PhaseSwap, PhaseDone} {
		if phases[ph] == 0 {
			t.Errorf("no progress reported in phase %s", ph)
		}
	}
	if n := count(t, db, "information_schema.tables", "table_schema = DATABASE() AND (table_name LIKE '%\\_\\_rebuild' OR table_name LIKE '%\\_\\_old')"); n != 0 {
		t.Errorf("%d rebuild tables left behind", n)
	}
	var paused sql.NullString
	if err := db.QueryRow("SELECT paused_until FROM read_model_control WHERE id = 1").Scan(&paused); err != nil || paused.Valid {
		t.Errorf("the live projector is still paused (%v, %v)", paused, err)
	}

	// A clean rebuild elsewhere, from a copy of the archive (the streams
	// were trimmed) and the streams.
	clean := openTestDB(t)
	src := dbName(t, db)
	for _, q := range []string{
		"INSERT INTO event_archive SELECT * FROM `" + src + "`.event_archive",
		"INSERT INTO event_archive_segments SELECT * FROM `" + src + "`.event_archive_segments",
		"INSERT INTO projector_checkpoints SELECT * FROM `" + src + "`.projector_checkpoints WHERE projector = 'archive'",
		"INSERT INTO quarantine SELECT * FROM `" + src + "`.quarantine WHERE projector = 'archive'",
	} {
		if _, err := clean.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := Rebuild(ctx, clean, env.store, RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	sameModel(t, db, clean)
}

func TestOneRebuildAtATime(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 2)
	db := openTestDB(t)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	unlock, err := lockRebuild(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	err = Rebuild(ctx, db, env.store, RebuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "another rebuild") {
		t.Fatalf("second rebuild: %v", err)
	}
}

// TestSwapMovesTheLiveCheckpoint: a live owner behind the rebuilt model gets
// ErrCheckpointMoved after the swap and resumes from the rebuilt checkpoint
// with its token intact; an older owner stays fenced.
func TestSwapMovesTheLiveCheckpoint(t *testing.T) {
	ctx := context.Background()
	recs := oneOwnerLog(t)
	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	zero := eventstore.Position{}
	half := len(recs) / 2
	if _, err := rm.Claim(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Claim(ctx, 0, 7); err != nil {
		t.Fatal(err)
	}
	if err := rm.Apply(ctx, batchOf(7, zero, recs[:half])); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(ctx, db, staticLog(recs), RebuildOptions{BatchSize: 9}); err != nil {
		t.Fatal(err)
	}
	end := recs[len(recs)-1].Position
	err := rm.Apply(ctx, batchOf(7, recs[half-1].Position, recs[half:]))
	if !errors.Is(err, projectors.ErrCheckpointMoved) {
		t.Fatalf("live Apply after the swap: %v, want ErrCheckpointMoved", err)
	}
	if err := rm.Apply(ctx, batchOf(5, end, recs[half:])); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("older owner after the swap: %v, want ErrFenced", err)
	}
	pos, err := rm.Claim(ctx, 0, 7)
	if err != nil || pos != end {
		t.Fatalf("Claim after the swap = %v, %v, want %v", pos, err, end)
	}
}

// holdRebuildLock takes the rebuild lock as a running Rebuild holds it,
// until the test ends or it calls the returned release.
func holdRebuildLock(t *testing.T, db *sql.DB) (release func()) {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	unlock, err := lockRebuild(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	return unlock
}

// pauseLive sets the pause a swap sets, for an hour.
func pauseLive(t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.Exec("UPDATE read_model_control SET paused_until = UTC_TIMESTAMP(3) + INTERVAL 1 HOUR, paused_by = 'rebuild-test' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
}

// TestPausedApplyWaits: while a swap holds the pause, live batches wait and
// write nothing; they go through once it is lifted.
func TestPausedApplyWaits(t *testing.T) {
	ctx := context.Background()
	recs := oneOwnerLog(t)
	db := openTestDB(t)
	rm := testReadModel(t, db, Config{PausePoll: 5 * time.Millisecond})
	if _, err := rm.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	holdRebuildLock(t, db)
	pauseLive(t, db)
	done := make(chan error, 1)
	go func() { done <- rm.Apply(ctx, batchOf(1, eventstore.Position{}, recs)) }()
	select {
	case err := <-done:
		t.Fatalf("Apply returned while paused: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if n := count(t, db, readmodel.Users, ""); n != 0 {
		t.Fatalf("%d users written while paused", n)
	}
	if _, err := db.Exec("UPDATE read_model_control SET paused_until = NULL WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, readmodel.Users, ""); n == 0 {
		t.Fatal("nothing written after the pause")
	}
}

// TestDeadRebuildsPauseIsIgnored: a pause whose rebuild died (its session,
// and with it the rebuild lock, is gone) does not hold the live projector
// until the lease ends, and the next Rebuild lifts it.
func TestDeadRebuildsPauseIsIgnored(t *testing.T) {
	ctx := context.Background()
	recs := oneOwnerLog(t)
	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	pauseLive(t, db)
	// An hour-long pause and nobody holding the lock: Claim and Apply go
	// through (the context bounds the test should they wait).
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := rm.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := rm.Apply(ctx, batchOf(1, eventstore.Position{}, recs)); err != nil {
		t.Fatalf("Apply under a dead rebuild's pause: %v", err)
	}
	if pos, err := rm.Checkpoint(ctx, 0); err != nil || pos != recs[len(recs)-1].Position {
		t.Fatalf("checkpoint after Apply under a dead rebuild's pause: %v, %v, want %v", pos, err, recs[len(recs)-1].Position)
	}
	if n := count(t, db, readmodel.Users, ""); n == 0 {
		t.Fatal("nothing written under a dead rebuild's pause")
	}
	// The next rebuild holds the lock from the start: it must lift the old
	// pause before it builds, or the live projector would wait through its
	// whole build.
	checked := false
	err := Rebuild(ctx, db, staticLog(recs), RebuildOptions{Progress: func(p RebuildProgress) {
		if p.Phase != PhaseBuild || p.Partition != -1 {
			return
		}
		checked = true
		var paused sql.NullString
		if err := db.QueryRow("SELECT paused_until FROM read_model_control WHERE id = 1").Scan(&paused); err != nil || paused.Valid {
			t.Errorf("the dead rebuild's pause is still set while the next one builds (%v, %v)", paused, err)
		}
	}})
	if err != nil || !checked {
		t.Fatalf("rebuild: %v (build phase reported: %v)", err, checked)
	}
}

// staticLog is a one-partition log held in memory.
type staticLog []eventstore.Recorded

func (l staticLog) Partitions() int { return 1 }

func (l staticLog) ReadPartitionState(_ context.Context, _ int, after eventstore.Position, limit int) ([]eventstore.Recorded, eventstore.StreamState, error) {
	i := 0
	for i < len(l) && l[i].Position.Compare(after) <= 0 {
		i++
	}
	st := eventstore.StreamState{Length: int64(len(l)), EntriesAdded: int64(len(l))}
	if len(l) > 0 {
		st.First, st.LastGenerated = l[0].Position, l[len(l)-1].Position
	}
	return l[i:min(len(l), i+limit)], st, nil
}
