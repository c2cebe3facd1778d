package mysql

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// ErrMalformedSegment is wrapped by ReadArchive's error for an
// event_archive_segments row that does not decode: a checksum that does not
// match its body, an unknown format, a count, first or last entry id that
// disagrees with the entries, entries out of order, or a truncated body. The
// reader stops there; such a segment is never skipped silently.
var ErrMalformedSegment = errors.New("mysql: malformed archive segment")

// segmentFormat is the first byte of a segment body. A body is
//
//	format byte (1)
//	per entry: uvarint entry id ms, uvarint entry id seq, uvarint version,
//	           uvarint seq, uvarint length, the envelope bytes
//
// in log order; the envelope bytes are the stream's (without the version
// and seq the append script assigns, which are stored beside them).
const segmentFormat = 1

// Bounds of a segment, ArchiverConfig's SegmentEvents and SegmentBytes: a
// body stays well inside MEDIUMBLOB (16 MiB) and one multi-row insert's
// budget (maxStmtArgBytes).
const (
	defaultSegmentEvents = 1000
	maxSegmentEvents     = 100_000
	defaultSegmentBytes  = 1 << 20
	minSegmentBytes      = 1 << 10
	maxSegmentBytes      = maxStmtArgBytes
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segment is one event_archive_segments row.
type segment struct {
	first, last eventstore.Position
	events      int
	body        []byte
}

// segments cuts rows (in log order) into segments of at most maxEvents
// entries and, unless one entry alone is larger, maxBytes of body.
func segments(rows []archived, maxEvents, maxBytes int) []segment {
	var out []segment
	var cur *segment
	for i := range rows {
		r := &rows[i]
		size := 5*binary.MaxVarintLen64 + len(r.payload)
		if cur != nil && (cur.events >= maxEvents || len(cur.body)+size > maxBytes) {
			cur = nil
		}
		if cur == nil {
			out = append(out, segment{first: r.pos, body: []byte{segmentFormat}})
			cur = &out[len(out)-1]
		}
		cur.body = binary.AppendUvarint(cur.body, r.pos.Ms)
		cur.body = binary.AppendUvarint(cur.body, r.pos.Seq)
		cur.body = binary.AppendUvarint(cur.body, r.version)
		cur.body = binary.AppendUvarint(cur.body, r.seq)
		cur.body = binary.AppendUvarint(cur.body, uint64(len(r.payload)))
		cur.body = append(cur.body, r.payload...)
		cur.last = r.pos
		cur.events++
	}
	return out
}

// checksum is the stored checksum of a segment body.
func (s *segment) checksum() uint32 { return crc32.Checksum(s.body, castagnoli) }

// decode returns the segment's entries of partition p after position
// after, or an error wrapping ErrMalformedSegment.
func (s *segment) decode(p int, sum uint32, after eventstore.Position) ([]eventstore.Recorded, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: partition %d, entries %s..%s: %s", ErrMalformedSegment, p, s.first, s.last, fmt.Sprintf(format, args...))
	}
	if got := s.checksum(); got != sum {
		return nil, bad("checksum %08x, stored %08x", got, sum)
	}
	if len(s.body) == 0 || s.body[0] != segmentFormat {
		return nil, bad("unknown format")
	}
	var out []eventstore.Recorded
	b := s.body[1:]
	var prev eventstore.Position
	n := 0
	for ; len(b) > 0; n++ {
		var f [5]uint64
		for i := range f {
			v, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, bad("entry %d is truncated", n)
			}
			f[i], b = v, b[k:]
		}
		if f[4] > uint64(len(b)) {
			return nil, bad("entry %d is truncated", n)
		}
		pos := eventstore.Position{Ms: f[0], Seq: f[1]}
		raw := b[:f[4]:f[4]]
		b = b[f[4]:]
		switch {
		case n == 0 && pos != s.first:
			return nil, bad("first entry is %s", pos)
		case n > 0 && pos.Compare(prev) <= 0:
			return nil, bad("entry %d at %s follows %s", n, pos, prev)
		case n+1 > s.events:
			return nil, bad("more than %d entries", s.events)
		}
		prev = pos
		if pos.Compare(after) <= 0 {
			continue
		}
		ev := new(mpimv1.Event)
		if err := proto.Unmarshal(raw, ev); err != nil {
			return nil, bad("entry %s: %v", pos, err)
		}
		ev.Version, ev.Seq = f[2], f[3]
		out = append(out, eventstore.Recorded{Partition: p, Position: pos, Event: ev, Raw: raw})
	}
	if n != s.events {
		return nil, bad("%d entries", n)
	}
	if prev != s.last {
		return nil, bad("last entry is %s", prev)
	}
	return out, nil
}

// segmentPage is how many segments one query of readSegments fetches.
const segmentPage = 8

// readSegments returns partition p's entries after position after from
// event_archive_segments, in log order: at least limit of them unless the
// segments hold fewer (whole segments are decoded, so it may return more).
func readSegments(ctx context.Context, db *sql.DB, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
	var out []eventstore.Recorded
	from := after
	for len(out) < limit {
		n := 0
		err := func() error {
			rows, err := db.QueryContext(ctx, "SELECT first_ms, first_seq, last_ms, last_seq, events, checksum, body FROM event_archive_segments"+
				" WHERE partition_no = ? AND (last_ms > ? OR (last_ms = ? AND last_seq > ?)) ORDER BY last_ms, last_seq LIMIT ?",
				p, from.Ms, from.Ms, from.Seq, segmentPage)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var s segment
				var sum uint32
				if err := rows.Scan(&s.first.Ms, &s.first.Seq, &s.last.Ms, &s.last.Seq, &s.events, &sum, &s.body); err != nil {
					return err
				}
				recs, err := s.decode(p, sum, after)
				if err != nil {
					return err
				}
				out = append(out, recs...)
				from = s.last
				n++
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("mysql: reading archive segments of partition %d: %w", p, err)
		}
		if n < segmentPage {
			break
		}
	}
	return out, nil
}
