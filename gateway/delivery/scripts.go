package delivery

import (
	"context"
	_ "embed"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed route.lua
	routeLua string
	//go:embed detach.lua
	detachLua string
	//go:embed ack.lua
	ackLua string
	//go:embed announce.lua
	announceLua string
)

// scripts are the hub's Lua scripts. Each touches the keys of one hash tag
// only (one user's, or the route change stream's), so they are valid on
// Redis Cluster.
type scripts struct {
	route, detach, ack, announce *redis.Script
}

func newScripts() scripts {
	return scripts{route: redis.NewScript(routeLua), detach: redis.NewScript(detachLua), ack: redis.NewScript(ackLua),
		announce: redis.NewScript(announceLua)}
}

// pipeline runs fill on a fresh pipeline and executes it, so the commands
// travel in one round trip. Scripts are sent by EVALSHA; when the server
// lacks one (restart, SCRIPT FLUSH) the scripts are loaded and the pipeline
// runs once more, so fill must only assign the commands it keeps (it runs
// again) and every command it adds must be safe to repeat (all of the hub's
// are: route writes, max-compare cursors and reads). The caller checks each
// command's error; pipeline returns only a failure to load the scripts.
func (h *Hub) pipeline(ctx context.Context, fill func(redis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		pipe := h.rdb.Pipeline()
		fill(pipe)
		if pipe.Len() == 0 {
			return nil
		}
		cmds, _ := pipe.Exec(ctx) // each command's error is the caller's to check
		missing := false
		for _, c := range cmds {
			if err := c.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				missing = true
				break
			}
		}
		if !missing || attempt > 0 {
			return nil
		}
		for _, s := range []*redis.Script{h.scripts.route, h.scripts.detach, h.scripts.ack, h.scripts.announce} {
			if err := s.Load(ctx, h.rdb).Err(); err != nil {
				return err
			}
		}
	}
}
