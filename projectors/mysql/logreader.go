package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/mpim/mpim/eventstore"
)

// LogReader reads a partition of the whole log: the archive, then the
// stream, as one sequence with nothing left out. Replays and exports use
// it. It is safe for concurrent use (one goroutine per partition).
//
// What it returns after a position is contiguous with it: every entry of
// the partition after the position, up to the last one returned, in order.
// The archive is contiguous by construction (the archiver archives each
// partition in log order and moves its checkpoint, ArchiveHead, in the same
// transaction), so what it holds after a position is what the log held. The
// stream is read only when the archive has nothing after the position, and
// together with its state (eventstore.StreamState): the entries are used
// only if the stream still held every entry after the position. If it did
// not (the log is trimmed below the archive's head, so the archiver has got
// further meanwhile), the archive is read again once; if it still has
// nothing after the position, the entries in between are lost and Read
// returns a *GapError.
//
// The reader counts the entries it returned per partition (from the zero
// position, or from where the stream's state tells the count), so a stream
// trimmed exactly up to the next entry is told apart from one that lost
// entries, and a GapError says how many are missing.
type LogReader struct {
	db  *sql.DB // nil: the stream only
	src Log

	mu   sync.Mutex
	last map[int]counted // per partition: where the last Read ended
}

// counted is a position and the number of entries up to and including it
// (-1: unknown).
type counted struct {
	pos eventstore.Position
	ord int64
}

// NewLogReader returns a reader of the archive in db, then the stream of
// src. With a nil db it reads the stream only, and a stream trimmed past
// the position is a GapError.
func NewLogReader(db *sql.DB, src Log) *LogReader {
	return &LogReader{db: db, src: src, last: map[int]counted{}}
}

// GapError reports entries of a partition that are in neither the archive
// nor the stream: those after After, before Next.
type GapError struct {
	Partition   int
	After, Next eventstore.Position
	// Missing is how many entries are missing, -1 if not known.
	Missing int64
	// Proven: some entry is known to be missing. If not, entries were
	// trimmed after After and none of them can be shown to have been
	// before it.
	Proven bool
	// Reason says where the entries went.
	Reason string
}

func (e *GapError) Error() string {
	n := ""
	if e.Missing > 0 {
		n = fmt.Sprintf(" (%d entries)", e.Missing)
	}
	are := "are"
	if !e.Proven {
		are = "may be"
	}
	return fmt.Sprintf("partition %d: entries between %s and %s %s missing%s: %s", e.Partition, e.After, e.Next, are, n, e.Reason)
}

// Read returns up to limit entries of partition p after position after, as
// eventstore's ReadPartition does (a *eventstore.DecodeError ends the
// result at an undecodable entry, which counts as read: read on after its
// position). An empty result means the log holds nothing after the
// position. Entries the log lost after the position are a *GapError.
func (r *LogReader) Read(ctx context.Context, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
	ord := r.ordAt(p, after)
	for again := r.db != nil; ; again = false {
		if r.db != nil {
			recs, err := ReadArchive(ctx, r.db, p, after, limit)
			if len(recs) > 0 || err != nil {
				r.advance(p, after, ord, recs, err)
				return recs, err
			}
		}
		recs, st, err := r.src.ReadPartitionState(ctx, p, after, limit)
		var de *eventstore.DecodeError
		if err != nil && !errors.As(err, &de) {
			return nil, err
		}
		if st.Holds(after, ord) {
			r.advance(p, after, streamOrd(st, after, ord, recs, err), recs, err)
			return recs, err
		}
		if !again {
			return nil, r.gap(ctx, p, after, ord, st)
		}
	}
}

// gap describes what the stream lost after pos.
func (r *LogReader) gap(ctx context.Context, p int, pos eventstore.Position, ord int64, st eventstore.StreamState) error {
	g := &GapError{Partition: p, After: pos, Next: st.First, Missing: st.MissingAfter(pos, ord)}
	g.Proven = g.Missing > 0
	if st.Length == 0 {
		g.Next = st.LastGenerated
	}
	switch {
	case st.MaxDeleted.After(pos):
		g.Next, g.Proven = st.MaxDeleted, true
		g.Reason = fmt.Sprintf("the stream's entry %s was deleted (XDEL)", st.MaxDeleted)
	case st.Length == 0:
		g.Reason = fmt.Sprintf("the stream was trimmed empty (its last entry was %s)", st.LastGenerated)
	default:
		g.Reason = fmt.Sprintf("the stream was trimmed past %s (its first entry is %s)", pos, st.First)
	}
	if r.db == nil {
		g.Reason += " and the archive was not read"
		return g
	}
	head, err := ArchiveHead(ctx, r.db, p)
	if err != nil {
		return errors.Join(g, err)
	}
	g.Reason += fmt.Sprintf(" and the archive holds nothing after %s (its head is %s)", pos, head)
	return g
}

// ordAt returns the number of entries of p up to and including pos, if
// known (-1 if not).
func (r *LogReader) ordAt(p int, pos eventstore.Position) int64 {
	if pos.IsZero() {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.last[p]; ok && c.pos == pos {
		return c.ord
	}
	return -1
}

// advance records where a read of p after pos, which had ord entries up to
// it (-1: unknown), ended.
func (r *LogReader) advance(p int, pos eventstore.Position, ord int64, recs []eventstore.Recorded, err error) {
	end, n := readEnd(pos, recs, err)
	if ord >= 0 {
		ord += n
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[p] = counted{pos: end, ord: ord}
}

// readEnd returns where a read after pos ended and how many entries it
// covered (an undecodable entry ending it included).
func readEnd(pos eventstore.Position, recs []eventstore.Recorded, err error) (eventstore.Position, int64) {
	n := int64(len(recs))
	if n > 0 {
		pos = recs[n-1].Position
	}
	var de *eventstore.DecodeError
	if errors.As(err, &de) {
		pos, n = de.Position, n+1
	}
	return pos, n
}

// streamOrd returns ord, the count of entries up to pos, or when that is
// unknown and a read after pos that held ended at the last entry ever
// appended, the count the stream's state tells: every entry after pos was
// read, so entries-added less those.
func streamOrd(st eventstore.StreamState, pos eventstore.Position, ord int64, recs []eventstore.Recorded, err error) int64 {
	if end, n := readEnd(pos, recs, err); ord < 0 && n > 0 && end == st.LastGenerated {
		return st.EntriesAdded - n
	}
	return ord
}
