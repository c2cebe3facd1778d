package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Snapshot is a KeepHistory aggregate's state at Version, encoded by the
// caller, kept in Redis beside the aggregate's history so that loading the
// aggregate reads only the events after it. Position is the history entry
// of event Version. A snapshot is a cache: it may be missing, evicted or
// stale, and ReadAggregateAfter checks it against the stream before use.
type Snapshot struct {
	Version  uint64
	Position Position
	Data     []byte
}

// LoadSnapshot returns the stored snapshot of aggregate, and false if there
// is none.
func (s *Store) LoadSnapshot(ctx context.Context, partitionKey, aggregate string) (Snapshot, bool, error) {
	p := s.keys.partitionOf(partitionKey)
	vals, err := s.rdb.HMGet(ctx, s.keys.snapshot(p, aggregate), "v", "p", "d").Result()
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("eventstore: reading the snapshot of %s: %w", aggregate, err)
	}
	vs, ok1 := vals[0].(string)
	ps, ok2 := vals[1].(string)
	d, ok3 := vals[2].(string)
	if !ok1 || !ok2 || !ok3 {
		return Snapshot{}, false, nil
	}
	v, err1 := strconv.ParseUint(vs, 10, 64)
	pos, err2 := ParsePosition(ps)
	if err1 != nil || err2 != nil || v == 0 {
		return Snapshot{}, false, nil //nolint:nilerr // unreadable: ignore it, the next save replaces it
	}
	return Snapshot{Version: v, Position: pos, Data: []byte(d)}, true, nil
}

// SaveSnapshot stores snap as aggregate's snapshot for ttl (an aggregate
// nobody loads for that long loses it and is read in full once). Two
// processes saving at once leave one of two valid snapshots.
func (s *Store) SaveSnapshot(ctx context.Context, partitionKey, aggregate string, snap Snapshot, ttl time.Duration) error {
	if err := s.writable(); err != nil {
		return err
	}
	if snap.Version == 0 {
		return errors.New("eventstore: a snapshot needs a version")
	}
	p := s.keys.partitionOf(partitionKey)
	key := s.keys.snapshot(p, aggregate)
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, key, "v", strconv.FormatUint(snap.Version, 10), "p", snap.Position.String(), "d", snap.Data)
		pipe.Expire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("eventstore: saving the snapshot of %s: %w", aggregate, err)
	}
	return nil
}

// ReadAggregateAfter returns the events of a KeepHistory aggregate after
// snap, read atomically with the aggregate's version, and true if they
// continue snap: the first has version snap.Version+1, versions are
// consecutive and the last is the aggregate's version. It returns false
// (and no events) when snap does not fit the stream; read the aggregate in
// full then.
func (s *Store) ReadAggregateAfter(ctx context.Context, partitionKey, aggregate string, snap Snapshot) ([]Recorded, bool, error) {
	p := s.keys.partitionOf(partitionKey)
	var xr *redis.XMessageSliceCmd
	var head *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		xr = pipe.XRange(ctx, s.keys.history(p, aggregate), "("+snap.Position.String(), "+")
		head = pipe.HGet(ctx, s.keys.heads(p), aggregate)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("eventstore: reading aggregate %s: %w", aggregate, err)
	}
	recs, err := decode(p, xr.Val())
	if err != nil {
		return nil, false, err
	}
	v := snap.Version
	for _, r := range recs {
		if r.Event.GetVersion() != v+1 {
			return nil, false, nil
		}
		v++
	}
	// No head (or a layout-1 deployment read before its migration): read in full.
	if have, _, err := parseHead(head.Val()); err != nil || have != v || head.Val() == "" {
		return nil, false, nil
	}
	return recs, true, nil
}
