package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// archiveUpTo archives partition p's entries after the archive's head,
// at most n of them (n < 0: all), and returns the new head.
func archiveUpTo(t *testing.T, store *eventstore.Store, arch *Archiver, p, n int) eventstore.Position {
	t.Helper()
	ctx := context.Background()
	token := uint64(time.Now().UnixNano()) // grows with every claim
	head, err := arch.Claim(ctx, p, token)
	if err != nil {
		t.Fatal(err)
	}
	for n != 0 {
		recs, err := store.ReadPartition(ctx, p, head, 100)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			recs = recs[:min(n, len(recs))]
			n -= len(recs)
		}
		if len(recs) == 0 {
			break
		}
		b := &projectors.Batch{Partition: p, Token: token, After: head, To: recs[len(recs)-1].Position, Events: recs}
		if err := arch.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		head = b.To
	}
	return head
}

// trimmingLog is the store with an archiver that runs and a trim that
// cuts the stream at the archive's head right before every stream read:
// the archive gets further and the stream loses the entries after the
// reader's position between its archive read and its stream read.
type trimmingLog struct {
	t     *testing.T
	env   *logEnv
	arch  *Archiver
	step  int
	trims int
}

func (l *trimmingLog) Partitions() int { return l.env.store.Partitions() }

func (l *trimmingLog) ReadPartitionState(ctx context.Context, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, eventstore.StreamState, error) {
	head := archiveUpTo(l.t, l.env.store, l.arch, p, l.step)
	n, err := l.env.rdb.XTrimMinID(ctx, l.env.streamKey(p), head.String()).Result()
	if err != nil {
		l.t.Fatal(err)
	}
	if n > 0 && head.After(after) {
		l.trims++
	}
	return l.env.store.ReadPartitionState(ctx, p, after, limit)
}

// TestLogReaderUnderTrims reads every partition through a LogReader whose
// stream is trimmed past the reader's position before each stream read:
// the result is the log as it was before any trim, entry by entry.
func TestLogReaderUnderTrims(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 2)
	newScenario(ctx, t, env.svc, 6, 2).run(ctx, t, 2, 60, 11)
	var full [2][]entry
	for p := range 2 {
		full[p] = readAll(t, p, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return env.store.ReadPartition(ctx, p, after, limit)
		})
	}
	db := openTestDB(t)
	log := &trimmingLog{t: t, env: env, arch: testArchiver(t, db, ArchiverConfig{}), step: 45}
	reader := NewLogReader(db, log)
	for p := range 2 {
		got := readAll(t, p, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return reader.Read(ctx, p, after, limit)
		})
		sameEntries(t, "archive + trimmed stream", got, full[p])
	}
	if log.trims == 0 {
		t.Fatal("no trim passed the reader's position: the test did not test")
	}
}

// TestLogReaderReportsGaps removes entries the archive does not hold and
// expects a GapError naming them, from the archive and stream reader and
// from the stream-only one.
func TestLogReaderReportsGaps(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// breakLog removes entries of partition 0 whose archive head is head
		// (its ord-th entry) from full, and returns the GapError expected.
		breakLog func(t *testing.T, env *logEnv, db *sql.DB, full []entry, ord int) GapError
	}{
		{"trimmed past the archive head", func(t *testing.T, env *logEnv, _ *sql.DB, full []entry, ord int) GapError {
			trimTo(t, env, full[ord+4].pos)
			return GapError{After: full[ord-1].pos, Next: full[ord+4].pos, Missing: 4, Proven: true}
		}},
		{"deleted past the archive head", func(t *testing.T, env *logEnv, _ *sql.DB, full []entry, ord int) GapError {
			if err := env.rdb.XDel(ctx, env.streamKey(0), full[ord+2].pos.String()).Err(); err != nil {
				t.Fatal(err)
			}
			return GapError{After: full[ord-1].pos, Next: full[ord+2].pos, Missing: -1, Proven: true}
		}},
		{"archive segment deleted after the stream was trimmed", func(t *testing.T, env *logEnv, db *sql.DB, full []entry, ord int) GapError {
			trimTo(t, env, full[ord-1].pos)
			cut := full[ord-6].pos // the end of the first segment
			if _, err := db.Exec("DELETE FROM event_archive_segments WHERE partition_no = 0 AND (last_ms > ? OR last_ms = ? AND last_seq > ?)", cut.Ms, cut.Ms, cut.Seq); err != nil {
				t.Fatal(err)
			}
			return GapError{After: cut, Next: full[ord-1].pos, Missing: 4, Proven: true}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newLogEnv(t, 1)
			newScenario(ctx, t, env.svc, 4, 1).run(ctx, t, 1, 30, 5)
			full := readAll(t, 0, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
				return env.store.ReadPartition(ctx, 0, after, limit)
			})
			db := openTestDB(t)
			const ord = 20
			arch := testArchiver(t, db, ArchiverConfig{})
			archiveUpTo(t, env.store, arch, 0, ord-5) // two segments
			if head := archiveUpTo(t, env.store, arch, 0, 5); head != full[ord-1].pos {
				t.Fatalf("archive head %s, want %s", head, full[ord-1].pos)
			}
			want := tc.breakLog(t, env, db, full, ord)
			_, err := readAllErr(NewLogReader(db, env.store), 0)
			var gap *GapError
			if !errors.As(err, &gap) || gap.After != want.After || gap.Next != want.Next || gap.Missing != want.Missing || gap.Proven != want.Proven {
				t.Fatalf("read = %v, want a gap between %s and %s, %d missing, proven %v", err, want.After, want.Next, want.Missing, want.Proven)
			}
			if !strings.Contains(err.Error(), "entries between "+want.After.String()+" and "+want.Next.String()+" are missing") {
				t.Errorf("gap message %q", err)
			}
		})
	}
	t.Run("stream only, trimmed", func(t *testing.T) {
		env := newLogEnv(t, 1)
		newScenario(ctx, t, env.svc, 4, 1).run(ctx, t, 1, 10, 6)
		full := readAll(t, 0, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return env.store.ReadPartition(ctx, 0, after, limit)
		})
		trimTo(t, env, full[3].pos)
		_, err := readAllErr(NewLogReader(nil, env.store), 0)
		var gap *GapError
		if !errors.As(err, &gap) || !gap.After.IsZero() || gap.Next != full[3].pos || gap.Missing != 3 || !strings.Contains(err.Error(), "the archive was not read") {
			t.Fatalf("stream-only read of a trimmed stream = %v, want 3 entries missing before %s", err, full[3].pos)
		}
	})
}

func trimTo(t *testing.T, env *logEnv, min eventstore.Position) {
	t.Helper()
	if err := env.rdb.XTrimMinID(context.Background(), env.streamKey(0), min.String()).Err(); err != nil {
		t.Fatal(err)
	}
}

// readAllErr reads partition p from zero to its end and returns the count
// read, or the first error (a DecodeError is stepped over).
func readAllErr(r *LogReader, p int) (int, error) {
	var pos eventstore.Position
	n := 0
	for range 100_000 {
		recs, err := r.Read(context.Background(), p, pos, 7)
		var de *eventstore.DecodeError
		if err != nil && !errors.As(err, &de) {
			return n, err
		}
		pos, _ = readEnd(pos, recs, err)
		n += len(recs)
		if len(recs) == 0 && de == nil {
			return n, nil
		}
	}
	return n, errors.New("read did not end")
}
