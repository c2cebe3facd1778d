package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/mpim/mpim/domain"
	"github.com/redis/go-redis/v9"
)

// StreamState is what XINFO STREAM says about a partition stream's
// removals at one moment. Redis 7.0 keeps, besides the entries left:
// entries-added (every entry ever appended), max-deleted-entry-id (the
// largest id XDEL removed; trimming leaves it alone) and the first entry
// left. Removals only ever grow, so a state read after some entries proves
// what it proves for them too.
type StreamState struct {
	Length, EntriesAdded int64
	// First is the first entry left (zero if none); LastGenerated the id of
	// the last entry ever appended; MaxDeleted the largest id XDEL removed.
	First, LastGenerated, MaxDeleted Position
}

// Removed returns how many entries left the stream (trimmed or deleted).
func (st StreamState) Removed() int64 { return st.EntriesAdded - st.Length }

// Holds reports whether the stream still held every entry ever appended
// after pos when the state was read. ord is the number of entries appended
// up to and including pos if the caller knows it, else negative (the zero
// position has ord 0). It holds when no entry after pos was deleted (XDEL)
// and either nothing was ever removed, or the first entry left is at or before pos (a trim removes the
// oldest entries only, so none after pos was trimmed) or the entries
// removed are exactly the ord entries up to pos. When it does not hold,
// entries after pos may be missing; with ord known, MissingAfter says how
// many are.
func (st StreamState) Holds(pos Position, ord int64) bool {
	if st.MaxDeleted.After(pos) {
		return false
	}
	if st.Removed() == 0 || st.Length > 0 && st.First.Compare(pos) <= 0 {
		return true
	}
	if pos.IsZero() {
		ord = 0
	}
	return ord >= 0 && st.Removed() == ord
}

// MissingAfter returns how many entries after pos, of the ord up to it,
// were removed (trimmed), or -1 if that cannot be told (ord unknown, or
// XDEL removed one after pos).
func (st StreamState) MissingAfter(pos Position, ord int64) int64 {
	if pos.IsZero() {
		ord = 0
	}
	if ord < 0 || st.MaxDeleted.After(pos) || st.Removed() < ord {
		return -1
	}
	return st.Removed() - ord
}

// ReadPartitionState is ReadPartition followed, in the same pipeline, by
// XINFO STREAM of the partition: the state says whether the stream still
// held every entry after position after when the entries were read
// (StreamState.Holds). A missing stream has the zero state.
func (s *Store) ReadPartitionState(ctx context.Context, p int, after Position, limit int) ([]Recorded, StreamState, error) {
	var st StreamState
	if err := s.checkPartition(p); err != nil {
		return nil, st, err
	}
	if limit <= 0 {
		return nil, st, domain.Errorf(domain.EInvalid, "eventstore: read limit must be positive")
	}
	key := s.keys.log(p)
	pipe := s.rdb.Pipeline()
	xr := pipe.XRangeN(ctx, key, "("+after.String(), "+", int64(limit))
	xi := pipe.XInfoStream(ctx, key)
	_, _ = pipe.Exec(ctx) // each command's error is read below
	if err := xr.Err(); err != nil {
		return nil, st, fmt.Errorf("eventstore: reading partition %d: %w", p, err)
	}
	if err := xi.Err(); err != nil && !redis.HasErrorPrefix(err, "no such key") {
		return nil, st, fmt.Errorf("eventstore: XINFO STREAM of partition %d: %w", p, err)
	} else if err == nil {
		if st, err = streamState(xi.Val()); err != nil {
			return nil, st, fmt.Errorf("eventstore: XINFO STREAM of partition %d: %w", p, err)
		}
	}
	recs, err := decode(p, xr.Val())
	return recs, st, err
}

func streamState(info *redis.XInfoStream) (StreamState, error) {
	st := StreamState{Length: info.Length, EntriesAdded: info.EntriesAdded}
	var errs []error
	parse := func(s string) Position {
		pos, err := ParsePosition(s)
		errs = append(errs, err)
		return pos
	}
	st.LastGenerated, st.MaxDeleted = parse(info.LastGeneratedID), parse(info.MaxDeletedEntryID)
	if st.Length > 0 {
		st.First = parse(info.FirstEntry.ID)
	}
	return st, errors.Join(errs...)
}
