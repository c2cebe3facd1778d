package inbox

import (
	"context"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/replwait"
)

// waitReplicated returns nil once the batch's inbox writes are on
// Config.WaitReplicas replicas (at once without WaitReplicas): a WAIT on
// each master that took an inbox of users (internal/replwait). Only then
// may the checkpoint pass the batch: a checkpoint that outlived a failover
// which lost inbox entries (it is on another master, or was replicated
// first) would leave them missing for good.
func (p *Projector) waitReplicated(ctx context.Context, users []domain.UserID) error {
	if p.cfg.WaitReplicas <= 0 || len(users) == 0 {
		return nil
	}
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = p.keys.Inbox(u)
	}
	if err := replwait.Wait(ctx, p.rdb, keys, p.cfg.WaitReplicas, p.cfg.WaitTimeout); err != nil {
		return domain.Errorf(domain.EUnavailable, "inbox: %w", err)
	}
	return nil
}
