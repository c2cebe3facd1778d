package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors/mysql"
)

// killPoint is where a replay process is killed: the phase it halts in
// (haltEnv), with at least events applied, and what the database must show
// there before the kill.
type killPoint struct {
	name   string
	phase  mysql.RebuildPhase
	events int
	check  func(t *testing.T, db *sql.DB)
}

// TestReplayKilledMidBuildAndMidSwap runs the real mpimctl binary and kills
// it with SIGKILL mid-build (the shadow tables hold some of the rows), and
// on both sides of the swap's one RENAME TABLE, which cannot be stopped
// halfway: paused and caught up just before it, and just after it, still
// paused with the old tables not dropped. The live projector runs
// throughout. After each kill: the live tables are whole (all old or all
// new), the live projector is not held by the dead replay's pause, a
// restarted projector carries on from the checkpoints beside the tables and
// its model equals a clean projection of the log, and a second replay
// drops the leftovers, lifts nothing it should not and swaps in a model
// equal to the clean projection.
func TestReplayKilledMidBuildAndMidSwap(t *testing.T) {
	bin := testsvc.BuildBinary(t, "mpimctl")
	points := []killPoint{
		{name: "mid-build", phase: mysql.PhaseBuild, events: 150, check: func(t *testing.T, db *sql.DB) {
			shadow, _ := countRows(t, db, "__rebuild")
			live, _ := countRows(t, db, "")
			if shadow == 0 || shadow >= live {
				t.Fatalf("shadow tables hold %d rows, the live ones %d: not mid-build", shadow, live)
			}
		}},
		{name: "before-rename", phase: mysql.PhaseRename, check: func(t *testing.T, db *sql.DB) {
			if !pausedNow(t, db) {
				t.Fatal("the live projector is not paused before the rename")
			}
			if old := tablesLike(t, db, "__old"); old != 0 {
				t.Fatalf("%d old tables before the rename", old)
			}
		}},
		{name: "after-rename", phase: mysql.PhaseSwapped, check: func(t *testing.T, db *sql.DB) {
			if !pausedNow(t, db) {
				t.Fatal("the live projector is not paused right after the rename")
			}
			if shadow := tablesLike(t, db, "__rebuild"); shadow != 0 {
				t.Fatalf("%d shadow tables after the rename", shadow)
			}
		}},
	}
	for _, kp := range points {
		t.Run(kp.name, func(t *testing.T) {
			t.Parallel()
			killAndRepair(t, bin, kp)
		})
	}
}

func killAndRepair(t *testing.T, bin string, kp killPoint) {
	w := newReplayWorld(t)
	w.send(t, w.direct, 200)
	w.send(t, w.group, 60)
	dsn, db := modelDB(t)
	live := startLive(t, w.env.Store, db)
	live.waitCaughtUp(t, w.env.Store)

	// Replay until the halt, then SIGKILL.
	halted := filepath.Join(t.TempDir(), "halted")
	proc, logs := startReplay(t, bin, w.flags(dsn), fmt.Sprintf("%s:%d:%s", kp.phase, kp.events, halted))
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	testsvc.Eventually(t, 2*time.Minute, "the replay to halt at "+kp.name, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the replay exited before halting at %s: %v\n%s", kp.name, err, logs)
		default:
		}
		_, err := os.Stat(halted)
		return err == nil
	})
	kp.check(t, db)
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	t.Logf("killed at %s; replay's output:\n%s", kp.name, logs)

	// The dead replay's session ends and its lock with it.
	testsvc.Eventually(t, time.Minute, "the dead replay's lock to be released", func() bool { return rebuildLockFree(t, db) })
	// The live projector carries on (were it held by the pause, it would
	// wait out the two-minute lease).
	w.send(t, w.direct, 20)
	live.waitCaughtUp(t, w.env.Store)
	// A restart of the projector: it resumes from the checkpoints beside
	// the live tables, whichever side of the rename they are.
	live.stop(t)
	live = startLive(t, w.env.Store, db)
	w.send(t, w.group, 10)
	live.waitCaughtUp(t, w.env.Store)
	ref := referenceModel(t, w.env.Store)
	sameModelAs(t, "after the kill and a projector restart", db, ref)

	// A second replay cleans up and swaps in the same model.
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, append(append([]string{"replay", "--batch-size", "50"}, w.flags(dsn)...), "mysql"), &out, &errOut); err != nil {
		t.Fatalf("second replay: %v\n%s", err, errOut.String())
	}
	if left := leftoverTables(t, db); len(left) != 0 {
		t.Errorf("tables left after the second replay: %v", left)
	}
	if pausedNow(t, db) {
		t.Error("the live projector is still paused after the second replay")
	}
	live.waitCaughtUp(t, w.env.Store)
	sameModelAs(t, "after a second replay", db, ref)
}

// startReplay starts `mpimctl replay mysql` with the halt spec; its
// combined output goes to the returned buffer, to read once it exited.
func startReplay(t *testing.T, bin string, flags []string, halt string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"replay", "--batch-size", "10", "--parallelism", "1"}, flags...), "mysql")...)
	cmd.Env = append(os.Environ(), haltEnv+"="+halt)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // if the test ended before the kill
	return cmd, &logs
}

// pausedNow reports whether the live projector's pause is in force.
func pausedNow(t *testing.T, db *sql.DB) bool {
	t.Helper()
	var paused sql.NullBool
	err := db.QueryRow("SELECT paused_until > UTC_TIMESTAMP(3) FROM read_model_control WHERE id = 1").Scan(&paused)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return paused.Valid && paused.Bool
}

// tablesLike counts the database's tables whose names end in suffix.
func tablesLike(t *testing.T, db *sql.DB, suffix string) int {
	t.Helper()
	var n int
	pattern := "%" + strings.ReplaceAll(suffix, "_", "\\_")
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?", pattern).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rebuildLockFree reports whether no session holds the rebuild lock.
func rebuildLockFree(t *testing.T, db *sql.DB) bool {
	t.Helper()
	var free sql.NullInt64
	if err := db.QueryRow("SELECT IS_FREE_LOCK(LEFT(CONCAT('mpim_rebuild.', DATABASE()), 64))").Scan(&free); err != nil {
		t.Fatal(err)
	}
	return free.Valid && free.Int64 == 1
}
