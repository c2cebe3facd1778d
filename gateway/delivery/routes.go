package delivery

import (
	"context"
	"time"

	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/periodic"
	"github.com/redis/go-redis/v9"
)

// writeRoute adds the route script for d to p: mode "a" on attach, "r" on
// a heartbeat (see route.lua).
func (h *Hub) writeRoute(ctx context.Context, p redis.Pipeliner, d *Device, now time.Time, mode string) *redis.Cmd {
	return h.scripts.route.EvalSha(ctx, p, []string{h.keys.Presence(d.user)},
		string(d.id), h.cfg.GatewayID, h.route(now).Encode(), inbox.RouteTTL.Milliseconds(), now.UnixMilli(), mode)
}

// route is the route this gateway writes at now.
func (h *Hub) route(now time.Time) inbox.Route {
	return inbox.Route{Gateway: h.cfg.GatewayID, Expires: now.Add(inbox.RouteTTL)}
}

// announce adds to p the append of d's route change to the route change
// stream (announce.lua), which keeps the inbox projector's route cache
// fresh: the route written at now, or its deletion. It goes after the
// route write in the same pipeline, and on attach before any inbox read, so
// every entry the catch-up does not read is appended after the projector
// can see the route (internal/inbox: Route changes).
func (h *Hub) announce(ctx context.Context, p redis.Pipeliner, d *Device, now time.Time, deleted bool) *redis.Cmd {
	c := inbox.RouteChange{User: d.user, Device: d.id, Gateway: h.cfg.GatewayID, Deleted: deleted}
	if !deleted {
		c.Route = h.route(now)
	}
	return h.scripts.announce.EvalSha(ctx, p, []string{h.keys.RouteChanges(), h.keys.RouteSeq()},
		append([]any{inbox.RouteChangesLen}, c.ChangeArgs()...)...)
}

// refreshLoop rewrites every attached device's route every RouteRefresh
// until ctx ends.
func (h *Hub) refreshLoop(ctx context.Context) {
	periodic.Run(ctx, h.cfg.RouteRefresh, nil, func() {
		if err := h.refreshRoutes(ctx); err != nil && ctx.Err() == nil {
			h.m.redisErrors.WithLabelValues("route_refresh").Inc()
			h.log.Warn("route heartbeat failed; routes live until their deadlines", "err", err)
		}
	})
}

// refreshRoutes gives every attached device's route a new deadline, in
// pipelines, under routeMu so that a clean detach's deletion is never
// undone.
func (h *Hub) refreshRoutes(ctx context.Context) error {
	h.routeMu.Lock()
	defer h.routeMu.Unlock()
	devs := h.snapshot()
	now := h.cfg.Now()
	var firstErr error
	var revived []*Device // routes written where there was none or a dead one
	for start := 0; start < len(devs); start += probeBatch {
		chunk := devs[start:min(start+probeBatch, len(devs))]
		cmds := make([]*redis.Cmd, len(chunk))
		err := h.pipeline(ctx, func(p redis.Pipeliner) {
			for i, d := range chunk {
				cmds[i] = h.writeRoute(ctx, p, d, now, "r")
			}
		})
		for i, c := range cmds {
			if err == nil {
				err = c.Err()
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			switch n, _ := c.Int(); n {
			case 0:
				h.log.Debug("device's route is held by another gateway; not refreshed", "user", chunk[i].user, "device", chunk[i].id)
			case 2:
				revived = append(revived, chunk[i])
			}
		}
	}
	if err := h.announceAll(ctx, revived, now); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// announceAll announces the routes written at now of devs, in pipelines.
func (h *Hub) announceAll(ctx context.Context, devs []*Device, now time.Time) error {
	for start := 0; start < len(devs); start += probeBatch {
		chunk := devs[start:min(start+probeBatch, len(devs))]
		cmds := make([]*redis.Cmd, len(chunk))
		err := h.pipeline(ctx, func(p redis.Pipeliner) {
			for i, d := range chunk {
				cmds[i] = h.announce(ctx, p, d, now, false)
			}
		})
		for _, c := range cmds {
			if err == nil {
				err = c.Err()
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
