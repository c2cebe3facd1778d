package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors/mysql"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("export", stderr)
	part := fs.String("partition", "all", "partition to export, or all")
	since := fs.String("since", "", "export events at or after this time (RFC 3339) or this long ago (e.g. 1h); empty: from the oldest")
	after := fs.String("after", "", "export events after this position (with --partition N)")
	limit := fs.Int("limit", 0, "stop after this many events (0: all)")
	batch := fs.Int("batch-size", 1000, "entries read at a time (1..100000)")
	secrets := fs.Bool("with-secrets", false, "export password hashes and push tokens instead of "+redacted)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must be 0 (all) or positive, got %d", *limit)
	}
	if *batch < 1 || *batch > 100_000 {
		return fmt.Errorf("--batch-size must be 1..100000, got %d", *batch)
	}
	start, err := exportStart(*since, *after, *part)
	if err != nil {
		return err
	}
	return c.withPartitions(ctx, *part, func(store *eventstore.Store, parts []int) error {
		var db *sql.DB
		if c.mysql != "" {
			if db, err = c.openMySQL(ctx); err != nil {
				return err
			}
			defer db.Close()
		}
		ex := &exporter{store: store, db: db, reader: mysql.NewLogReader(db, store), out: &printer{w: stdout, json: true, secrets: *secrets},
			stderr: stderr, limit: *limit, batch: *batch, lastReport: time.Now()}
		for _, p := range parts {
			err := ex.partition(ctx, p, start)
			var gap *mysql.GapError
			if errors.As(err, &gap) {
				hint := ""
				if db == nil {
					hint = "; export with --mysql (or MPIM_MYSQL) to read them from the event archive"
				}
				fmt.Fprintf(stderr, "export: %v%s\n", gap, hint)
				return fmt.Errorf("export incomplete: %d events written, then partition %d has a gap", ex.n, p)
			}
			if err != nil {
				return err
			}
			if ex.full() {
				break
			}
		}
		fmt.Fprintf(stderr, "export: %d events\n", ex.n)
		return nil
	})
}

// exporter writes partitions of the whole log, archive then stream, as
// JSON lines.
type exporter struct {
	store      *eventstore.Store
	db         *sql.DB // nil: the stream only
	reader     *mysql.LogReader
	out        *printer
	stderr     io.Writer
	limit      int // 0: all
	batch      int
	n          int // events written
	lastReport time.Time
}

func (ex *exporter) full() bool { return ex.limit > 0 && ex.n >= ex.limit }

// partition writes partition p's entries after start, up to the last entry
// the log held when it began. The reader returns only entries contiguous
// with what was written (or a *mysql.GapError), so reaching that last
// entry means nothing in between is missing.
func (ex *exporter) partition(ctx context.Context, p int, start eventstore.Position) error {
	end, err := ex.end(ctx, p)
	if err != nil {
		return err
	}
	pos := start
	for pos.Compare(end) < 0 && !ex.full() {
		n := ex.batch
		if ex.limit > 0 {
			n = min(n, ex.limit-ex.n)
		}
		recs, err := ex.reader.Read(ctx, p, pos, n)
		var de *eventstore.DecodeError
		if err != nil && !errors.As(err, &de) {
			return err
		}
		for _, r := range recs {
			if r.Position.After(end) {
				return nil
			}
			if err := ex.out.print(r); err != nil {
				return err
			}
			pos = r.Position
			ex.n++
		}
		if de != nil && !de.Position.After(end) {
			ex.out.printBad(de)
			pos = de.Position
		}
		if len(recs) == 0 && de == nil {
			return &mysql.GapError{Partition: p, After: pos, Next: end, Missing: -1, Proven: true,
				Reason: fmt.Sprintf("the log holds nothing after %s, though it held %s when the export of the partition began", pos, end)}
		}
		if time.Since(ex.lastReport) > 2*time.Second {
			fmt.Fprintf(ex.stderr, "export: %d events, partition %d at %s\n", ex.n, p, pos)
			ex.lastReport = time.Now()
		}
	}
	return nil
}

// end returns the last position of partition p in the log now: the
// stream's last entry, or the archive's head if that is later.
func (ex *exporter) end(ctx context.Context, p int) (eventstore.Position, error) {
	info, err := ex.store.Info(ctx, p)
	if err != nil || ex.db == nil {
		return info.Last, err
	}
	head, err := mysql.ArchiveHead(ctx, ex.db, p)
	if err != nil {
		return eventstore.Position{}, err
	}
	if head.After(info.Last) {
		return head, nil
	}
	return info.Last, nil
}

// exportStart turns --since / --after into the position reads start after.
func exportStart(since, after, part string) (eventstore.Position, error) {
	switch {
	case since != "" && after != "":
		return eventstore.Position{}, errors.New("give --since or --after, not both")
	case after != "":
		if part == "" || part == "all" {
			return eventstore.Position{}, errors.New("--after needs --partition N: positions of different partitions do not compare")
		}
		return eventstore.ParsePosition(after)
	case since == "":
		return eventstore.Position{}, nil
	}
	if d, err := time.ParseDuration(since); err == nil {
		return positionAt(time.Now().Add(-d)), nil
	}
	t, err := time.Parse(time.RFC3339, since)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("--since %q is neither a duration nor an RFC 3339 time", since)
	}
	return positionAt(t), nil
}

// positionAt is the position just before every entry appended at or after t
// (entry ids start with the Redis clock in milliseconds, in the stream and
// in the archive alike).
func positionAt(t time.Time) eventstore.Position {
	ms := t.UnixMilli()
	if ms <= 0 {
		return eventstore.Position{}
	}
	return eventstore.Position{Ms: uint64(ms) - 1, Seq: 1<<64 - 1}
}
