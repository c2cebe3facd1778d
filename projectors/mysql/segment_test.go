package mysql

import (
	"context"
	"database/sql"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

func TestArchiverConfigRejectsBadSegmentBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ArchiverConfig
		want string
	}{
		{"negative events", ArchiverConfig{SegmentEvents: -1}, "segment events must be 1..100000, got -1"},
		{"too many events", ArchiverConfig{SegmentEvents: 100_001}, "segment events must be 1..100000, got 100001"},
		{"too few bytes", ArchiverConfig{SegmentBytes: 1023}, "segment bytes must be 1024..4194304, got 1023"},
		{"too many bytes", ArchiverConfig{SegmentBytes: 4<<20 + 1}, "segment bytes must be 1024..4194304, got 4194305"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewArchiver(nil, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewArchiver(%+v) = %v, want %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestSegmentsKeepTheirBounds(t *testing.T) {
	var rows []archived
	for i, size := range []int{10, 500, 300, 3000, 1, 1, 1, 1, 700, 700} {
		rows = append(rows, archived{pos: eventstore.Position{Ms: 5, Seq: uint64(i)}, version: uint64(i + 1), seq: uint64(i), payload: make([]byte, size)})
	}
	segs := segments(rows, 3, 1024)
	var got []eventstore.Position
	for _, s := range segs {
		if s.events > 3 || (len(s.body) > 1024 && s.events > 1) {
			t.Errorf("segment %s..%s: %d entries, %d bytes", s.first, s.last, s.events, len(s.body))
		}
		// decode needs envelopes; check the framing by hand.
		if _, err := s.decode(0, s.checksum(), s.last); err != nil {
			t.Fatal(err)
		}
		got = append(got, s.first)
	}
	want := []eventstore.Position{{Ms: 5, Seq: 0}, {Ms: 5, Seq: 3}, {Ms: 5, Seq: 4}, {Ms: 5, Seq: 7}, {Ms: 5, Seq: 9}}
	if len(got) != len(want) {
		t.Fatalf("segments start at %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("segments start at %v, want %v", got, want)
		}
	}
}

// archiveAsRows archives up to n entries of partition p after the archive's
// head one per event_archive row, as the archiver did before segments, and
// returns the new head.
func archiveAsRows(t *testing.T, store *eventstore.Store, arch *Archiver, p, n int) eventstore.Position {
	t.Helper()
	ctx := context.Background()
	token := uint64(time.Now().UnixNano())
	head, err := arch.Claim(ctx, p, token)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.ReadPartition(ctx, p, head, n)
	if err != nil || len(recs) == 0 {
		t.Fatalf("read %d entries: %v", len(recs), err)
	}
	b := &projectors.Batch{Partition: p, Token: token, After: head, To: recs[len(recs)-1].Position, Events: recs}
	rows, bad := archiveRows(b)
	if len(bad) > 0 {
		t.Fatalf("%d entries cannot be archived", len(bad))
	}
	err = inTx(ctx, arch.db, func(tx *sql.Tx) error {
		if err := begin(ctx, tx, arch.ckpt, b); err != nil {
			return err
		}
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, "INSERT INTO event_archive (partition_no, pos_ms, pos_seq, event_id, aggregate, version, seq, event_type, occurred_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
				p, r.pos.Ms, r.pos.Seq, r.id, r.aggregate, r.version, r.seq, r.eventType, r.occurredAt, r.payload); err != nil {
				return err
			}
		}
		return arch.ckpt.advance(ctx, tx, p, b.To)
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.To
}

// TestArchiveReadsRowsAndSegments archives a partition's first entries one
// per row (an archive from before segments), most of the rest in segments
// and the last ones in rows again (as re-applied entries are), and reads it
// back in pages of several sizes: the log as the stream gives it.
func TestArchiveReadsRowsAndSegments(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	newScenario(ctx, t, env.svc, 4, 1).run(ctx, t, 1, 80, 9)
	full := readAll(t, 0, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
		return env.store.ReadPartition(ctx, 0, after, limit)
	})
	db := openTestDB(t)
	arch := testArchiver(t, db, ArchiverConfig{SegmentEvents: 2})
	archiveAsRows(t, env.store, arch, 0, 17)
	archiveUpTo(t, env.store, arch, 0, len(full)-17-5)
	archiveAsRows(t, env.store, arch, 0, 5) // rows after segments, as re-applied entries can be
	if rows, segs := count(t, db, "event_archive", ""), count(t, db, "event_archive_segments", ""); rows != 22 || segs <= 2*segmentPage {
		t.Fatalf("%d rows and %d segments, want 22 rows and more than two pages of segments between them", rows, segs)
	}
	for _, limit := range []int{1, 3, 16, 1000} {
		var got []entry
		var pos eventstore.Position
		for range 10_000 {
			recs, err := ReadArchive(ctx, db, 0, pos, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			if len(recs) > limit {
				t.Fatalf("read %d entries with limit %d", len(recs), limit)
			}
			for i := range recs {
				got = append(got, entry{pos: recs[i].Position, rec: &recs[i]})
			}
			pos = recs[len(recs)-1].Position
		}
		sameEntries(t, "archive read in pages", got, full)
	}
}

// TestMalformedSegmentIsReported damages a segment in the ways a torn or
// tampered row could be: each read of the archive, and of the log through
// the archive, fails naming the segment instead of skipping it.
func TestMalformedSegmentIsReported(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	newScenario(ctx, t, env.svc, 4, 1).run(ctx, t, 1, 30, 7)
	db := openTestDB(t)
	arch := testArchiver(t, db, ArchiverConfig{SegmentEvents: 10})
	archiveUpTo(t, env.store, arch, 0, -1)
	var first, last eventstore.Position
	var events int
	var sum uint32
	var body []byte
	if err := db.QueryRow("SELECT first_ms, first_seq, last_ms, last_seq, events, checksum, body FROM event_archive_segments ORDER BY last_ms DESC, last_seq DESC LIMIT 1").
		Scan(&first.Ms, &first.Seq, &last.Ms, &last.Seq, &events, &sum, &body); err != nil {
		t.Fatal(err)
	}
	if _, err := readAllErr(NewLogReader(db, env.store), 0); err != nil {
		t.Fatal(err)
	}
	torn := body[:len(body)-3]
	for _, tc := range []struct{ name, update string }{
		{"a flipped byte", "UPDATE event_archive_segments SET body = CONCAT(LEFT(body, 20), CHAR(ASCII(SUBSTRING(body, 21, 1)) ^ 1), SUBSTRING(body, 22))"},
		{"a torn body with its checksum", "UPDATE event_archive_segments SET body = ?, checksum = ?"},
		{"a count that disagrees", "UPDATE event_archive_segments SET events = events - 1"},
		{"a first entry that disagrees", "UPDATE event_archive_segments SET first_seq = first_seq + 1"},
		{"an unknown format", "UPDATE event_archive_segments SET body = CONCAT(CHAR(2), SUBSTRING(body, 2)), checksum = ?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			args := []any{}
			switch strings.Count(tc.update, "?") {
			case 2:
				args = append(args, torn, crc32.Checksum(torn, castagnoli))
			case 1:
				b := append([]byte{2}, body[1:]...)
				args = append(args, crc32.Checksum(b, castagnoli))
			}
			if _, err := tx.Exec(tc.update+" WHERE partition_no = 0 AND last_ms = ? AND last_seq = ?", append(args, last.Ms, last.Seq)...); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if _, err := db.Exec("UPDATE event_archive_segments SET first_ms = ?, first_seq = ?, events = ?, checksum = ?, body = ? WHERE partition_no = 0 AND last_ms = ? AND last_seq = ?",
					first.Ms, first.Seq, events, sum, body, last.Ms, last.Seq); err != nil {
					t.Fatal(err)
				}
			}()
			_, err = readAllErr(NewLogReader(db, env.store), 0)
			if !errors.Is(err, ErrMalformedSegment) || !strings.Contains(err.Error(), last.String()) {
				t.Fatalf("reading the damaged archive: %v, want ErrMalformedSegment naming the segment ending at %s", err, last)
			}
		})
	}
}
