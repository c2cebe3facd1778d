package projectors

import (
	"context"
	"sync"
	"time"
)

// Static is the Coordinator of a single process (embedded mode, tests): it
// owns every partition. Its fencing token is the wall clock in seconds at Run,
// so a restarted process fences out its predecessor. Seconds keep static
// tokens below ZooKeeper's (coord adds 2^40 to creation zxids), so a
// deployment can move from static to ZooKeeper coordination; moving back
// needs the stored tokens reset to 0 while no projector runs.
type Static struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
}

var _ Coordinator = (*Static)(nil)

// Run calls work for every partition and waits for all of them.
func (s *Static) Run(ctx context.Context, name string, partitions int, work func(ctx context.Context, partition int, token uint64) error) error {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	token := uint64(now().Unix())
	var wg sync.WaitGroup
	errs := make([]error, partitions)
	for p := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = work(ctx, p, token)
		}()
	}
	wg.Wait()
	return firstError(ctx, errs)
}

// firstError returns the first error that is not the context's own end.
func firstError(ctx context.Context, errs []error) error {
	for _, err := range errs {
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}
