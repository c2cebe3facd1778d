package main

import (
	"context"
	"fmt"
	"io"

	"github.com/mpim/mpim/eventstore"
)

// acceptTapLoss removes the tap group's cut markers, saying which ranges of
// which partitions the group lost.
func acceptTapLoss(ctx context.Context, tap *eventstore.Tap, stderr io.Writer) error {
	cuts, err := tap.AcceptLoss(ctx)
	if err != nil {
		return err
	}
	if len(cuts) == 0 {
		fmt.Fprintln(stderr, "tap: the group lost no events: nothing to accept")
	}
	for _, c := range cuts {
		fmt.Fprintf(stderr, "tap: accepted the loss of partition %d from %s to %s (cut %s); reading on\n",
			c.Partition, c.From, c.To, c.At.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return nil
}
