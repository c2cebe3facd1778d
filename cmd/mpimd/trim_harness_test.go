package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/redis/go-redis/v9"
)

// Trimming in the process-level tests. Production trims the log every
// minute; the fault and end-to-end deployments trim every second, so the
// log is trimmed while traffic runs and while a projector lags, and the
// audits read "the log" as a replay does: the archive (MySQL event_archive),
// then what is left of the Redis stream. Each deployment also checks that
// entries were trimmed at all, or a test could pass with trimming off.

// testTrimInterval is the --trim-interval of the fault and end-to-end
// deployments.
const testTrimInterval = "1s"

// readTrimmedPartition returns partition p as Redis had it: the archived
// entries below the stream's first entry (what the trim removed), then the
// stream. Archived entries at or after the stream's first entry are left
// out: after a Redis data loss (a power loss with appendfsync everysec) the
// archive may hold entries the stream lost, and the audit checks the log
// Redis kept. It reads again if the stream was trimmed meanwhile (before
// or while the stream is read).
func readTrimmedPartition(ctx context.Context, db *sql.DB, store *eventstore.Store, p int) ([]eventstore.Recorded, error) {
	for {
		info, err := store.Info(ctx, p)
		if err != nil {
			return nil, err
		}
		var out []eventstore.Recorded
		var after eventstore.Position
		for !info.First.IsZero() {
			recs, err := mysql.ReadArchive(ctx, db, p, after, 1000)
			// An entry the archiver quarantined at or after the stream's
			// first entry is not part of the trimmed part: after a Redis
			// data loss (the power-loss tests) the archive quarantines a
			// new event that reuses a lost one's version.
			var de *eventstore.DecodeError
			beyond := errors.As(err, &de) && de.Position.Compare(info.First) >= 0
			if err != nil && !beyond {
				return nil, err
			}
			n := 0
			for n < len(recs) && recs[n].Position.Compare(info.First) < 0 {
				n++
			}
			out = append(out, recs[:n]...)
			if beyond || n < len(recs) || len(recs) == 0 {
				break
			}
			after = recs[n-1].Position
		}
		stream, err := readAll(ctx, store, p)
		if err != nil {
			return nil, err
		}
		// readAll pages through the stream: a trim between two pages
		// removes entries after the page read last, which the next page
		// then skips. The read holds only if no trim moved the stream's
		// first entry from the archive read to the end of the stream read.
		now, err := store.Info(ctx, p)
		if err != nil {
			return nil, err
		}
		if len(stream) == 0 || (stream[0].Position == info.First && now.First == info.First) {
			return append(out, stream...), nil
		}
	}
}

// readAll returns every entry of partition p's stream.
func readAll(ctx context.Context, store *eventstore.Store, p int) ([]eventstore.Recorded, error) {
	var out []eventstore.Recorded
	var after eventstore.Position
	for {
		recs, err := store.ReadPartition(ctx, p, after, 1000)
		if err != nil || len(recs) == 0 {
			return out, err
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Position
	}
}

// logKey is the Redis key of partition p's stream (eventstore's key
// layout: "<prefix>{p<n>}:log").
func logKey(prefix string, p int) string { return prefix + "{p" + strconv.Itoa(p) + "}:log" }

// streamTrim says how far the partition streams of a deployment were
// trimmed: entries ever added (XINFO STREAM entries-added) and entries
// still there (length), summed over the partitions.
type streamTrim struct {
	added, length int64
}

func (s streamTrim) trimmed() int64 { return s.added - s.length }

func (s streamTrim) String() string {
	return fmt.Sprintf("%d of %d log entries trimmed from the streams (%d left)", s.trimmed(), s.added, s.length)
}

// readStreamTrim reads XINFO STREAM of every partition.
func readStreamTrim(ctx context.Context, rdb redis.UniversalClient, prefix string, partitions int) (streamTrim, error) {
	var st streamTrim
	for p := range partitions {
		info, err := rdb.XInfoStream(ctx, logKey(prefix, p)).Result()
		if errors.Is(err, redis.Nil) || (err != nil && err.Error() == "ERR no such key") {
			continue // nothing appended to this partition yet
		}
		if err != nil {
			return st, fmt.Errorf("XINFO STREAM of partition %d: %w", p, err)
		}
		st.added += info.EntriesAdded
		st.length += info.Length
	}
	return st, nil
}

// streamTrimNow reads how far the streams of the deployment at
// redisAddr/prefix are trimmed.
func streamTrimNow(t *testing.T, redisAddr, prefix string, partitions int) streamTrim {
	t.Helper()
	rdb := auditRedis(t, redisAddr)
	st, err := readStreamTrim(context.Background(), rdb, prefix, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitTrimmedThrough waits until the streams are trimmed through what they
// held at before: every entry appended by then is gone but at most one per
// partition (the trim keeps the entry at the lowest checkpoint). Called
// while traffic runs, it shows the trim keeps up once the projectors have
// processed those entries.
func waitTrimmedThrough(t *testing.T, redisAddr, prefix string, partitions int, before streamTrim) streamTrim {
	t.Helper()
	rdb := auditRedis(t, redisAddr)
	var st streamTrim
	waitUntil(t, fmt.Sprintf("the trim loop to trim the %d entries appended so far (but one per partition)", before.added), func() bool {
		var err error
		st, err = readStreamTrim(context.Background(), rdb, prefix, partitions)
		return err == nil && st.trimmed() >= before.added-int64(partitions)
	})
	return st
}

// waitTrimmed waits until the trim loop removed entries from the streams of
// the deployment at redisAddr/prefix and returns how far they are trimmed.
// Once the projectors have caught up every stream is trimmed down to its
// last entry, so with trimming on this happens; with it off it never does.
func waitTrimmed(t *testing.T, redisAddr, prefix string, partitions int) streamTrim {
	t.Helper()
	rdb := auditRedis(t, redisAddr)
	var st streamTrim
	var lastErr error
	waitUntil(t, "the trim loop to trim the log (with --trim-interval "+testTrimInterval+")", func() bool {
		st, lastErr = readStreamTrim(context.Background(), rdb, prefix, partitions)
		return lastErr == nil && st.trimmed() > 0
	})
	return st
}

// seenWithin reports whether cond became true within limit (a hang
// detector, like waitUntil's, that lets the test go on to its audits).
func seenWithin(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
