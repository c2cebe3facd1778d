package main

import (
	"context"
	"database/sql"
	"regexp"
	"strings"
	"testing"

	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/schema"
)

// TestReplayFlagsAfterTheSubcommandAndProgress: flags work after `mysql`
// as before it; progress lines carry the total and a percentage, phase
// lines no partition; bad flag values and subcommands are refused.
func TestReplayFlagsAfterTheSubcommandAndProgress(t *testing.T) {
	base := seed(t)
	dsn := testsvc.MySQL(t)
	args := append(append([]string{"replay"}, base...), "--mysql", dsn, "mysql", "--batch-size", "2", "--parallelism", "1", "--swap-lock-wait", "3s", "--swap-retries", "1", "--fresh")
	out, errOut, err := ctl(t, args...)
	if err != nil || !strings.Contains(out, "swapped") {
		t.Fatalf("replay with flags after the subcommand: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("progress:\n%s", errOut)
	if strings.Contains(errOut, "partition -1") || strings.Contains(errOut, " at 0-0") {
		t.Errorf("progress shows a phase change as a partition:\n%s", errOut)
	}
	phase := regexp.MustCompile(`(?m)^replay mysql: phase (build|chase|swap|rename|swapped|done): \d+ of about \d+ events \(\d+%\), \S+$`)
	if n := len(phase.FindAllString(errOut, -1)); n != 6 {
		t.Errorf("%d phase lines, want 6 (build, chase, swap, rename, swapped, done):\n%s", n, errOut)
	}
	batch := regexp.MustCompile(`(?m)^replay mysql: build +\d+ of about \d+ events \(\d+%\), partition \d+ at \d+-\d+, \S+$`)
	if !batch.MatchString(errOut) {
		t.Errorf("no batch line with total, percentage and position:\n%s", errOut)
	}
	// The log is all in the stream (nothing archived): the estimate is exact.
	if done := regexp.MustCompile(`phase done: (\d+) of about (\d+) events \(100%\)`).FindStringSubmatch(errOut); done == nil || done[1] != done[2] {
		t.Errorf("done line without the whole total at 100%%:\n%s", errOut)
	}

	bad := map[string][]string{
		"--batch-size must be 1..100000":         {"mysql", "--batch-size", "0"},
		"invalid value":                          {"mysql", "--batch-size", "x"},
		"--parallelism must be at least 1":       {"mysql", "--parallelism", "0"},
		"--swap-lock-wait must be whole seconds": {"mysql", "--swap-lock-wait", "1500ms"},
		"--swap-retries must be 0..100":          {"mysql", "--swap-retries", "-1"},
		`unknown subcommand "rebuild"`:           {"rebuild"},
		`unexpected arguments ["extra"`:          {"mysql", "extra", "--fresh"},
		"no subcommand given":                    {"--fresh"},
	}
	for want, a := range bad {
		_, _, err := ctl(t, append(append([]string{"replay"}, base...), append([]string{"--mysql", dsn}, a...)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mpimctl replay %v: %v, want an error with %q", a, err, want)
		}
	}
}

// TestReplayUnpauseAndStatsShowThePause: stats shows who paused the live
// projector, until when and whether that replay still runs; `replay
// unpause` lifts a pause whose replay is gone, refuses one whose replay
// runs unless --force, and says when there is nothing to lift.
func TestReplayUnpauseAndStatsShowThePause(t *testing.T) {
	base, dsn, db := seedWithMySQL(t)
	ctx := context.Background()
	pause := func() {
		t.Helper()
		if _, err := db.Exec("UPDATE read_model_control SET paused_until = UTC_TIMESTAMP(3) + INTERVAL 1 HOUR, paused_by = 'rebuild-x (host h pid 1) since 2026-12-05T10:00:00Z' WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
	}
	stats := func(want string) {
		t.Helper()
		out, errOut, err := ctl(t, append(append([]string{"stats"}, base...), "--mysql", dsn)...)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("stats: %v, want %q in\n%s%s", err, want, out, errOut)
		}
	}
	unpause := func(want string, args ...string) {
		t.Helper()
		out, _, err := ctl(t, append(append([]string{"replay"}, base...), append([]string{"--mysql", dsn, "unpause"}, args...)...)...)
		if !strings.Contains(out+"|"+errString(err), want) {
			t.Errorf("replay unpause %v: out %q err %v, want %q", args, out, err, want)
		}
	}
	stats("MYSQL PROJECTOR not paused")
	unpause("was not paused")

	pause()
	stats("MYSQL PROJECTOR PAUSE IGNORED: set by rebuild-x (host h pid 1) since 2026-12-05T10:00:00Z until ")
	unpause("lifted the pause by rebuild-x")
	stats("MYSQL PROJECTOR not paused")

	pause()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got int
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(LEFT(CONCAT('mpim_rebuild.', DATABASE()), 64), 0)").Scan(&got); err != nil || got != 1 {
		t.Fatalf("taking the rebuild lock: %d, %v", got, err)
	}
	stats("MYSQL PROJECTOR PAUSED by rebuild-x")
	out, _, _ := ctl(t, append(append([]string{"stats", "--json"}, base...), "--mysql", dsn)...)
	if !strings.Contains(out, `"owner_running": true`) || !strings.Contains(out, `"mysql_pause"`) {
		t.Errorf("stats --json without the running replay's pause:\n%s", out)
	}
	unpause("still running")
	unpause("lifted the pause by rebuild-x", "--force")
	stats("MYSQL PROJECTOR not paused")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// seedWithMySQL is seed with a migrated MySQL database: the flags, its DSN
// and the database, closed when the test ends.
func seedWithMySQL(t *testing.T) ([]string, string, *sql.DB) {
	t.Helper()
	base := seed(t)
	dsn := testsvc.MySQL(t)
	ctx := context.Background()
	db, err := connect.MySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := schema.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return base, dsn, db
}
