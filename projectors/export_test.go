package projectors

import (
	"context"
	"time"
)

// SetLinger makes r read the time of its lingers from now and linger by
// calling wait (which returns when the linger ends) instead of on a timer.
func SetLinger(r *Runner, now func() time.Time, wait func(ctx context.Context, d time.Duration)) {
	r.now = now
	r.linger = func(ctx context.Context, _ *owned, d time.Duration) { wait(ctx, d) }
}
