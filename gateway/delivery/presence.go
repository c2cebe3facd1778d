package delivery

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/redis/go-redis/v9"
)

// Presence is a user's presence as the presence routes and the last-seen
// record tell it.
type Presence struct {
	// Online is true while any of the user's routes is live, on any gateway.
	Online bool
	// LastSeen is the current time for an online user; otherwise the latest
	// of the user's last detach and the last heartbeat of a route that
	// reached its deadline (a gateway that stopped); zero when unknown.
	LastSeen time.Time
}

// Online returns the presence of each of users (keyed by user id), from one
// pipelined round trip (HGETALL of the routes, GET of the last-seen time
// per user). It fails with a domain EInvalid error for a malformed user id
// and EUnavailable when Redis fails.
func (h *Hub) Online(ctx context.Context, users []domain.UserID) (map[domain.UserID]Presence, error) {
	ids, err := userIDs(users)
	if err != nil {
		return nil, err
	}
	routes := make([]*redis.MapStringStringCmd, len(ids))
	seen := make([]*redis.StringCmd, len(ids))
	err = h.pipeline(ctx, func(p redis.Pipeliner) {
		for i, u := range ids {
			routes[i] = p.HGetAll(ctx, h.keys.Presence(u))
			seen[i] = p.Get(ctx, h.keys.LastSeen(u))
		}
	})
	if err != nil {
		return nil, unavailable("reading presence", err)
	}
	now := h.cfg.Now()
	out := make(map[domain.UserID]Presence, len(ids))
	for i, u := range ids {
		if err := routes[i].Err(); err != nil {
			return nil, unavailable("reading presence", err)
		}
		if err := seen[i].Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, unavailable("reading presence", err)
		}
		var p Presence
		if ms, err := strconv.ParseInt(seen[i].Val(), 10, 64); err == nil && ms > 0 {
			p.LastSeen = time.UnixMilli(ms)
		}
		for _, v := range routes[i].Val() {
			r, err := inbox.DecodeRoute(v)
			if err != nil {
				continue
			}
			if r.Live(now) {
				p.Online = true
				continue
			}
			if beat := r.Expires.Add(-inbox.RouteTTL); beat.After(p.LastSeen) {
				p.LastSeen = beat
			}
		}
		if p.Online {
			p.LastSeen = now
		}
		out[u] = p
	}
	return out, nil
}
