package mysql

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// entry is one log entry as a reader sees it: an event or an undecodable
// entry.
type entry struct {
	pos eventstore.Position
	rec *eventstore.Recorded
	bad string
}

func (e entry) String() string {
	if e.rec == nil {
		return fmt.Sprintf("%s bad(%s)", e.pos, e.bad)
	}
	return fmt.Sprintf("%s %s v%d s%d %x", e.pos, e.rec.Event.GetAggregate(), e.rec.Event.GetVersion(), e.rec.Event.GetSeq(), e.rec.Raw)
}

// readAll reads a partition from zero to its end with read, stepping over
// undecodable entries.
func readAll(t *testing.T, p int, read func(after eventstore.Position, limit int) ([]eventstore.Recorded, error)) []entry {
	t.Helper()
	var out []entry
	var pos eventstore.Position
	for {
		recs, err := read(pos, 37)
		var de *eventstore.DecodeError
		if err != nil && !errors.As(err, &de) {
			t.Fatal(err)
		}
		for i := range recs {
			out = append(out, entry{pos: recs[i].Position, rec: &recs[i]})
			pos = recs[i].Position
		}
		if de != nil {
			out = append(out, entry{pos: de.Position, bad: string(de.Raw)})
			pos = de.Position
			continue
		}
		if len(recs) == 0 {
			return out
		}
	}
}

func sameEntries(t *testing.T, what string, got, want []entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		same := g.pos == w.pos && (g.rec == nil) == (w.rec == nil) && g.bad == w.bad
		if same && g.rec != nil {
			same = string(g.rec.Raw) == string(w.rec.Raw) && proto.Equal(g.rec.Event, w.rec.Event) && g.rec.Partition == w.rec.Partition
		}
		if !same {
			t.Fatalf("%s: entry %d is\n%v\nwant\n%v", what, i, g, w)
		}
	}
}

// TestArchiveThenTailEqualsTheLog archives part of a log (with an
// undecodable entry), trims the streams below the archive's head, writes
// more, and reads every partition back through the archive and the stream:
// the result is the log as the store gave it before the trim.
func TestArchiveThenTailEqualsTheLog(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 4)
	sc := newScenario(ctx, t, env.svc, 10, 2)
	sc.run(ctx, t, 2, 100, 5)
	if err := env.rdb.XAdd(ctx, &redis.XAddArgs{Stream: env.streamKey(1), Values: []string{"v", "1", "s", "0", "d", "junk"}}).Err(); err != nil {
		t.Fatal(err)
	}
	sc.run(ctx, t, 2, 50, 6)

	db := openTestDB(t)
	arch := testArchiver(t, db, ArchiverConfig{MaxRowsPerStatement: 7, SegmentEvents: 5, SegmentBytes: 2048})
	project(t, env.store, arch, archiveCheckpoints(db, 4))
	sc.run(ctx, t, 2, 60, 8) // not archived
	const P = 4
	var full [P][]entry
	for p := range P {
		full[p] = readAll(t, p, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return env.store.ReadPartition(ctx, p, after, limit)
		})
	}
	archived := 0
	for p := range P {
		head, err := ArchiveHead(ctx, db, p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := env.rdb.XTrimMinID(ctx, env.streamKey(p), head.String()).Result()
		if err != nil {
			t.Fatal(err)
		}
		archived += int(n)
		arch := readAll(t, p, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return ReadArchive(ctx, db, p, after, limit)
		})
		k := 0
		for k < len(full[p]) && full[p][k].pos.Compare(head) <= 0 {
			k++
		}
		sameEntries(t, fmt.Sprintf("archive of partition %d", p), arch, full[p][:k])
	}
	if archived == 0 {
		t.Fatal("nothing was trimmed")
	}
	reader := NewLogReader(db, env.store)
	for p := range P {
		got := readAll(t, p, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
			return reader.Read(ctx, p, after, limit)
		})
		sameEntries(t, fmt.Sprintf("archive + stream of partition %d", p), got, full[p])
	}
	if n := count(t, db, tQuarantine, "projector = 'archive'"); n != 1 {
		t.Errorf("archive quarantined %d entries, want 1", n)
	}
	if n := count(t, db, "event_archive", ""); n != 0 {
		t.Errorf("%d entries archived one per row, want every one in segments", n)
	}
	if n := count(t, db, "event_archive_segments", "events > 5 OR (LENGTH(body) > 2048 AND events > 1)"); n != 0 {
		t.Errorf("%d segments over 5 entries or 2048 bytes", n)
	}

	t.Run("an event the log holds twice is archived twice, as the stream holds it", func(t *testing.T) {
		p := 0
		head, err := ArchiveHead(ctx, db, p)
		if err != nil {
			t.Fatal(err)
		}
		token := uint64(1) << 40
		if _, err := arch.Claim(ctx, p, token); err != nil {
			t.Fatal(err)
		}
		dup := *full[p][0].rec
		dup.Position = eventstore.Position{Ms: head.Ms, Seq: head.Seq + 1}
		fresh := *full[p][len(full[p])-1].rec
		fresh.Position = eventstore.Position{Ms: head.Ms, Seq: head.Seq + 2}
		b := &projectors.Batch{Partition: p, Token: token, After: head, To: fresh.Position, Events: []eventstore.Recorded{dup, fresh}}
		if err := arch.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadArchive(ctx, db, p, head, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []entry
		for i := range recs {
			got = append(got, entry{pos: recs[i].Position, rec: &recs[i]})
		}
		sameEntries(t, "entries after the head", got, []entry{{pos: dup.Position, rec: &dup}, {pos: fresh.Position, rec: &fresh}})
	})
}
