// Package periodic runs the background loops of the hub and the projector
// process: one function, called on a ticker, until a context ends.
package periodic

import (
	"context"
	"time"
)

// Run calls fn every interval, and at once whenever wake delivers (a nil
// wake never does), until ctx ends. Calls never overlap: a tick that comes
// while fn runs is dropped, as time.Ticker drops it. Run returns when ctx
// ends, after the call in progress returns; interval must be positive.
func Run(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn()
	}
}
