package delivery

import (
	"context"

	"github.com/mpim/mpim/internal/periodic"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// pollLoop runs the position check every PollInterval, and at once when
// the subscriber asks (after subscribing again), until ctx ends.
func (h *Hub) pollLoop(ctx context.Context) {
	periodic.Run(ctx, h.cfg.PollInterval, h.pollNow, func() {
		if err := h.checkPositions(ctx); err != nil && ctx.Err() == nil {
			h.m.redisErrors.WithLabelValues("position_check").Inc()
			h.log.Warn("position check failed; it runs again next interval", "err", err)
		}
	})
}

// checkPositions queues every idle attached device (not queued, not being
// read, not paused) whose inbox holds an entry after its position: one
// XRANGE <position> + COUNT 1 per user and position, pipelined.
func (h *Hub) checkPositions(ctx context.Context) error {
	type probe struct {
		key  string
		from streamid.ID
		devs []*Device
		cmd  *redis.XMessageSliceCmd
	}
	type probeKey struct {
		key  string
		from streamid.ID
	}
	index := make(map[probeKey]int)
	var probes []probe
	for _, d := range h.snapshot() {
		d.mu.Lock()
		idle := !d.detached && !d.queued && !d.paused
		pos := d.pos
		d.mu.Unlock()
		if !idle {
			continue
		}
		k := probeKey{d.inboxKey, pos}
		i, ok := index[k]
		if !ok {
			i = len(probes)
			index[k] = i
			probes = append(probes, probe{key: k.key, from: pos})
		}
		probes[i].devs = append(probes[i].devs, d)
	}
	var firstErr error
	for start := 0; start < len(probes); start += probeBatch {
		chunk := probes[start:min(start+probeBatch, len(probes))]
		err := h.pipeline(ctx, func(p redis.Pipeliner) {
			for i := range chunk {
				chunk[i].cmd = p.XRangeN(ctx, chunk[i].key, rangeAfter(chunk[i].from), "+", 1)
			}
		})
		for i := range chunk {
			pr := &chunk[i]
			if err == nil {
				err = pr.cmd.Err()
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			msgs := pr.cmd.Val()
			if len(msgs) == 0 {
				continue
			}
			last, err := streamid.Parse(msgs[0].ID)
			if err != nil {
				continue
			}
			for _, d := range pr.devs {
				if h.wake(d, last) {
					h.m.pollWakes.Inc()
				}
			}
		}
	}
	return firstErr
}
