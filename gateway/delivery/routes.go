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
	r := inbox.Route{Gateway: h.cfg.GatewayID, Expires: now.Add(inbox.RouteTTL)}
	return h.scripts.route.EvalSha(ctx, p, []string{h.keys.Presence(d.user)},
		string(d.id), h.cfg.GatewayID, r.Encode(), inbox.RouteTTL.Milliseconds(), now.UnixMilli(), mode)
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
			if n, _ := c.Int(); n == 0 {
				h.log.Debug("device's route is held by another gateway; not refreshed", "user", chunk[i].user, "device", chunk[i].id)
			}
		}
	}
	return firstErr
}
