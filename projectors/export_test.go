package projectors

import (
	"context"
	"time"

	"github.com/mpim/mpim/eventstore"
)

// SetLinger makes r read the time of its lingers from now and linger by
// calling wait (which returns when the linger ends) instead of on a timer.
func SetLinger(r *Runner, now func() time.Time, wait func(ctx context.Context, d time.Duration)) {
	r.now = now
	r.linger = func(ctx context.Context, _ *owned, d time.Duration) { wait(ctx, d) }
}

// Ring returns the entries and bytes s keeps of partition p, and the range
// (base, head] they cover.
func Ring(s *SharedLog, p int) (entries int, bytes int64, base, head eventstore.Position) {
	sp := s.parts[p]
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.entries), sp.bytes, sp.base, sp.head
}
