package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/schema"
	"github.com/redis/go-redis/v9"
)

// openTestDB returns a fresh, migrated database for tb, opened with
// connect.MySQL as the binaries open theirs.
func openTestDB(tb testing.TB) *sql.DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := connect.MySQL(ctx, testsvc.MySQL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := schema.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	return db
}

// logEnv is an event store on a test prefix with the write side on it.
type logEnv struct {
	rdb    redis.UniversalClient
	prefix string
	store  *eventstore.Store
	svc    *command.Service
}

func newLogEnv(tb testing.TB, partitions int) *logEnv {
	tb.Helper()
	w := commandtest.New(tb, commandtest.Options{Partitions: partitions, PoolSize: 64})
	return &logEnv{rdb: w.RDB, prefix: w.Prefix, store: w.Store, svc: w.Svc}
}

// streamKey is partition p's stream (the layout eventstore documents).
func (e *logEnv) streamKey(p int) string { return fmt.Sprintf("%s{p%d}:log", e.prefix, p) }

// checkpointer reads a projector's checkpoints.
type checkpointer func(ctx context.Context) (map[int]eventstore.Position, error)

func archiveCheckpoints(db *sql.DB, partitions int) checkpointer {
	return func(ctx context.Context) (map[int]eventstore.Position, error) {
		out := map[int]eventstore.Position{}
		for p := range partitions {
			pos, err := ArchiveHead(ctx, db, p)
			if err != nil {
				return nil, err
			}
			out[p] = pos
		}
		return out, nil
	}
}

// caughtUp reports whether every checkpoint reached the log's heads.
func caughtUp(ctx context.Context, tb testing.TB, store *eventstore.Store, ck checkpointer) bool {
	tb.Helper()
	got, err := ck(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for p, head := range projectorstest.Heads(ctx, tb, store) {
		if got[p].Compare(head) < 0 {
			return false
		}
	}
	return true
}

// runner is a projector runner in the background.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func startRunner(tb testing.TB, store *eventstore.Store, proj projectors.Projector, batch int) *runner {
	tb.Helper()
	return startRunnerWith(tb, store, &projectors.Static{}, proj, batch)
}

// startRunnerWith is startRunner with a coordinator of the caller's.
func startRunnerWith(tb testing.TB, store *eventstore.Store, coord projectors.Coordinator, proj projectors.Projector, batch int) *runner {
	tb.Helper()
	r, err := projectors.NewRunner(store, coord, proj, projectors.RunnerConfig{
		BatchSize: batch, Block: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return &runner{cancel: cancel, done: done}
}

func (r *runner) stop(tb testing.TB) {
	tb.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		tb.Errorf("runner: %v", err)
	}
}

// waitCaughtUp waits until ck reaches the log's heads.
func waitCaughtUp(tb testing.TB, store *eventstore.Store, ck checkpointer) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	for !caughtUp(ctx, tb, store, ck) {
		if time.Now().After(deadline) {
			got, _ := ck(ctx)
			tb.Fatalf("projector did not catch up: checkpoints %v, heads %v", got, projectorstest.Heads(ctx, tb, store))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// project runs proj over the whole log until it is caught up.
func project(tb testing.TB, store *eventstore.Store, proj projectors.Projector, ck checkpointer) {
	tb.Helper()
	r := startRunner(tb, store, proj, 200)
	waitCaughtUp(tb, store, ck)
	r.stop(tb)
}

// projectFresh projects store's whole log into a fresh, migrated read model,
// fails tb on any apply out of order, and returns the model's database.
func projectFresh(tb testing.TB, store *eventstore.Store) *sql.DB {
	tb.Helper()
	db := openTestDB(tb)
	rm := testReadModel(tb, db, Config{})
	w := &watched{Projector: rm}
	project(tb, store, w, rm.Checkpoints)
	w.check(tb)
	return db
}

// watched wraps a projector and remembers errors that must never happen
// (ErrOutOfOrder), whatever the runner does with them.
type watched struct {
	projectors.Projector
	mu            sync.Mutex
	errs          []error
	fenced, moved int
}

func (w *watched) Apply(ctx context.Context, b *projectors.Batch) error {
	err := w.Projector.Apply(ctx, b)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case errors.Is(err, ErrOutOfOrder):
		w.errs = append(w.errs, err)
	case errors.Is(err, projectors.ErrFenced):
		w.fenced++
	case errors.Is(err, projectors.ErrCheckpointMoved):
		w.moved++
	}
	return err
}

func (w *watched) check(tb testing.TB) {
	tb.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range w.errs {
		tb.Errorf("apply: %v", err)
	}
}

// dumpTable returns the rows of table as sorted text lines, without the
// columns in skip.
func dumpTable(tb testing.TB, db *sql.DB, table string, where string, skip ...string) []string {
	tb.Helper()
	rows, err := db.Query("SELECT * FROM " + table + " " + where)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			tb.Fatal(err)
		}
		var sb strings.Builder
		for i, c := range cols {
			if slices.Contains(skip, c) {
				continue
			}
			if vals[i] == nil {
				fmt.Fprintf(&sb, "%s=NULL ", c)
			} else {
				fmt.Fprintf(&sb, "%s=%q ", c, vals[i])
			}
		}
		out = append(out, sb.String())
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// modelDigest returns a digest of every read-model table and of the read
// model's quarantine rows.
func modelDigest(tb testing.TB, db *sql.DB) map[string][]string {
	tb.Helper()
	out := map[string][]string{}
	for _, t := range readmodel.Tables() {
		out[t] = dumpTable(tb, db, t, "")
	}
	out[tQuarantine] = dumpTable(tb, db, tQuarantine, "WHERE projector = '"+ReadModelName+"'", "quarantined_at")
	return out
}

// sameModel fails tb unless the read models of a and b are identical,
// showing the first rows that differ.
func sameModel(tb testing.TB, a, b *sql.DB) {
	tb.Helper()
	da, db := modelDigest(tb, a), modelDigest(tb, b)
	for _, t := range append(readmodel.Tables(), tQuarantine) {
		x, y := da[t], db[t]
		if hash(x) == hash(y) {
			continue
		}
		tb.Errorf("table %s differs: %d rows vs %d rows", t, len(x), len(y))
		shown := 0
		for _, r := range x {
			if !slices.Contains(y, r) && shown < 5 {
				tb.Logf("  only in first:  %s", r)
				shown++
			}
		}
		shown = 0
		for _, r := range y {
			if !slices.Contains(x, r) && shown < 5 {
				tb.Logf("  only in second: %s", r)
				shown++
			}
		}
	}
}

func hash(rows []string) string {
	h := sha256.New()
	for _, r := range rows {
		h.Write([]byte(r))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// count returns SELECT COUNT(*) FROM table WHERE where.
func count(tb testing.TB, db *sql.DB, table, where string, args ...any) int {
	tb.Helper()
	var n int
	q := "SELECT COUNT(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func testReadModel(tb testing.TB, db *sql.DB, cfg Config) *ReadModel {
	tb.Helper()
	rm, err := NewReadModel(db, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rm.Close() })
	return rm
}

func testArchiver(tb testing.TB, db *sql.DB, cfg ArchiverConfig) *Archiver {
	tb.Helper()
	a, err := NewArchiver(db, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}
