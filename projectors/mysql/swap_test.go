package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/readmodel"
)

// waitForMDLWait waits until a statement starting with prefix waits for a
// table metadata lock in db's server, and returns its connection id.
func waitForMDLWait(ctx context.Context, t *testing.T, db *sql.DB, prefix string) (int64, error) {
	deadline := time.Now().Add(2 * time.Minute) // hang detector
	for time.Now().Before(deadline) {
		var id int64
		err := db.QueryRowContext(ctx, "SELECT id FROM information_schema.processlist WHERE state = 'Waiting for table metadata lock'"+
			" AND db = DATABASE() AND info LIKE ? LIMIT 1", prefix+"%").Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	return 0, fmt.Errorf("no %q waiting for a metadata lock within 2 minutes", prefix)
}

// TestSwapBlockedByALongTransactionKeepsTheRebuiltTables: a transaction
// that read messages and stays open holds its metadata lock. The swap's
// RENAME TABLE waits for it with a short lock wait, and a reader of
// messages queued behind the waiting RENAME gets its answer when that wait
// ends; after its attempts the rebuild fails with ErrSwapBlocked, keeps the
// rebuilt tables and leaves the live projector unpaused. Once the
// transaction ends, the next rebuild reuses the tables (applying only what
// came since) and swaps; the model equals a fresh projection.
func TestSwapBlockedByALongTransactionKeepsTheRebuiltTables(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 2)
	sc := newScenario(ctx, t, env.svc, 8, 2)
	sc.run(ctx, t, 2, 80, 21)
	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	project(t, env.store, rm, rm.Checkpoints)

	blocker, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback()
	var n int
	if err := blocker.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+readmodel.Messages).Scan(&n); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	renames, first := 0, RebuildProgress{}
	var readerQueued bool
	var readerErr error
	var readers sync.WaitGroup
	err = Rebuild(ctx, db, env.store, RebuildOptions{SwapLockWait: time.Second, SwapAttempts: 3,
		Progress: func(p RebuildProgress) {
			mu.Lock()
			defer mu.Unlock()
			first = p
			if p.Phase != PhaseRename {
				return
			}
			renames++
			if renames > 1 {
				return
			}
			// A reader of messages comes while the RENAME waits.
			readers.Go(func() {
				if _, err := waitForMDLWait(ctx, t, db, "RENAME TABLE"); err != nil {
					readerErr = err
					return
				}
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // hang detector
				defer cancel()
				done := make(chan error, 1)
				go func() {
					var n int
					done <- db.QueryRowContext(rctx, "SELECT COUNT(*) FROM "+readmodel.Messages).Scan(&n)
				}()
				_, qerr := waitForMDLWait(ctx, t, db, "SELECT COUNT(*) FROM "+readmodel.Messages)
				readerQueued = qerr == nil
				readerErr = <-done
			})
		}})
	readers.Wait()
	if !errors.Is(err, ErrSwapBlocked) {
		t.Fatalf("rebuild under a long transaction: %v, want ErrSwapBlocked", err)
	}
	t.Logf("rebuild: %v", err)
	if renames != 3 {
		t.Errorf("%d RENAME attempts, want 3", renames)
	}
	if readerErr != nil || !readerQueued {
		t.Errorf("reader of messages behind the waiting RENAME: err %v, seen queued %v", readerErr, readerQueued)
	}
	if got := count(t, db, "information_schema.tables", "table_schema = DATABASE() AND table_name LIKE '%\\_\\_rebuild'"); got != len(swapTables()) {
		t.Errorf("%d rebuilt tables kept after the failed swap, want %d", got, len(swapTables()))
	}
	if p, err := ReadPause(ctx, db); err != nil || p.Active || p.By != "" {
		t.Errorf("pause after the failed swap: %+v, %v; want none", p, err)
	}
	if err := blocker.Rollback(); err != nil {
		t.Fatal(err)
	}

	sc.run(ctx, t, 1, 10, 22)
	project(t, env.store, rm, rm.Checkpoints)
	var second RebuildProgress
	err = Rebuild(ctx, db, env.store, RebuildOptions{SwapLockWait: time.Second, Progress: func(p RebuildProgress) { second = p }})
	if err != nil {
		t.Fatalf("rebuild after the transaction ended: %v", err)
	}
	if !second.Resumed || second.Events >= first.Events {
		t.Errorf("second rebuild: resumed %v, %d events applied (the first applied %d); want the kept tables caught up",
			second.Resumed, second.Events, first.Events)
	}
	if first.Total < first.Events || first.Total == 0 {
		t.Errorf("first rebuild: total %d, events %d", first.Total, first.Events)
	}
	if got := count(t, db, "information_schema.tables", "table_schema = DATABASE() AND (table_name LIKE '%\\_\\_rebuild' OR table_name LIKE '%\\_\\_old')"); got != 0 {
		t.Errorf("%d rebuild tables left after the swap", got)
	}
	sameModel(t, db, projectFresh(t, env.store))
}
