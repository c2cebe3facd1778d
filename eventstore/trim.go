package eventstore

import (
	"context"
	"fmt"
)

// TrimBefore removes the entries of partition p whose position is before
// min (XTRIM MINID, exact) and returns how many were removed. The caller
// passes the lowest checkpoint of every projector and of the archive, so no
// entry some projector still needs is removed; aggregate histories, heads
// and cells are never trimmed. A zero min removes nothing.
func (s *Store) TrimBefore(ctx context.Context, p int, min Position) (int64, error) {
	if err := s.writable(); err != nil {
		return 0, err
	}
	if err := s.checkPartition(p); err != nil {
		return 0, err
	}
	if min.IsZero() {
		return 0, nil
	}
	n, err := s.rdb.XTrimMinID(ctx, s.keys.log(p), min.String()).Result()
	if err != nil {
		return 0, fmt.Errorf("eventstore: trimming partition %d: %w", p, err)
	}
	return n, nil
}
