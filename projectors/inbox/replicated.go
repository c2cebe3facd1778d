package inbox

import (
	"context"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/redis/go-redis/v9"
)

// barrierTTL is how long a replication barrier key lives: long enough for
// its WAIT, short enough that the keys of past batches do not pile up.
const barrierTTL = 10 * time.Second

// waitReplicated returns nil once the batch's inbox writes are on
// Config.WaitReplicas replicas (at once without WaitReplicas). Only then
// may the checkpoint pass the batch: a checkpoint that outlived a failover
// which lost inbox entries (it is on another master, or was replicated
// first) would leave them missing for good. On each master that took an
// inbox of users it writes a short-lived key in that inbox's slot and
// WAITs on the same connection (a WAIT counts the replicas that have the
// connection's last write, and replication is in order, so every earlier
// write on that master is then on them too).
func (p *Projector) waitReplicated(ctx context.Context, users []domain.UserID) error {
	if p.cfg.WaitReplicas <= 0 || len(users) == 0 {
		return nil
	}
	barriers := map[redis.Cmdable]domain.UserID{} // one per master
	if cc, ok := p.rdb.(*redis.ClusterClient); ok {
		for _, u := range users {
			node, err := cc.MasterForKey(ctx, p.keys.Inbox(u))
			if err != nil {
				return domain.Errorf(domain.EUnavailable, "inbox: master of %s's inbox: %w", u, err)
			}
			if _, ok := barriers[node]; !ok {
				barriers[node] = u
			}
		}
	} else {
		barriers[p.rdb] = users[0]
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(barriers))
	for node, u := range barriers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.barrier(ctx, node, u)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// barrier writes the barrier key of u's inbox slot on node and WAITs.
func (p *Projector) barrier(ctx context.Context, node redis.Cmdable, u domain.UserID) error {
	var wait *redis.Cmd
	_, err := node.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, p.keys.Inbox(u)+":w", "1", barrierTTL)
		wait = pipe.Do(ctx, "WAIT", p.cfg.WaitReplicas, p.cfg.WaitTimeout.Milliseconds())
		return nil
	})
	if err != nil {
		return domain.Errorf(domain.EUnavailable, "inbox: replication barrier of %s's inbox: %w", u, err)
	}
	if n, _ := wait.Int64(); n < int64(p.cfg.WaitReplicas) {
		return domain.Errorf(domain.EUnavailable, "inbox: %s's inbox writes are on %d of %d replicas within %s",
			u, n, p.cfg.WaitReplicas, p.cfg.WaitTimeout)
	}
	return nil
}
