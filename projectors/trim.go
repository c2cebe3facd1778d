package projectors

import (
	"context"
	"errors"
	"fmt"

	"github.com/mpim/mpim/eventstore"
)

// Checkpointer reads a projector's checkpoint of a partition without
// claiming it (the zero Position: nothing processed yet).
type Checkpointer interface {
	Name() string
	Checkpoint(ctx context.Context, partition int) (eventstore.Position, error)
}

// TrimmableLog is the log a trim acts on.
type TrimmableLog interface {
	Partitions() int
	TrimBefore(ctx context.Context, p int, min eventstore.Position) (int64, error)
}

var _ TrimmableLog = (*eventstore.Store)(nil)

// TrimLog trims each partition of log below the lowest checkpoint of every
// given projector. Pass every projector that reads the log, including the
// archiver: an entry is removed only once all of them processed it, and the
// archive keeps it for replays. A partition that any projector has not
// started is left whole. It returns the number of entries removed.
func TrimLog(ctx context.Context, log TrimmableLog, projectors []Checkpointer) (int64, error) {
	if len(projectors) == 0 {
		return 0, errors.New("projectors: trim needs at least one projector's checkpoints")
	}
	var removed int64
	for p := range log.Partitions() {
		var low eventstore.Position
		for i, c := range projectors {
			pos, err := c.Checkpoint(ctx, p)
			if err != nil {
				return removed, fmt.Errorf("projectors: reading %s checkpoint of partition %d: %w", c.Name(), p, err)
			}
			if i == 0 || pos.Compare(low) < 0 {
				low = pos
			}
		}
		n, err := log.TrimBefore(ctx, p, low)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}
