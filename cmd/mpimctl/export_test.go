package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/mysql"
)

// archiver is the archive projector of one database, running in the
// background as mpimd runs it.
type archiver struct {
	arch   *mysql.Archiver
	cancel context.CancelFunc
	done   chan error
}

func startArchiver(t *testing.T, store *eventstore.Store, db *sql.DB) *archiver {
	t.Helper()
	arch, err := mysql.NewArchiver(db, mysql.ArchiverConfig{Linger: -1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projectors.NewRunner(store, &projectors.Static{}, arch, projectors.RunnerConfig{
		BatchSize: 20, Block: 20 * time.Millisecond, RetryBackoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &archiver{arch: arch, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- r.Run(ctx) }()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop ends the archiver (again: a no-op).
func (a *archiver) stop(t *testing.T) {
	t.Helper()
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	if err := <-a.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("archiver: %v", err)
	}
	a.arch.Close()
}

// caughtUp waits until the archive holds every partition's last entry.
func (a *archiver) caughtUp(t *testing.T, store *eventstore.Store, db *sql.DB) {
	t.Helper()
	testsvc.Eventually(t, 90*time.Second, "the archiver to reach the end of the log", func() bool {
		for p := range store.Partitions() {
			info, err := store.Info(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			head, err := mysql.ArchiveHead(context.Background(), db, p)
			if err != nil {
				t.Fatal(err)
			}
			if head.Compare(info.Last) < 0 {
				return false
			}
		}
		return true
	})
}

// trim trims the log below the archive's head, as mpimd's trim loop does
// with the archiver as the lowest checkpoint.
func (a *archiver) trim(t *testing.T, store *eventstore.Store) int64 {
	n, err := projectors.TrimLog(context.Background(), store, []projectors.Checkpointer{a.arch})
	if err != nil {
		t.Error(err)
	}
	return n
}

// exportLines returns the export lines of partition p's entries after
// after, read from the archive and then the stream by the test itself: the
// archive's entries up to its head, the stream's after it.
func exportLines(t *testing.T, store *eventstore.Store, db *sql.DB, p int, after eventstore.Position) []string {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	out := &printer{w: &buf, json: true}
	head, err := mysql.ArchiveHead(ctx, db, p)
	if err != nil {
		t.Fatal(err)
	}
	read := func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
		return mysql.ReadArchive(ctx, db, p, after, limit)
	}
	for range 2 {
		for {
			recs, err := read(after, 500)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if err := out.print(r); err != nil {
					t.Fatal(err)
				}
				after = r.Position
			}
		}
		if after.Compare(head) < 0 {
			t.Fatalf("partition %d: the archive ends at %s, before its head %s", p, after, head)
		}
		read = func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return store.ReadPartition(ctx, p, after, limit)
		}
	}
	return strings.SplitAfter(buf.String(), "\n")[:strings.Count(buf.String(), "\n")]
}

// archivedWorld is a replay world with n messages in each conversation and
// its archiver running on a fresh database.
func archivedWorld(t *testing.T, n int) (*replayWorld, string, *sql.DB, *archiver) {
	t.Helper()
	w := newReplayWorld(t)
	w.send(t, w.direct, n)
	w.send(t, w.group, n)
	dsn, db := modelDB(t)
	return w, dsn, db, startArchiver(t, w.env.Store, db)
}

// TestExportWholeHistoryUnderTrims exports the whole log one entry a read
// while a trim loop keeps cutting the stream below the archive's head and
// new messages arrive: every partition's export is the archive and stream
// entry by entry, without a hole.
func TestExportWholeHistoryUnderTrims(t *testing.T) {
	w, dsn, db, arch := archivedWorld(t, 60)
	store := w.env.Store
	var trimmed atomic.Int64
	testsvc.Eventually(t, 90*time.Second, "the trim to remove entries the archive holds", func() bool {
		trimmed.Add(arch.trim(t, store))
		return trimmed.Load() > 0
	})
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() {
		for i := 0; i < 2000 && ctx.Err() == nil; i++ {
			conv := w.direct
			if i%2 == 1 {
				conv = w.group
			}
			if err := w.sendOne(conv); err != nil {
				t.Error(err)
				return
			}
			trimmed.Add(arch.trim(t, store))
			time.Sleep(2 * time.Millisecond) // the pace of the writes and trims, not an assertion
		}
	})
	var began [worldPartitions]eventstore.Position
	for p := range worldPartitions {
		info, err := store.Info(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		began[p] = info.Last
	}
	before := trimmed.Load()
	out, errOut, err := ctl(t, append([]string{"export", "--batch-size", "1"}, w.flags(dsn)...)...)
	cancel()
	loop.Wait()
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	if trimmed.Load() == before {
		t.Fatal("no trim ran during the export: the test did not test")
	}
	arch.caughtUp(t, store, db)
	got := map[int][]string{}
	for _, line := range strings.SplitAfter(out, "\n") {
		var l struct {
			Partition *int `json:"partition"`
		}
		if err := json.Unmarshal([]byte(line), &l); err == nil && l.Partition != nil {
			got[*l.Partition] = append(got[*l.Partition], line)
		}
	}
	total := 0
	for p := range worldPartitions {
		want := exportLines(t, store, db, p, eventstore.Position{})
		if len(got[p]) > len(want) {
			t.Fatalf("partition %d: %d lines exported, the log holds %d", p, len(got[p]), len(want))
		}
		for i, line := range got[p] {
			if line != want[i] {
				t.Fatalf("partition %d: line %d is\n%s\nwant\n%s", p, i, line, want[i])
			}
		}
		total += len(got[p])
		if n := len(got[p]); !began[p].IsZero() && (n == 0 || lastPos(t, got[p][n-1]).Compare(began[p]) < 0) {
			t.Errorf("partition %d: the export ends before %s, the last entry when it began", p, began[p])
		}
	}
	if !strings.Contains(errOut, fmt.Sprintf("export: %d events\n", total)) {
		t.Errorf("export's last line is not its count, %d: %q", total, errOut)
	}
}

// lastPos returns the position of an export line.
func lastPos(t *testing.T, line string) eventstore.Position {
	t.Helper()
	_, rest, _ := strings.Cut(line, `"position":"`)
	s, _, _ := strings.Cut(rest, `"`)
	pos, err := eventstore.ParsePosition(s)
	if err != nil {
		t.Fatalf("export line %q: %v", line, err)
	}
	return pos
}

// TestExportSinceLimitAndGaps archives part of the log and trims the
// streams below the archive's head, writes more, then exports: from a time
// inside the archived history, with an exact --limit, without --mysql
// (refused: the stream lost the start), and after a trim past the archive's
// head (a gap: exit with an error naming the entries).
func TestExportSinceLimitAndGaps(t *testing.T) {
	w, dsn, db, arch := archivedWorld(t, 30)
	store := w.env.Store
	arch.caughtUp(t, store, db)
	arch.stop(t)
	if arch.trim(t, store) == 0 {
		t.Fatal("nothing trimmed")
	}
	w.send(t, w.direct, 5)
	w.send(t, w.group, 5)
	var all []string
	for p := range worldPartitions {
		all = append(all, exportLines(t, store, db, p, eventstore.Position{})...)
	}
	flags := w.flags(dsn)
	export := func(args ...string) (string, string, error) {
		return ctl(t, append(append([]string{"export"}, args...), flags...)...)
	}
	out, _, err := export()
	if err != nil || out != strings.Join(all, "") {
		t.Fatalf("export --mysql: %v; %d lines, want %d", err, strings.Count(out, "\n"), len(all))
	}

	t.Run("since a time in the archive", func(t *testing.T) {
		mid := lastPos(t, all[len(all)/3])
		var want []string
		for _, line := range all {
			if lastPos(t, line).Ms >= mid.Ms {
				want = append(want, line)
			}
		}
		since := time.UnixMilli(int64(mid.Ms)).UTC().Format(time.RFC3339Nano)
		out, _, err := export("--since", since)
		if err != nil || out != strings.Join(want, "") || len(want) == len(all) {
			t.Fatalf("export --since %s: %v; %d lines, want %d of %d", since, err, strings.Count(out, "\n"), len(want), len(all))
		}
	})
	t.Run("limit", func(t *testing.T) {
		out, errOut, err := export("--limit", "7", "--batch-size", "3")
		if err != nil || out != strings.Join(all[:7], "") || !strings.HasSuffix(errOut, "export: 7 events\n") {
			t.Fatalf("export --limit 7: %v, %d lines\n%s", err, strings.Count(out, "\n"), errOut)
		}
	})
	t.Run("without --mysql", func(t *testing.T) {
		noMySQL := slices.DeleteFunc(slices.Clone(flags), func(s string) bool { return s == "--mysql" || s == dsn })
		out, errOut, err := ctl(t, append([]string{"export"}, noMySQL...)...)
		if err == nil || out != "" || !strings.Contains(errOut, "are missing") || !strings.Contains(errOut, "export with --mysql (or MPIM_MYSQL)") {
			t.Fatalf("export of a trimmed stream without --mysql: %v, %d lines\n%s", err, strings.Count(out, "\n"), errOut)
		}
	})
	t.Run("trimmed past the archive head", func(t *testing.T) {
		p, head := -1, eventstore.Position{}
		var recs []eventstore.Recorded
		for q := range worldPartitions {
			h, err := mysql.ArchiveHead(context.Background(), db, q)
			if err != nil {
				t.Fatal(err)
			}
			if recs, err = store.ReadPartition(context.Background(), q, h, 100); err != nil {
				t.Fatal(err)
			}
			if len(recs) >= 3 {
				p, head = q, h
				break
			}
		}
		if p < 0 {
			t.Fatal("no partition with 3 entries after the archive head")
		}
		if err := w.env.RDB.XTrimMinID(context.Background(), fmt.Sprintf("%s{p%d}:log", w.env.Prefix, p), recs[2].Position.String()).Err(); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := export()
		msg := fmt.Sprintf("export: partition %d: entries between %s and %s are missing (2 entries)", p, head, recs[2].Position)
		if err == nil || !strings.Contains(errOut, msg) || strings.Contains(errOut, " events\n") {
			t.Fatalf("export after a trim past the archive head: %v\n%s\nwant %q and no count", err, errOut, msg)
		}
	})
}

// TestExportRefusesBadFlags checks each of export's flags against bad input.
func TestExportRefusesBadFlags(t *testing.T) {
	base := seed(t)
	for _, tc := range []struct{ args, want string }{
		{"--since garbage", `--since "garbage" is neither a duration nor an RFC 3339 time`},
		{"--after 1-0", "--after needs --partition N"},
		{"--partition 1 --after x-y", "invalid stream entry id"},
		{"--since 1h --partition 1 --after 1-0", "give --since or --after, not both"},
		{"--limit -1", "--limit must be 0 (all) or positive, got -1"},
		{"--batch-size 0", "--batch-size must be 1..100000, got 0"},
		{"--partition 9", "--partition must be"},
	} {
		_, _, err := ctl(t, append(append([]string{"export"}, strings.Fields(tc.args)...), base...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("export %s: %v, want %q", tc.args, err, tc.want)
		}
	}
}
